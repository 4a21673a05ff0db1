"""Omniglot in arclib.data and the one-shot protocol of arclib.fewshot, on the real data where it is present."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from arclib import data, fewshot


@pytest.fixture(scope="module")
def evaluation(omniglot_root):
    return data.omniglot("evaluation", root=omniglot_root, omniglot_checksums="offline-mirror")


def test_evaluation_split_layout(evaluation):
    assert evaluation.images.shape == (13_180, 1, 28, 28)
    assert len(evaluation.classes) == 659 and evaluation.classes == sorted(evaluation.classes)
    counts = torch.bincount(evaluation.targets)
    assert (counts == 20).all()
    # every character has each of the 20 drawers exactly once
    assert (torch.bincount(evaluation.targets * 20 + evaluation.drawers) == 1).all()
    assert int(evaluation.alphabets.max()) + 1 == 20
    # ink is 1 before normalisation: the paper's white background maps to the most negative value
    assert evaluation.images.min() == pytest.approx(-data.OMNIGLOT_NORMALISATION[0] / data.OMNIGLOT_NORMALISATION[1],
                                                    abs=1e-4)


def test_stock_check_refuses_the_mirror_and_says_how(omniglot_root, monkeypatch):
    monkeypatch.delenv(data.OMNIGLOT_CHECKSUM_ENV, raising=False)
    with pytest.raises(data.DatasetNotFoundError, match="offline-mirror"):
        data.omniglot("evaluation", root=omniglot_root, download=False)


def test_mirror_check_refuses_an_altered_image(omniglot_root, tmp_path):
    copy = tmp_path / "omniglot-py"
    shutil.copytree(omniglot_root / "omniglot-py", copy, ignore=shutil.ignore_patterns("*.zip"))
    assert data.omniglot_mirror_digest(copy) == data.OMNIGLOT_MIRROR_SHA256
    png = sorted((copy / "images_evaluation").glob("*/*/*.png"))[5]
    png.write_bytes(png.read_bytes() + b"\0")
    with pytest.raises(data.DatasetNotFoundError, match="altered"):
        data.omniglot("evaluation", root=tmp_path, omniglot_checksums="offline-mirror")


def test_bad_arguments_name_themselves(omniglot_root, monkeypatch):
    with pytest.raises(ValueError, match="split"):
        data.omniglot("test", root=omniglot_root)
    with pytest.raises(ValueError, match="omniglot_checksums"):
        data.omniglot("evaluation", root=omniglot_root, omniglot_checksums="skip")
    monkeypatch.setenv(data.OMNIGLOT_CHECKSUM_ENV, "none")
    with pytest.raises(ValueError, match=data.OMNIGLOT_CHECKSUM_ENV):
        data.omniglot("evaluation", root=omniglot_root)


def test_subset_relabels_in_the_order_given(evaluation):
    sub = data.omniglot_subset(evaluation, [7, 3], range(16))
    assert len(sub) == 32 and sub.classes == [evaluation.classes[7], evaluation.classes[3]]
    first = evaluation.images[(evaluation.targets == 7) & (evaluation.drawers < 16)]
    assert torch.equal(sub.images[sub.targets == 0], first)


def test_official_runs_and_the_hausdorff_baseline(omniglot_root):
    runs = fewshot.official_runs(omniglot_root)
    assert len(runs) == 20 and all(r["support"].shape == (20, 1, 28, 28) for r in runs)
    assert all(sorted(r["answer"].tolist()) == list(range(20)) for r in runs)  # one query per character
    error, per_run = fewshot.hausdorff_error(runs[:2])
    # chance is 95 % error; over all 20 runs the baseline errs on 38.75 % (Lake et al.: about 38.8 %)
    assert len(per_run) == 2 and max(per_run) < 60 and error == pytest.approx(sum(per_run) / 2)


def test_modified_hausdorff_by_hand():
    a = np.array([[0.0, 0.0], [1.0, 0.0]])
    b = np.array([[0.0, 0.0], [0.0, 3.0]])
    # a → b: 0 and 1 (mean 0.5); b → a: 0 and 3 (mean 1.5); the larger
    assert fewshot.modified_hausdorff(a, b) == pytest.approx(1.5)


def test_episodes_score_a_perfect_and_a_useless_embedding():
    labels = torch.arange(30).repeat_interleave(4)
    perfect = torch.nn.functional.one_hot(labels, 30).float()
    assert fewshot.episodes(perfect, labels, n_episodes=20)[0] == 100.0
    constant = torch.ones(len(labels), 5)  # every support equally near: argmax takes the first, right 1 in 20
    assert fewshot.episodes(constant, labels, n_episodes=50)[0] == pytest.approx(5.0)
    with pytest.raises(ValueError, match="n_way"):
        fewshot.episodes(perfect, labels, n_way=31)


def test_training_characters_are_fixed_by_the_seed_and_shared_by_losses():
    a, b = fewshot.training_characters(30, 0), fewshot.training_characters(30, 0)
    assert a == b and len(set(a)) == 30 and a != fewshot.training_characters(30, 1)
    with pytest.raises(ValueError, match="num_classes"):
        fewshot.training_characters(1, 0)
    assert fewshot.recipe_epochs(964) == 6 and fewshot.recipe_epochs(10) == 240


def test_a_short_run_end_to_end(omniglot_root, evaluation):
    background = data.omniglot("background", root=omniglot_root, omniglot_checksums="offline-mirror")
    torch.set_num_threads(1)
    out = fewshot.train_on_characters(background, "arcface", 20, 0, {"s": 16.0, "m": 0.3}, epochs=2)
    assert len(out["history"].train_loss) == 2
    small = data.OmniglotImages(evaluation.images[:400], evaluation.targets[:400], evaluation.classes[:20],
                                evaluation.drawers[:400], evaluation.alphabets[:400])
    metrics = fewshot.unseen_metrics(out["model"], small, n_pairs=200, n_episodes=20)
    assert 0.5 < metrics["auc"] <= 1.0 and 5.0 <= metrics["one_shot_episodes"] <= 100.0


def test_official_runs_refuses_a_missing_or_altered_zip(tmp_path, omniglot_root):
    with pytest.raises(FileNotFoundError, match="all_runs.zip"):
        fewshot.official_runs(tmp_path, download=False)
    (tmp_path / "omniglot-py").mkdir()
    altered = bytearray((omniglot_root / "omniglot-py" / "all_runs.zip").read_bytes())
    altered[100] ^= 1
    (tmp_path / "omniglot-py" / "all_runs.zip").write_bytes(bytes(altered))
    with pytest.raises(ValueError, match="sha256"):
        fewshot.official_runs(tmp_path, download=False)


def test_shipped_study_and_models_are_whole():
    study = fewshot.study()
    labels = {(r["label"], r["K"]) for r in study["runs"]}
    for label in ("softmax", "normface", "cosface", "arcface"):
        for k in (10, 30, 100, 300, 964):
            assert (label, k) in labels
            assert len([r for r in study["runs"] if r["label"] == label and r["K"] == k]) >= 3, (label, k)
    total = 0
    for name, entry in study["models"].items():
        path = fewshot.STUDY.parent / entry["file"]
        assert path.stat().st_size == entry["bytes"] and entry["bytes"] <= 1_000_000, name
        total += entry["bytes"]
        with pytest.raises(ValueError, match="shipped model of the Omniglot study"):
            fewshot.shipped("omniglot-none")
    assert total <= 5_000_000


@pytest.mark.parametrize("name", sorted(fewshot.study()["models"]))
def test_shipped_model_reproduces_its_unseen_metrics(name, evaluation, omniglot_root):
    model, _, entry = fewshot.shipped(name)  # refuses a file whose sha256 is not the recorded one
    got = fewshot.unseen_metrics(model, evaluation, fewshot.official_runs(omniglot_root))
    want = entry["shipped_metrics"]
    # another CPU may round a borderline query differently: 0.1 point of 40,000 episode answers is 40 of them
    assert got["one_shot_episodes"] == pytest.approx(want["one_shot_episodes"], abs=0.1)
    assert got["auc"] == pytest.approx(want["auc"], abs=1e-3)
    assert got["one_shot_runs_error"] == pytest.approx(want["one_shot_runs_error"], abs=0.5)


def test_euclidean_nearest_support_uses_the_lengths_cosine_does_not():
    query = torch.tensor([[1.0, 0.0]])
    support = torch.tensor([[10.0, 1.0], [0.9, 0.3]])  # the first is nearer in angle, the second in distance
    assert fewshot.nearest_support(query, support).tolist() == [0]
    assert fewshot.nearest_support(query, support, metric="euclidean").tolist() == [1]
    labels = torch.arange(30).repeat_interleave(4)
    perfect = torch.nn.functional.one_hot(labels, 30).float()
    assert fewshot.episodes(perfect, labels, n_episodes=20, metric="euclidean")[0] == 100.0
    # a per-image length that cosine ignores and Euclidean distance does not
    lengths = torch.logspace(-2, 2, len(labels))[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    scaled = perfect * lengths[:, None]
    cosine, euclidean = (fewshot.episodes(scaled, labels, n_episodes=50, metric=m)[0] for m in fewshot.METRICS)
    assert cosine == 100.0 and euclidean < 90.0
    with pytest.raises(ValueError, match="metric must be one of 'cosine', 'euclidean'; got 'l1'"):
        fewshot.episodes(perfect, labels, metric="l1")
    with pytest.raises(ValueError, match="metric must be one of"):
        fewshot.nearest_support(query, support, metric="dot")
