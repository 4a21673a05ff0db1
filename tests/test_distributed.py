"""arclib.distributed: the loss with W sharded over 2 and 4 gloo processes equals the one-process loss, and so
do its gradients and one SGD step (each process checks itself against arclib's unsharded loss)."""

from __future__ import annotations

import pytest
import torch

from arclib.distributed import ShardedMarginLoss, compare_with_one_process, launch, shard_range, world
from arclib.losses import make
from arclib.scale import chunked_margin_loss


@pytest.mark.parametrize("world_size,name", [(2, "arcface"), (4, "cosface")])
def test_sharded_loss_equals_one_process(world_size, name):
    # 50 classes over 4 ranks: shards of 13, 13, 12, 12 rows, chunk 7 divides none of them
    results = launch(compare_with_one_process, world_size, name)
    assert len(results) == world_size
    assert len({r["loss"] for r in results}) == 1  # the same loss on every rank
    for rank, result in enumerate(results):
        for what, error in result.items():
            if what != "loss":
                assert error < 1e-5, (rank, what, error)


def test_shard_ranges_cover_the_classes_once():
    for num_classes, world_size in [(50, 4), (10, 3), (7, 7), (1_000_000, 8)]:
        ranges = [shard_range(num_classes, r, world_size) for r in range(world_size)]
        assert ranges[0][0] == 0 and ranges[-1][1] == num_classes
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        sizes = [end - start for start, end in ranges]
        assert max(sizes) - min(sizes) <= 1


def test_one_process_without_torch_distributed_is_the_chunked_loss():
    torch.manual_seed(0)
    whole = make("arcface", num_classes=20, embedding_dim=4)
    sharded = ShardedMarginLoss(make("arcface"), 20, 4, weight=whole.head.weight, chunk_size=6)
    x, labels = torch.randn(5, 4), torch.randint(0, 20, (5,))
    torch.testing.assert_close(sharded(x, labels), chunked_margin_loss(whole, x, labels))
    torch.testing.assert_close(sharded.predict(x), whole.predict(x))


def test_bad_arguments():
    with pytest.raises(ValueError, match="loss must be a MarginLoss with the softmax criterion"):
        ShardedMarginLoss(make("qamface"), 20, 4)
    with pytest.raises(ValueError, match=r"weight must be this rank's shard of shape \(20, 4\)"):
        ShardedMarginLoss(make("arcface"), 20, 4, weight=torch.randn(10, 4))
    sharded = ShardedMarginLoss(make("arcface"), 20, 4)
    with pytest.raises(ValueError, match="features must have shape"):
        sharded(torch.randn(5, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must be in"):
        sharded(torch.randn(5, 4), torch.full((5,), 20))
    with pytest.raises(ValueError, match=r"world_size must be in \[1, 64\]"):
        launch(compare_with_one_process, 0)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_features_and_zero_centres_are_refused(value):
    sharded = ShardedMarginLoss(make("arcface"), 20, 4)
    x, labels = torch.randn(5, 4), torch.randint(0, 20, (5,))
    x[2, 3] = value
    with pytest.raises(ValueError, match=r"^features must be finite \(values in \(-inf, inf\), no NaN\)"):
        sharded(x, labels)
    with torch.no_grad():
        sharded.weight[7] = 0  # a finite loss, but gradients near 1e12
    with pytest.raises(ValueError, match=r"^weight rows \(class centres\) must have norm >= 1e-12.*class 7 "):
        sharded(x.nan_to_num(), labels)


def test_sharded_benchmark_runs(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "sharded.py"), "--classes", "300", "--batch", "8",
                           "--dim", "4", "--processes", "2", "--steps", "1", "--chunk-size", "64"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "| 2 |" in proc.stdout and "follow 8·P + 8·N·d + 20·N (P > 1): yes" in proc.stdout


def test_training_on_two_processes_is_training_on_one():
    from arclib.distributed import train_synthetic

    settings = dict(num_classes=50, steps=3, batch=8, in_features=4, embedding_dim=3, lr=1.0)
    one = train_synthetic(**settings)
    two = launch(train_synthetic, 2, *settings.values())
    torch.testing.assert_close(torch.tensor(two[0]["losses"]), torch.tensor(one["losses"]), rtol=1e-5, atol=0)
    # 1e-5 relative to W's scale (an entry near zero carries the rounding of the others)
    scale = float(one["weight"].abs().max())
    torch.testing.assert_close(torch.cat([r["weight"] for r in two]), one["weight"], rtol=1e-5, atol=1e-5 * scale)
    assert two[0]["accuracy"] == two[1]["accuracy"] == one["accuracy"]


def test_partialfc_sampling_scores_a_sample_of_the_centres():
    torch.manual_seed(0)
    whole = make("arcface", num_classes=40, embedding_dim=4)
    sharded = ShardedMarginLoss(make("arcface"), 40, 4, weight=whole.head.weight, sample_rate=0.25)
    x, labels = torch.randn(6, 4), torch.tensor([0, 0, 5, 7, 39, 5])
    torch.manual_seed(1)
    rows, sampled_labels = sharded.sample_centres(labels)
    torch.manual_seed(1)  # the same draw inside forward
    value = sharded(x, labels)
    value.backward()
    used = sharded.weight.grad.abs().sum(dim=1) > 0
    assert int(used.sum()) == 10 and bool(used[[0, 5, 7, 39]].all())  # a quarter of 40, every positive among them
    sub = make("arcface", num_classes=10, embedding_dim=4)
    sub.head.weight.data = rows.detach().clone()
    torch.testing.assert_close(value, sub(x, sampled_labels))
    assert bool((rows[sampled_labels] == whole.head.weight[labels]).all())  # labels point at their own centres
    sharded.eval()  # evaluation scores every centre
    torch.testing.assert_close(sharded(x, labels), whole(x, labels), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"sample_rate must be in \(0, 1\]"):
        ShardedMarginLoss(make("arcface"), 40, 4, sample_rate=0)


def _gradcheck_sharded(name: str) -> bool:
    """Run in a one-process world: gradcheck of the sharded loss in float64, small (backward runs many times)."""
    torch.manual_seed(0)
    sharded = ShardedMarginLoss(make(name), 7, 8, weight=torch.randn(7, 8, dtype=torch.float64), chunk_size=3)
    x, labels = torch.randn(5, 8, dtype=torch.float64), torch.randint(0, 7, (5,))
    cos = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(sharded.weight.detach(), dim=1).T
    assert float(cos.min()) > -0.8 and float(cos.max()) < 0.9  # away from ArcFace's kink at θ* and the clamp at ±1
    # gradcheck perturbs its inputs in place: W is passed as sharded.weight itself, which forward reads
    return torch.autograd.gradcheck(lambda x, w: sharded(x, labels, reduction="none"),
                                    (x.requires_grad_(), sharded.weight))


@pytest.mark.parametrize("name", ["arcface", "cosface"])
def test_gradcheck_in_a_one_process_world(name):
    assert launch(_gradcheck_sharded, 1, name) == [True]


def _ranks_that_differ() -> dict[str, object]:
    """Run on 2 ranks: in each case rank 1 sends something rank 0 does not; returns what each case raised here,
    then the errors of a good step run backward twice (the ranks must still be in step) against one process."""
    rank, other = world()[0], world()[0] == 1
    torch.manual_seed(0)
    weight, x_all, labels_all = torch.randn(20, 5), torch.randn(8, 4), torch.tensor([0, 3, 12, 19, 7, 10, 15, 3])
    start, end = shard_range(20, rank, 2)
    x, labels = x_all[4 * rank:4 * rank + 4], labels_all[4 * rank:4 * rank + 4]

    def run(x: torch.Tensor, labels: torch.Tensor = labels, dim: int = 4, shard: torch.Tensor | None = None) -> str:
        loss = ShardedMarginLoss(make("arcface"), 20, dim, weight=weight[start:end, :dim] if shard is None else shard)
        try:
            loss(x, labels)
        except ValueError as error:
            return str(error)
        return "no error"

    zero, nan = weight[start:end, :4].clone(), x.clone()
    if other:
        zero[3], nan[2, 1] = 0, float("nan")
    cases = {
        "dtype": run(x.double() if other else x),
        "embedding size": run(torch.randn(4, 5) if other else x, dim=5 if other else 4),
        "feature shape": run(torch.randn(4, 5) if other else x),
        "batch": run(x[:3] if other else x, labels[:3] if other else labels),
        "zero centre": run(x, shard=zero),
        "non-finite": run(nan),
        "labels": run(x, labels + 20 if other else labels),
    }
    whole = make("arcface", num_classes=20, embedding_dim=4)
    whole.head.weight.data = weight[:, :4].clone()
    features = x_all.clone().requires_grad_()
    whole(features, labels_all).backward()
    sharded = ShardedMarginLoss(make("arcface"), 20, 4, weight=weight[start:end, :4])
    mine = x.clone().requires_grad_()
    value = sharded(mine, labels)
    value.backward(retain_graph=True)
    value.backward()  # twice: the gradients are twice the one-process ones
    for what, got, expected in [("feature", mine.grad, features.grad[4 * rank:4 * rank + 4]),
                                ("W", sharded.weight.grad, whole.head.weight.grad[start:end])]:
        cases[f"{what} gradient error"] = float((got - 2 * expected).abs().max() / (2 * expected).abs().max())
    return cases


def test_ranks_that_differ_are_refused_on_every_rank():
    # before these checks a dtype or width that differs aborted gloo in C++, and an error on one rank alone left
    # the other waiting in a collective
    zero, one = launch(_ranks_that_differ, 2)
    expected = {
        "dtype": "features must have the same dtype on every rank, got rank 0: float32, rank 1: float64",
        "embedding size": "embedding_dim must be the same on every rank, got rank 0: 4, rank 1: 5",
        "feature shape": "features must have shape (N, 4) with N >= 1 on every rank, got rank 0: (4, 4), rank 1: (4, 5)",
        "batch": "features must have the same batch size on every rank, got rank 0: 4, rank 1: 3",
        "non-finite": "features must be finite (values in (-inf, inf), no NaN); those of rank(s) [1] hold non-finite "
                      "entries",
    }
    for case, message in expected.items():
        assert zero[case] == one[case] == message, case
    # rank 1's shard starts at class 10: its row 3 is class 13
    assert zero["zero centre"] == one["zero centre"]
    assert zero["zero centre"].startswith("weight rows (class centres) must have norm >= 1e-12")
    assert "class 13 " in zero["zero centre"]
    assert one["labels"] == "labels must be in [0, 20), got values in [23, 35]"  # the rank at fault: its own error
    assert zero["labels"].startswith("labels must be integers in [0, num_classes)") and "rank(s) [1]" in zero["labels"]
    for result in (zero, one):
        assert result["feature gradient error"] < 1e-5 and result["W gradient error"] < 1e-5
