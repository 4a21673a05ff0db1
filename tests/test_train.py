"""arclib.train on tiny synthetic images: learning, exact resumption, atomic checkpoints."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from arclib import losses, models, train


def synthetic(n: int = 96, classes: int = 3, seed: int = 0) -> TensorDataset:
    """28×28 images: class c lights up the c-th horizontal band, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, 1, 28, 28, generator=g) * 0.5
    for c in range(classes):
        x[y == c, :, 4 + 7 * c: 9 + 7 * c, :] += 2.0
    return TensorDataset(x, y)


def make_run(seed: int = 0, dim: int = 8):
    torch.manual_seed(seed)
    model = models.MnistNet(dim, width=4, dropout=0.2)
    loss = losses.make("arcface", s=8, m=0.2, num_classes=3, embedding_dim=dim)
    loader = DataLoader(synthetic(), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    return model, loss, loader


class Crash(Exception):
    pass


class CrashingLoader:
    """A DataLoader stand-in that dies after ``after`` batches in total, like a killed job."""

    def __init__(self, loader: DataLoader, after: int) -> None:
        self.loader, self.after, self.generator, self.seen = loader, after, loader.generator, 0
        self.dataset, self.batch_size = loader.dataset, loader.batch_size  # part of the run's settings

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            if self.seen == self.after:
                raise Crash
            self.seen += 1
            yield batch


FIT = dict(epochs=3, lr=0.05, optimizer="sgd", device="cpu", progress=False, seed=3)


@pytest.mark.slow
def test_loss_decreases_and_history_is_json():
    model, loss, loader = make_run()
    test = DataLoader(synthetic(48, seed=1), batch_size=32)
    h = train.fit(model, loss, loader, test, epochs=4, lr=0.05, device="cpu", progress=False)
    assert h.epochs == 4
    assert h.train_loss[-1] < 0.7 * h.train_loss[0]
    assert h.test_acc[-1] > 0.9
    again = train.History.from_dict(json.loads(json.dumps(h.to_dict())))
    assert again == h


def test_max_steps_cuts_epochs():
    model, loss, loader = make_run()
    calls = []
    real = loss.forward
    loss.forward = lambda *a, **k: calls.append(1) or real(*a, **k)
    train.fit(model, loss, loader, epochs=2, max_steps=2, device="cpu", progress=False)
    assert len(calls) == 4


def test_on_step_sees_every_trained_batch_after_its_step():
    model, loss, loader = make_run()
    initial, seen = loss.head.weight.detach().clone(), []

    def watch(step, watched_loss, emb, labels):
        assert watched_loss is loss
        assert not emb.requires_grad and not torch.is_grad_enabled()
        seen.append((step, tuple(emb.shape), labels.tolist(), loss.head.weight.detach().clone()))

    train.fit(model, loss, loader, epochs=2, max_steps=3, device="cpu", progress=False, on_step=watch)
    assert [s for s, *_ in seen] == list(range(6))
    assert all(shape == (16, 8) and len(y) == 16 and set(y) <= {0, 1, 2} for _, shape, y, _ in seen)
    # called after the optimizer step: the first call already sees moved centres
    assert not torch.equal(seen[0][3], initial)


@pytest.mark.slow
def test_resume_reproduces_uninterrupted_run(tmp_path):
    model, loss, loader = make_run()
    full = train.fit(model, loss, loader, checkpoint=tmp_path / "full.pt", **FIT)

    model, loss, loader = make_run()
    with pytest.raises(Crash):
        train.fit(model, loss, CrashingLoader(loader, after=len(loader) + 2), checkpoint=tmp_path / "cut.pt", **FIT)
    assert torch.load(tmp_path / "cut.pt", weights_only=True)["epoch"] == 1

    model, loss, loader = make_run(seed=99)  # a different init: everything must come from the checkpoint
    resumed = train.fit(model, loss, loader, resume=tmp_path / "cut.pt", **FIT)
    assert resumed.train_loss == full.train_loss  # exact, not approximate
    assert resumed.train_acc == full.train_acc
    assert resumed.lr == full.lr
    final = torch.load(tmp_path / "full.pt", weights_only=True)["model"]["state"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, final[k]), k


def test_checkpoint_roundtrip_weights_only(tmp_path):
    model, loss, loader = make_run()
    path = tmp_path / "run" / "ckpt.pt"
    train.fit(model, loss, loader, epochs=1, max_steps=2, device="cpu", progress=False, checkpoint=path,
              meta={"dataset": "mnist", "classes": [0, 1, 2]})
    raw = torch.load(path, weights_only=True)
    assert raw["model"]["class"] == "MnistNet" and raw["loss"]["name"] == "arcface"
    model2, loss2, meta = train.load_checkpoint(path)
    assert meta["dataset"] == "mnist" and meta["epoch"] == 1 and meta["classes"] == [0, 1, 2]
    assert loss2.hparams() == loss.hparams()
    model.eval()
    model2.eval()
    x = synthetic(8)[:][0]
    with torch.no_grad():
        assert torch.equal(model(x), model2(x))
        assert torch.equal(loss.scores(model(x)), loss2.scores(model2(x)))
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]  # no temp files left behind


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    model, loss, _ = make_run()
    path = tmp_path / "ckpt.pt"
    train.save_checkpoint(path, model, loss, epoch=1, meta={"dataset": "mnist"})
    before = path.read_bytes()

    def half_write(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_write)
    with pytest.raises(OSError, match="disk full"):
        train.save_checkpoint(path, model, loss, epoch=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]
    monkeypatch.undo()
    assert train.read_checkpoint(path)["epoch"] == 1


def test_embed_shapes_and_restores_mode():
    model, _, loader = make_run()
    model.train()
    emb, labels = train.embed(model, loader, "cpu")
    assert emb.shape == (96, 8) and emb.dtype == torch.float32 and labels.shape == (96,)
    assert model.training


def test_fit_rejects_bad_arguments():
    model, loss, loader = make_run()
    with pytest.raises(ValueError, match="optimizer must be one of"):
        train.fit(model, loss, loader, optimizer="lbfgs", progress=False)
    with pytest.raises(ValueError, match="epochs must be"):
        train.fit(model, loss, loader, epochs=0, progress=False)
    with pytest.raises(ValueError, match="lr must be"):
        train.fit(model, loss, loader, lr=-1, progress=False)


def test_default_device_is_a_device():
    assert train.default_device().type in ("cuda", "mps", "cpu")


def test_train_fresh_is_the_seeded_build_then_fit():
    """train_fresh = manual_seed, for_dataset, make, fit: the same numbers as doing those steps by hand."""
    def loader():
        return DataLoader(synthetic(), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))

    kw = dict(epochs=2, lr=0.05, device="cpu", progress=False)
    run = train.train_fresh("mnist", "arcface", 8, loader(), seed=5, num_classes=3, model_kw={"width": 4},
                            loss_kw={"s": 8, "m": 0.2}, **kw)
    torch.manual_seed(5)
    model = models.MnistNet(8, width=4)
    loss = losses.make("arcface", s=8, m=0.2, num_classes=3, embedding_dim=8)
    by_hand = train.fit(model, loss, loader(), seed=5, **kw)
    assert set(run) == {"model", "loss", "history", "seconds"} and run["seconds"] > 0
    assert run["loss"].num_classes == 3 and run["loss"].head.embedding_dim == 8
    assert run["history"].train_loss == by_hand.train_loss
    assert torch.equal(run["loss"].head.weight, loss.head.weight)


def test_sweep_is_train_fresh_per_value_and_seed():
    def loader():
        return DataLoader(synthetic(), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))

    test = DataLoader(synthetic(48, seed=1), batch_size=48)
    kw = dict(num_classes=3, model_kw={"width": 4}, epochs=1, max_steps=2, lr=0.05, device="cpu", progress=False)
    result = train.sweep("mnist", "arcface", 8, loader(), test, "s", [2.0, 8.0], seeds=(0, 1), loss_kw={"m": 0.2},
                         **kw)
    assert list(result) == [2.0, 8.0] and all(len(v) == 2 for v in result.values())
    one = train.train_fresh("mnist", "arcface", 8, loader(), test, seed=1, loss_kw={"m": 0.2, "s": 8.0}, **kw)
    assert result[8.0][1] == one["history"].test_acc[-1]
    with pytest.raises(ValueError, match="param 's' is swept"):
        train.sweep("mnist", "arcface", 8, loader(), test, "s", [2.0], loss_kw={"s": 4.0}, **kw)
    with pytest.raises(ValueError, match="values"):
        train.sweep("mnist", "arcface", 8, loader(), test, "s", [], **kw)


def test_margin_fraction_moves_every_margin_and_restores_it():
    arc = losses.make("arcface", s=8, m=0.5)
    with arc.margin_fraction(0.25):
        assert arc.m == pytest.approx(0.125)
        theta = torch.tensor([1.0])
        assert arc.target_logit(theta).item() == pytest.approx(8 * math.cos(1.125))
    assert arc.m == 0.5 and arc.hparams()["m"] == 0.5
    combined = losses.make("combined", s=8, m1=1.4, m2=0.2, m3=0.1)
    with combined.margin_fraction(0.0):
        assert (combined.m1, combined.m2, combined.m3) == (1.0, 0.0, 0.0)
    assert (combined.m1, combined.m2, combined.m3) == (1.4, 0.2, 0.1)
    with pytest.raises(ValueError, match="fraction"):
        with arc.margin_fraction(1.5):
            pass


def test_margin_warmup_ramps_per_step_then_holds(monkeypatch):
    model, loss, loader = make_run()
    seen = []
    original = type(loss).forward

    def recording_forward(self, x, labels, reduction="mean"):
        seen.append(self.m)
        return original(self, x, labels, reduction)

    monkeypatch.setattr(type(loss), "forward", recording_forward)
    steps = len(loader)  # 6 batches per epoch
    train.fit(model, loss, loader, epochs=3, lr=0.05, device="cpu", progress=False, margin_warmup=1.5)
    ramp = int(1.5 * steps)
    assert seen[:ramp] == pytest.approx([0.2 * (k + 1) / (1.5 * steps) for k in range(ramp)])
    assert seen[ramp:] == [0.2] * (3 * steps - ramp)
    assert loss.m == 0.2


def test_margin_warmup_is_a_noop_without_margin_and_checked():
    model, _, loader = make_run()
    soft = losses.make("softmax", num_classes=3, embedding_dim=8)
    train.fit(model, soft, loader, epochs=1, lr=0.05, device="cpu", progress=False, margin_warmup=1)
    model, loss, loader = make_run()
    with pytest.raises(ValueError, match="margin_warmup"):
        train.fit(model, loss, loader, epochs=2, device="cpu", progress=False, margin_warmup=3)


def test_history_watches_own_angle_and_centre_spread():
    model, loss, loader = make_run()
    h = train.fit(model, loss, loader, epochs=2, lr=0.05, device="cpu", progress=False)
    assert len(h.own_angle) == len(h.centre_angle_min) == 2
    assert all(0 <= a <= 180 for a in h.own_angle + h.centre_angle_min)
    w = torch.nn.functional.normalize(loss.head.weight.detach(), dim=1)
    cos = (w @ w.T).fill_diagonal_(-1)
    assert h.centre_angle_min[-1] == pytest.approx(math.degrees(math.acos(cos.max().item())), abs=1e-3)
    assert h.own_angle[0] > h.own_angle[-1]  # the embeddings move towards their centres


def test_sweep_s_then_m_sweeps_m_at_the_best_s(monkeypatch):
    calls = []

    def fake_sweep(dataset, name, dim, tr, te, param, values, *, seeds, loss_kw, **kw):
        calls.append((name, param, tuple(values), dict(loss_kw)))
        return {v: [0.5 + (0.1 if param == "s" and v == 8 else 0.0) + 0.01 * v] for v in values}

    monkeypatch.setattr(train, "sweep", fake_sweep)
    out = train.sweep_s_then_m("mnist", {"A": ("arcface", 0.5)}, 8, None, None, (4, 8, 16), (0.1, 0.3))
    assert out["best_s"] == {"A": 8}
    assert calls == [("arcface", "s", (4, 8, 16), {"m": 0.5}), ("arcface", "m", (0.1, 0.3), {"s": 8})]
    assert set(out["m"]["A"]) == {0.1, 0.3}
