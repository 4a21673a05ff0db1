"""arclib.metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from arclib import losses, metrics


def test_accuracy_is_argmax_of_scores():
    loss = losses.make("arcface", s=10, m=0.5, num_classes=3, embedding_dim=2)
    with torch.no_grad():
        loss.head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    emb = torch.tensor([[2.0, 0.1], [0.1, 3.0], [-1.0, 0.2], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 2, 0])  # the last one sits on centre 1: wrong
    assert metrics.accuracy(loss, emb, labels) == pytest.approx(0.75)


def test_angle_stats_of_known_vectors():
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # 90°, 90°, 180° apart
    s30, c30 = math.sin(math.radians(30)), math.cos(math.radians(30))
    # class 0 at +10° and −10° of centre 0, class 1 exactly on centre 1, class 2 at 30° from centre 2
    emb = torch.tensor([[math.cos(math.radians(10)), math.sin(math.radians(10))],
                        [math.cos(math.radians(10)), -math.sin(math.radians(10))],
                        [0.0, 5.0],
                        [-c30, s30]])
    labels = torch.tensor([0, 0, 1, 2])
    st = metrics.angle_stats(emb, labels, centres)
    assert st["intra"] == pytest.approx((10 + 10 + 0 + 30) / 4, abs=1e-3)
    # nearest other centre: 80° (10° → centre 1 at 90°), 100° (−10° → 90°), 90°, 60° (150° → 90°)
    assert st["to_nearest_other_centre"] == pytest.approx((80 + 100 + 90 + 60) / 4, abs=1e-3)
    assert st["inter_centre_min"] == pytest.approx(90, abs=1e-3)
    assert st["inter_centre_mean"] == pytest.approx((90 + 180 + 90) / 3, abs=1e-3)
    assert st["inter_centre_nearest_mean"] == pytest.approx(90, abs=1e-3)
    # different-class pairs, angles of the embeddings at 10°, −10°, 90°, 150°:
    # (0,2) 80, (0,3) 140, (1,2) 100, (1,3) 160, (2,3) 60
    assert st["inter_embedding"] == pytest.approx((80 + 140 + 100 + 160 + 60) / 5, abs=1e-3)


def test_angle_stats_checks_shapes():
    with pytest.raises(ValueError, match="share d"):
        metrics.angle_stats(torch.randn(4, 3), torch.zeros(4).long(), torch.randn(2, 2))


def test_make_pairs_balanced_and_valid():
    labels = np.repeat(np.arange(5), 7)
    i, j, same = metrics.make_pairs(labels, 1000, seed=1)
    assert len(i) == 1000 and same.sum() == 500
    assert (i != j).all()
    assert ((labels[i] == labels[j]) == same).all()
    again = metrics.make_pairs(labels, 1000, seed=1)
    assert all((a == b).all() for a, b in zip((i, j, same), again))


def test_make_pairs_needs_two_classes():
    with pytest.raises(ValueError, match="2 classes"):
        metrics.make_pairs(np.zeros(10), 10)


def test_tar_at_far_hand_made_scores():
    # 4 positives, 5 negatives. Negatives: 0.9 0.5 0.4 0.3 0.2; positives 0.95 0.8 0.7 0.1.
    from sklearn.metrics import roc_curve

    scores = np.array([0.95, 0.8, 0.7, 0.1, 0.9, 0.5, 0.4, 0.3, 0.2])
    same = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0], bool)
    fpr, tpr, _ = roc_curve(same, scores)
    # at FAR 0 only 0.95 is accepted: TAR 1/4. At FAR 1/5 (0.9 accepted), 0.8 and 0.7 come next: TAR 3/4.
    assert metrics.tar_at_far(fpr, tpr, 0.0) == pytest.approx(0.25)
    assert metrics.tar_at_far(fpr, tpr, 0.1) == pytest.approx(0.25)  # horizontal segment: no threshold does better
    assert metrics.tar_at_far(fpr, tpr, 0.2) == pytest.approx(0.75)
    assert metrics.tar_at_far(fpr, tpr, 0.99) == pytest.approx(0.75)
    assert metrics.tar_at_far(fpr, tpr, 1.0) == pytest.approx(1.0)


def test_tar_at_far_interpolates_across_ties():
    # one positive and one negative tie at 0.5: the ROC goes diagonally from (0, 0) to (1, 1)
    fpr, tpr = np.array([0.0, 1.0]), np.array([0.0, 1.0])
    assert metrics.tar_at_far(fpr, tpr, 0.3) == pytest.approx(0.3)


def test_best_threshold_exact():
    scores = np.array([0.9, 0.8, 0.3, 0.6, 0.1])
    same = np.array([1, 1, 1, 0, 0], bool)
    thr, acc = metrics.best_threshold(scores, same)
    # cut after 0.8 (threshold 0.7) gets 4/5, as does cutting after 0.3 (threshold 0.2); ties go to the higher
    assert acc == pytest.approx(0.8)
    assert thr == pytest.approx(0.7)


def test_kfold_separable_is_perfect():
    rng = np.random.default_rng(0)
    same = rng.random(600) < 0.5
    scores = np.where(same, rng.uniform(0.6, 1.0, 600), rng.uniform(-1.0, 0.4, 600))
    mean, std, thresholds = metrics.kfold_accuracy(scores, same, folds=10)
    assert mean == 1.0 and std == 0.0 and len(thresholds) == 10
    assert all(0.4 < t < 0.6 for t in thresholds)


def test_kfold_uses_held_out_threshold():
    # the third fold (0.45 same, 0.55 different) is scored with the threshold of the other two folds (0.5),
    # which gets both of its pairs wrong, although a threshold of its own could get both right
    scores = np.array([0.9, 0.1, 0.9, 0.1, 0.45, 0.55])
    same = np.array([1, 0, 1, 0, 1, 0], bool)
    mean, std, thr = metrics.kfold_accuracy(scores, same, folds=3)
    # folds 1 and 2 train on 0.9✓ 0.55✗ 0.45✓ 0.1✗ sorted: cuts at 0.725 and 0.275 both give 3/4; the higher wins
    assert thr[0] == pytest.approx(0.725) and thr[1] == pytest.approx(0.725)
    assert thr[2] == pytest.approx(0.5)
    assert mean == pytest.approx((1 + 1 + 0) / 3)
    assert std == pytest.approx(np.std([1, 1, 0]))


def test_verification_on_clustered_embeddings():
    torch.manual_seed(0)
    centres = torch.eye(4) * 10
    labels = torch.arange(4).repeat_interleave(50)
    emb = centres[labels] + torch.randn(200, 4) * 0.5
    v = metrics.verification(emb, labels, n_pairs=600, seed=0)
    assert v["auc"] == pytest.approx(1.0)
    assert v["accuracy_mean"] == 1.0
    assert set(v["tar_at_far"]) == {1e-1, 1e-2, 1e-3}
    assert v["tar_at_far"][1e-3] == pytest.approx(1.0)
    assert len(v["positive_angles"]) == len(v["negative_angles"]) == 300
    assert v["positive_angles"].max() < v["negative_angles"].min()


def _three_centres(loss):
    with torch.no_grad():
        loss.head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    return loss


def test_support_size_hand_computed():
    on_centre, between = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]) / math.sqrt(2)
    label = torch.tensor([0])
    sparse = _three_centres(losses.make("sparsemax", s=2.0, num_classes=3, embedding_dim=2))
    # z = 2·cos θ = [2, 0, −2]: the target leads by 2 ≥ 1, so sparsemax puts all the mass on it
    assert metrics.support_size(sparse, on_centre, label).tolist() == [1]
    # halfway between two centres: z = [1.41, 1.41, −1.41] → p = [½, ½, 0]
    assert metrics.support_size(sparse, between, label).tolist() == [2]
    soft = _three_centres(losses.make("normface", s=2.0, num_classes=3, embedding_dim=2))
    # softmax([2, 0, −2]) = [0.867, 0.117, 0.016]: every class positive, two above 0.1
    assert metrics.support_size(soft, on_centre, label).tolist() == [3]
    assert metrics.support_size(soft, on_centre, label, threshold=0.1).tolist() == [2]
    assert metrics.support_size(soft, on_centre, label, threshold=0.5).tolist() == [1]


def test_support_size_counts_the_training_logits_with_their_margin():
    x, label = torch.tensor([[1.0, 1.0]]) / math.sqrt(2), torch.tensor([0])
    angular = _three_centres(losses.make("angular_sparsemax", s=2.0, m=0.5, num_classes=3, embedding_dim=2))
    # target cos(45° + 0.5 rad) = 0.282: z = [0.565, 1.414, −1.414], τ = 0.490, p = [0.075, 0.925, 0]
    assert metrics.support_size(angular, x, label).tolist() == [2]
    assert metrics.support_size(angular, x, label, threshold=0.1).tolist() == [1]
    with pytest.raises(ValueError, match="threshold"):
        metrics.support_size(angular, x, label, threshold=1.0)


def test_comparison_rows_are_accuracy_and_angle_stats():
    torch.manual_seed(0)
    loss = losses.make("arcface", s=16, m=0.2, num_classes=3, embedding_dim=4)
    emb, labels = torch.randn(60, 4), torch.randint(0, 3, (60,))
    stats, text = metrics.comparison({"ArcFace 4-D": (loss, emb, labels, 12.3), "again": (loss, emb, labels)})
    st = metrics.angle_stats(emb, labels, loss.head.weight)
    row = stats["ArcFace 4-D"]
    assert row["accuracy"] == metrics.accuracy(loss, emb, labels)
    assert row["intra"] == st["intra"] and row["gap"] == pytest.approx(st["to_nearest_other_centre"] - st["intra"])
    assert row["seconds"] == 12.3 and "seconds" not in stats["again"]
    header, rule, first, second = text.splitlines()
    assert header.split()[:3] == ["run", "test", "acc"] and header.endswith("wall time")
    assert set(rule) == {"-"} and len(rule) == len(header)
    assert first.startswith("ArcFace 4-D") and first.endswith("12 s")
    assert f"{100 * row['accuracy']:.2f}%" in first and f"{row['intra']:.1f}°" in first
    assert "wall time" not in metrics.comparison({"a": (loss, emb, labels)})[1]


def test_angles_to_centres_per_sample_by_hand():
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    x = torch.tensor([[2.0, 2.0], [0.0, -3.0]])  # 45° from centres 0 and 1; 90° from 0 and 2, 180° from 1
    own, nearest_other = metrics.angles_to_centres(x, torch.tensor([0, 1]), centres)
    torch.testing.assert_close(own, torch.tensor([45.0, 180.0]))
    torch.testing.assert_close(nearest_other, torch.tensor([45.0, 90.0]))
    stats = metrics.angle_stats(x, torch.tensor([0, 1]), centres)
    assert stats["intra"] == pytest.approx(112.5) and stats["to_nearest_other_centre"] == pytest.approx(67.5)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        metrics.angles_to_centres(x, torch.tensor([0, 3]), centres)
    with pytest.raises(ValueError, match="must share d"):
        metrics.angles_to_centres(x, torch.tensor([0, 1]), torch.zeros(3, 5))


def test_over_seeds_mean_and_sample_spread_per_setting():
    runs = [{"label": "a", "K": 10, "acc": 80.0}, {"label": "a", "K": 10, "acc": 82.0},
            {"label": "b", "K": 10, "acc": 70.0}, {"label": "a", "K": 30, "acc": 90.0}]
    by_label = metrics.over_seeds(runs, "acc")
    assert list(by_label) == ["a", "b"]
    mean, std, n = by_label["a"]
    assert (mean, n) == (pytest.approx(84.0), 3)
    assert std == pytest.approx(np.std([80.0, 82.0, 90.0], ddof=1))
    assert math.isnan(by_label["b"][1]) and by_label["b"][2] == 1
    by_both = metrics.over_seeds(runs, "acc", by=("label", "K"))
    assert by_both[("a", 10)] == (pytest.approx(81.0), pytest.approx(math.sqrt(2)), 2)


def test_over_seeds_refuses_a_run_without_the_metric_by_name():
    with pytest.raises(ValueError, match=r"runs\[1\] has no 'acc'"):
        metrics.over_seeds([{"label": "a", "acc": 1.0}, {"label": "a"}], "acc")
