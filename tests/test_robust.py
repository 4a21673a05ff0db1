"""arclib.robust: flipped labels, degraded images, the chapter's training run and what its reports count; the family
study's shipped models where FAMILY.json is there."""

from __future__ import annotations

import hashlib
import json
import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from arclib import losses, models, pretrained, robust
from arclib.data import TensorImages
from arclib.losses.adacos import AdaCos, fixed_scale
from arclib.train import embed

CLASSES = [str(i) for i in range(10)]
DOCUMENTED = {"model", "loss", "history", "indices", "labels", "flipped", "levels", "scales"}


def synthetic(n: int = 200, seed: int = 0) -> TensorImages:
    g = torch.Generator().manual_seed(seed)
    return TensorImages(torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g), CLASSES)


def strokes(n: int = 12, seed: int = 0) -> torch.Tensor:
    """Digit-like images (N, 1, 28, 28): a thin ring and a thin bar on a dark background, placed at random."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    out = torch.full((n, 1, 28, 28), -0.4)
    for i in range(n):
        cy, cx, r = (8 + 12 * torch.rand(3, generator=g)).tolist()
        r = 3 + r / 4
        ring = ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt().sub(r).abs() < 1.0
        col = int(torch.randint(4, 24, (1,), generator=g))
        bar = (xx - col).abs() < 1.0
        out[i, 0][ring | bar] = 2.8
    return out


# ---- flip_labels ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, fraction", [(999, 0.0), (999, 0.125), (1000, 0.4), (37, 0.5), (500, 1.0)])
def test_flip_labels_flips_exactly_the_share_to_another_class(n, fraction):
    targets = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(n))
    before = targets.clone()
    noisy, flipped = robust.flip_labels(targets, fraction, 10, seed=3)
    assert torch.equal(targets, before)  # the input is left alone
    assert flipped.dtype == torch.bool and flipped.shape == (n,) and noisy.shape == (n,)
    assert int(flipped.sum()) == round(fraction * n)
    assert (noisy[flipped] != targets[flipped]).all()
    assert ((noisy >= 0) & (noisy < 10)).all()
    assert torch.equal(noisy[~flipped], targets[~flipped])


def test_flip_labels_is_fixed_by_its_seed():
    targets = torch.randint(0, 10, (400,), generator=torch.Generator().manual_seed(0))
    a, b = robust.flip_labels(targets, 0.3, 10, seed=5), robust.flip_labels(targets, 0.3, 10, seed=5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = robust.flip_labels(targets, 0.3, 10, seed=6)
    assert not torch.equal(a[1], c[1])  # another seed flips other samples


def test_flip_labels_spreads_evenly_over_the_other_classes():
    num_classes, n = 10, 9000
    targets = torch.randint(0, num_classes, (n,), generator=torch.Generator().manual_seed(1))
    noisy, flipped = robust.flip_labels(targets, 1.0, num_classes, seed=0)
    assert flipped.all()
    # (new − old) mod C is uniform over 1..C−1: 1000 expected each, a standard deviation of about 30
    counts = torch.bincount((noisy - targets) % num_classes, minlength=num_classes)
    assert counts[0] == 0
    expected = n / (num_classes - 1)
    assert ((counts[1:] - expected).abs() < 0.15 * expected).all(), counts
    # and from every class to every other one
    pairs = torch.bincount(targets * num_classes + noisy, minlength=num_classes ** 2).view(num_classes, num_classes)
    off = ~torch.eye(num_classes, dtype=torch.bool)
    assert (pairs.diagonal() == 0).all() and (pairs[off] > 0).all()


def test_flip_labels_refuses_bad_arguments_by_name():
    targets = torch.tensor([0, 1, 2, 1])
    for fraction in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match="fraction"):
            robust.flip_labels(targets, fraction, 3, seed=0)
    for num_classes in (1, 0, 2.5):
        with pytest.raises(ValueError, match="num_classes"):
            robust.flip_labels(targets, 0.5, num_classes, seed=0)
    for bad in ([0, 1, 2, 1], targets.float(), targets.view(2, 2), torch.tensor([0, 1, 3])):
        with pytest.raises(ValueError, match="targets"):
            robust.flip_labels(bad, 0.5, 3, seed=0)


# ---- degrade ---------------------------------------------------------------------------------------------------

def test_degrade_level_0_is_an_unchanged_copy():
    x = strokes(4)
    out = robust.degrade(x, 0)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()
    out.add_(1.0)
    assert torch.equal(x, strokes(4))  # writing to the copy leaves the images alone


@pytest.mark.parametrize("shape", [(3, 1, 28, 28), (2, 3, 32, 32), (2, 1, 28, 42), (0, 1, 28, 28)])
def test_degrade_keeps_the_shape(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    for level in robust.LEVELS:
        out = robust.degrade(x, level)
        assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()


def test_degrade_is_an_area_average_brought_back_up_bilinearly():
    x = strokes(5)
    for level, factor in ((1, 2), (3, 4)):  # 14×14 and 7×7: blocks of 2×2 and 4×4 pixels
        side = 28 // factor
        block_means = x.view(5, 1, side, factor, side, factor).mean(dim=(3, 5))
        expected = F.interpolate(block_means, size=(28, 28), mode="bilinear", align_corners=False)
        torch.testing.assert_close(robust.degrade(x, level), expected)
    # 10×10 does not tile 28×28: the same recipe through F.interpolate's area mode
    expected = F.interpolate(F.interpolate(x, size=(10, 10), mode="area"), size=(28, 28), mode="bilinear",
                             align_corners=False)
    torch.testing.assert_close(robust.degrade(x, 2), expected)
    # a 28×56 image loses detail along both sides alike: one-pixel stripes either way average out at 14 rows × 28
    rows = (torch.arange(28.0) % 2).view(1, 1, 28, 1).expand(1, 1, 28, 56)
    columns = (torch.arange(56.0) % 2).view(1, 1, 1, 56).expand(1, 1, 28, 56)
    for stripes in (rows, columns):
        torch.testing.assert_close(robust.degrade(stripes.contiguous(), 1), torch.full((1, 1, 28, 56), 0.5))


def test_degrade_removes_more_detail_at_each_level():
    x = strokes(12)
    distance = torch.stack([(robust.degrade(x, level) - x).flatten(1).norm(dim=1) for level in robust.LEVELS])
    assert (distance[0] == 0).all()
    assert (distance[1:] > distance[:-1]).all(), distance  # for every image, level after level
    # nothing to lose on a flat image: every level gives it back
    flat = torch.full((2, 1, 28, 28), 0.7)
    for level in robust.LEVELS:
        torch.testing.assert_close(robust.degrade(flat, level), flat)


def test_degrade_refuses_a_bad_level_or_shape_by_name():
    x = strokes(2)
    for level in (-1, 4, 1.5, True, None):
        with pytest.raises(ValueError, match="level"):
            robust.degrade(x, level)
    for bad in (x[0, 0], x[0], x.unsqueeze(0), x.tolist()):
        with pytest.raises(ValueError, match="images"):
            robust.degrade(bad, 1)


# ---- mixed_quality -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, share", [(60, 0.5), (61, 0.3), (45, 1.0), (20, 0.0)])
def test_mixed_quality_degrades_the_share_at_levels_1_to_3(n, share):
    x = torch.cat([strokes(n // 2 + 1, seed=1), torch.randn(n, 1, 28, 28)])[:n]
    before = x.clone()
    out, levels = robust.mixed_quality(x, share, seed=2)
    assert torch.equal(x, before)
    assert levels.shape == (n,) and out.shape == x.shape
    degraded = levels > 0
    assert int(degraded.sum()) == round(share * n)
    assert ((levels >= 0) & (levels <= 3)).all()
    assert torch.equal(out[~degraded], x[~degraded])
    for i in degraded.nonzero().squeeze(1).tolist():
        torch.testing.assert_close(out[i:i + 1], robust.degrade(x[i:i + 1], int(levels[i])))
        assert not torch.equal(out[i], x[i])
    if share == 1.0:  # 45 draws: every level comes up
        assert set(levels.tolist()) == {1, 2, 3}


def test_mixed_quality_is_fixed_by_its_seed():
    x = torch.randn(50, 1, 28, 28)
    a, b = robust.mixed_quality(x, 0.5, seed=4), robust.mixed_quality(x, 0.5, seed=4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], robust.mixed_quality(x, 0.5, seed=5)[1])


def test_mixed_quality_refuses_bad_arguments_by_name():
    x = torch.randn(4, 1, 28, 28)
    for share in (-0.5, 1.01):
        with pytest.raises(ValueError, match="share"):
            robust.mixed_quality(x, share, seed=0)
    for bad in (x.tolist(), x[:, 0]):
        with pytest.raises(ValueError, match="images"):
            robust.mixed_quality(bad, 0.0, seed=0)


# ---- training_subset / training_data -------------------------------------------------------------------------

def test_training_subset_is_sorted_unique_and_fixed_by_its_seed():
    a = robust.training_subset(300, seed=1, available=1000)
    assert torch.equal(a, robust.training_subset(300, seed=1, available=1000))
    assert len(a) == 300 and len(a.unique()) == 300 and (a[1:] > a[:-1]).all()
    assert a.min() >= 0 and a.max() < 1000
    assert not torch.equal(a, robust.training_subset(300, seed=2, available=1000))
    assert torch.equal(robust.training_subset(1000, seed=3, available=1000), torch.arange(1000))
    for bad in (0, 1001, 2.5):
        with pytest.raises(ValueError, match="num_images"):
            robust.training_subset(bad, seed=0, available=1000)


def test_training_data_shares_the_images_of_a_seed_across_settings():
    train = synthetic(200)
    clean = robust.training_data(train, seed=1, num_images=120)
    noisy = robust.training_data(train, seed=1, noise=0.4, num_images=120)
    mixed = robust.training_data(train, seed=1, degraded_share=0.5, num_images=120)
    indices = clean[0]
    assert len(indices) == 120 and len(indices.unique()) == 120 and (indices[1:] > indices[:-1]).all()
    assert torch.equal(noisy[0], indices) and torch.equal(mixed[0], indices)
    # clean: the subset as it is
    assert torch.equal(clean[1], train.images[indices]) and torch.equal(clean[2], train.targets[indices])
    assert not clean[3].any() and (clean[4] == 0).all()
    # noisy: the same images, round(0.4·120) labels flipped
    assert torch.equal(noisy[1], clean[1]) and int(noisy[3].sum()) == 48
    assert torch.equal(noisy[2][~noisy[3]], clean[2][~noisy[3]]) and (noisy[2][noisy[3]] != clean[2][noisy[3]]).all()
    # mixed quality: the same labels, 60 images degraded
    assert torch.equal(mixed[2], clean[2]) and int((mixed[4] > 0).sum()) == 60
    assert torch.equal(mixed[1][mixed[4] == 0], clean[1][mixed[4] == 0])
    again = robust.training_data(train, seed=1, noise=0.4, num_images=120)
    assert all(torch.equal(a, b) for a, b in zip(noisy, again, strict=True))
    assert not torch.equal(robust.training_data(train, seed=2, num_images=120)[0], indices)


# ---- train_run -------------------------------------------------------------------------------------------------

def test_train_run_returns_what_it_documents():
    train = synthetic(200)
    kw = dict(noise=0.2, num_images=96, epochs=1, max_steps=2, batch_size=16, embedding_dim=8)
    run = robust.train_run(train, "arcface", seed=0, loss_kw={"s": 16.0, "m": 0.5}, **kw)
    assert set(run) == DOCUMENTED
    assert isinstance(run["model"], models.MnistNet) and run["loss"].name == "arcface"
    assert run["loss"].s == 16.0 and run["history"].epochs == 1 and run["scales"] == []
    indices, _, labels, flipped, levels = robust.training_data(train, 0, 0.2, 0.0, 96)
    for key, expected in (("indices", indices), ("labels", labels), ("flipped", flipped), ("levels", levels)):
        assert torch.equal(run[key], expected), key
    again = robust.train_run(train, "arcface", seed=0, loss_kw={"s": 16.0, "m": 0.5}, **kw)
    for (name, a), b in zip(run["model"].state_dict().items(), again["model"].state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # the same seed trains the same network


def test_train_run_leaves_out_what_keep_drops(monkeypatch):
    import arclib.train

    seen = []
    real_fit = arclib.train.fit

    def spy(model, loss, loader, *args, **kwargs):
        seen.append((loader.dataset, kwargs["settings"]))
        return real_fit(model, loss, loader, *args, **kwargs)

    monkeypatch.setattr(arclib.train, "fit", spy)
    train = synthetic(200)
    keep = torch.zeros(80, dtype=torch.bool)
    keep[::3] = True
    run = robust.train_run(train, "normface", seed=2, loss_kw={"s": 10.0}, noise=0.3, num_images=80, keep=keep,
                           epochs=1, max_steps=1, batch_size=8, embedding_dim=4)
    (dataset, settings), = seen
    assert len(dataset) == int(keep.sum()) and settings["kept"] == int(keep.sum())
    _, images, labels, _, _ = robust.training_data(train, 2, 0.3, 0.0, 80)
    assert torch.equal(dataset.images, images[keep]) and torch.equal(dataset.targets, labels[keep])
    assert len(run["labels"]) == 80  # the masks still cover the whole subset
    for bad in (keep[:-1], keep.long(), keep.tolist()):
        with pytest.raises(ValueError, match="keep"):
            robust.train_run(train, "normface", seed=2, num_images=80, keep=bad, epochs=1, max_steps=1)


def test_train_run_records_adacos_scale(monkeypatch):
    updates = []
    real_update = AdaCos.update_scale

    def spy(self, cos, labels):
        updates.append(real_update(self, cos, labels))
        return updates[-1]

    monkeypatch.setattr(AdaCos, "update_scale", spy)
    run = robust.train_run(synthetic(200), "adacos", seed=0, num_images=100, epochs=1, max_steps=3, batch_size=16,
                           embedding_dim=8, record_every=2)
    assert len(updates) == 3  # one update per training step
    assert [step for step, _ in run["scales"]] == [0, 2]
    assert [s for _, s in run["scales"]] == pytest.approx([updates[0], updates[2]])
    assert run["scales"][-1][1] == pytest.approx(float(run["loss"].s))
    assert all(math.isfinite(s) and s > 0 for _, s in run["scales"])
    assert updates[0] != pytest.approx(fixed_scale(10))  # the scale moved from its start


# ---- subcentre_report ------------------------------------------------------------------------------------------

def _unit(degrees: float, norm: float = 1.0) -> list[float]:
    return [norm * math.cos(math.radians(degrees)), norm * math.sin(math.radians(degrees))]


#: (angle of the embedding in degrees, label, flipped, nearest own sub-centre is the dominant one, > 75° from it)
#: class 0: sub-centres at 0° (dominant: 4 of its 6 samples) and 180°; class 1: at 90° and 270° (dominant: 3 of 5)
SAMPLES = [(5, 0, False, True, False), (-8, 0, False, True, False), (12, 0, False, True, False),
           (80, 0, True, True, True), (175, 0, True, False, True), (187, 0, False, False, True),
           (265, 1, False, True, False), (275, 1, False, True, False), (283, 1, True, True, False),
           (95, 1, True, False, True), (100, 1, False, False, True)]


def _hand_built_loss():
    loss = losses.make("subcenter_arcface", num_classes=2, embedding_dim=2, sub_centres=2, s=16.0, m=0.5)
    with torch.no_grad():  # row j·K + k is sub-centre k of class j; lengths other than 1 change no angle
        loss.head.weight.copy_(torch.tensor([_unit(0, 2.0), _unit(180, 0.5), _unit(90, 3.0), _unit(270)]))
    return loss


def test_subcentre_report_counts_by_hand():
    loss = _hand_built_loss()
    emb = torch.tensor([_unit(a, norm=0.5 + i / 4) for i, (a, *_) in enumerate(SAMPLES)])
    labels = torch.tensor([s[1] for s in SAMPLES])
    flipped = torch.tensor([s[2] for s in SAMPLES])
    assert loss.dominant_sub_centres(emb, labels).tolist() == [0, 1]
    on_dominant = [s[3] for s in SAMPLES]
    outlier = [s[4] for s in SAMPLES]

    def share(values):
        return sum(values) / len(values)

    report = robust.subcentre_report(loss, emb, labels, flipped, threshold_degrees=75.0)
    assert set(report) == {"clean_on_dominant", "noisy_on_dominant", "outliers", "outliers_noisy", "noisy_found"}
    assert report["clean_on_dominant"] == pytest.approx(share([d for d, s in zip(on_dominant, SAMPLES) if not s[2]]))
    assert report["noisy_on_dominant"] == pytest.approx(share([d for d, s in zip(on_dominant, SAMPLES) if s[2]]))
    assert report["outliers"] == pytest.approx(share(outlier))
    assert report["outliers_noisy"] == pytest.approx(share([s[2] for s, o in zip(SAMPLES, outlier) if o]))
    assert report["noisy_found"] == pytest.approx(share([o for s, o in zip(SAMPLES, outlier) if s[2]]))
    assert report["outliers_noisy"] != pytest.approx(report["noisy_found"])  # precision and recall told apart
    # a wider threshold drops fewer: 80° is within 85°, the other outliers are 170° or more away
    wide = robust.subcentre_report(loss, emb, labels, flipped, threshold_degrees=85.0)
    assert wide["outliers"] == pytest.approx((sum(outlier) - 1) / len(SAMPLES))


def test_subcentre_report_without_flips_or_outliers_is_nan_there():
    loss = _hand_built_loss()
    emb = torch.tensor([_unit(3), _unit(-4), _unit(268)])
    labels, flipped = torch.tensor([0, 0, 1]), torch.zeros(3, dtype=torch.bool)
    report = robust.subcentre_report(loss, emb, labels, flipped)
    assert report["clean_on_dominant"] == 1.0 and report["outliers"] == 0.0
    assert all(math.isnan(report[k]) for k in ("noisy_on_dominant", "outliers_noisy", "noisy_found"))
    for bad in (flipped.long(), flipped[:2], flipped.tolist()):
        with pytest.raises(ValueError, match="flipped"):
            robust.subcentre_report(loss, emb, labels, bad)


# ---- quality_report --------------------------------------------------------------------------------------------

def test_quality_report_measures_each_level():
    torch.manual_seed(0)
    model = models.MnistNet(8).eval()
    loss = losses.make("arcface", num_classes=10, embedding_dim=8)
    test = synthetic(40, seed=3)
    report = robust.quality_report(model, loss, test, batch_size=16)
    assert set(report) == {"levels", "accuracy", "norm_mean", "norm_std"}
    assert report["levels"] == list(robust.LEVELS)
    assert all(len(report[k]) == len(robust.LEVELS) for k in report)
    assert all(0.0 <= a <= 1.0 for a in report["accuracy"]) and all(v > 0 for v in report["norm_mean"])
    for i, level in enumerate(robust.LEVELS):  # the same numbers counted directly
        emb, labels = embed(model, DataLoader(TensorImages(robust.degrade(test.images, level), test.targets,
                                                           CLASSES), batch_size=40))
        assert report["accuracy"][i] == pytest.approx(float((loss.predict(emb) == labels).float().mean()))
        assert report["norm_mean"][i] == pytest.approx(float(emb.norm(dim=1).mean()), rel=1e-5)
        assert report["norm_std"][i] == pytest.approx(float(emb.norm(dim=1).std()), rel=1e-4)
    assert len(set(report["norm_mean"])) == len(robust.LEVELS)  # each level feeds other images
    some = robust.quality_report(model, loss, test, levels=(3, 0))
    assert some["levels"] == [3, 0] and some["accuracy"] == [report["accuracy"][3], report["accuracy"][0]]
    with pytest.raises(ValueError, match="level"):
        robust.quality_report(model, loss, test, levels=(0, 5))


# ---- study / shipped -------------------------------------------------------------------------------------------

def test_study_and_shipped_on_a_study_of_our_own(tmp_path, monkeypatch):
    monkeypatch.setattr(robust, "STUDY", tmp_path / "FAMILY.json")
    with pytest.raises(FileNotFoundError, match="family_study.py --ship"):
        robust.study()
    torch.manual_seed(0)
    model, loss = models.MnistNet(4).eval(), losses.make("cosface", num_classes=10, embedding_dim=4)
    path = pretrained.export(model, loss, tmp_path / "family-tiny.pt")
    entry = {"file": path.name, "sha256": pretrained.sha256(path), "bytes": path.stat().st_size}
    robust.STUDY.write_text(json.dumps({"models": {"family-tiny": entry, "family-other": dict(entry)}, "runs": []}))
    assert robust.study()["models"]["family-tiny"] == entry
    back, back_loss, got = robust.shipped("family-tiny")
    assert got == entry and not back.training and back_loss.name == "cosface"
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(back(x), model(x), rtol=1e-2, atol=1e-2)  # float16 weights on disk
    with pytest.raises(ValueError, match=r"name must be a shipped model of the family study \(family-other, family-tiny\)"):
        robust.shipped("family-nope")
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(pretrained.ChecksumError):
        robust.shipped("family-tiny")


@pytest.fixture(scope="module")
def family():
    if not robust.STUDY.is_file():
        pytest.skip(f"{robust.STUDY.name} is not written yet (`python benchmarks/family_study.py --ship` writes it)")
    return robust.study()


def test_shipped_family_files_match_the_study(family):
    entries = family["models"]
    assert entries, "FAMILY.json ships no model"
    runs = {r["run"] for r in family["runs"]}
    for name, entry in entries.items():
        path = robust.STUDY.parent / entry["file"]
        assert path.is_file(), path
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], name
        assert path.stat().st_size == entry["bytes"], name
        assert entry["run"] in runs, name  # its training run is recorded with the study
    files = sorted(robust.STUDY.parent.glob("family-*.pt"))
    assert {p.name for p in files} == {e["file"] for e in entries.values()}
    assert sum(p.stat().st_size for p in files) <= 4_000_000


def test_unknown_family_model_is_refused_naming_the_shipped_ones(family):
    with pytest.raises(ValueError, match="name") as err:
        robust.shipped("family-no-such-model")
    for name in family["models"]:
        assert re.search(re.escape(name), str(err.value)), name


def test_a_shipped_family_model_reproduces_its_test_accuracy(family, mnist_root):
    from arclib import data
    from arclib.metrics import accuracy

    name = sorted(family["models"])[0]
    model, loss, entry = robust.shipped(name)
    test = data.load("mnist", train=False, root=mnist_root, download=False)
    emb, labels = embed(model, DataLoader(test, batch_size=1000))
    assert 100 * accuracy(loss, emb, labels) == pytest.approx(entry["shipped_test_acc"], abs=0.05)
