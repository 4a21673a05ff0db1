"""Runs you can trust (issue 15): checkpoints that carry their settings and a sha256, one clear line for every
file that cannot be used, resume that refuses another run's checkpoint, and divergence that says what went wrong.

Every run here is a few steps of a tiny network on synthetic 28×28 images, on the CPU.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from arclib import losses, models, train


def synthetic(n: int = 48, classes: int = 3) -> TensorDataset:
    """Class c lights up the c-th horizontal band, plus noise."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % classes
    x = torch.randn(n, 1, 28, 28, generator=g) * 0.5
    for c in range(classes):
        x[y == c, :, 4 + 7 * c: 9 + 7 * c, :] += 2.0
    return TensorDataset(x, y)


def make_run(seed: int = 0, n: int = 48, batch_size: int = 16, dropout: float = 0.2, loss: str = "arcface",
             **loss_kw):
    torch.manual_seed(seed)
    model = models.MnistNet(8, width=4, dropout=dropout)
    loss_kw = {"s": 8.0, "m": 0.2, **loss_kw} if loss == "arcface" else loss_kw
    head = losses.make(loss, num_classes=3, embedding_dim=8, **loss_kw)
    loader = DataLoader(synthetic(n), batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    return model, head, loader


FIT = dict(epochs=2, max_steps=2, lr=0.05, device="cpu", progress=False, seed=3)


class Stop(Exception):
    pass


def stop_at(global_step: int):
    """An ``on_step`` that kills the run at a global step, like a job killed mid-epoch."""
    def on_step(step, *_):
        if step == global_step:
            raise Stop
    return on_step


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """The checkpoint of a finished two-epoch run."""
    path = tmp_path_factory.mktemp("finished") / "checkpoint.pt"
    train.fit(*make_run(), checkpoint=path, **FIT)
    return path


@pytest.fixture(scope="module")
def halfway(tmp_path_factory) -> Path:
    """The checkpoint of the same run killed in its second epoch: one epoch of two done."""
    path = tmp_path_factory.mktemp("halfway") / "checkpoint.pt"
    with pytest.raises(Stop):
        train.fit(*make_run(), checkpoint=path, on_step=stop_at(2), **FIT)
    return path


def one_line(err: BaseException, path) -> str:
    text = str(err)
    assert "\n" not in text and str(path) in text, text
    return text


def raw(path) -> dict:
    return torch.load(path, weights_only=True)


def as_format_1(state: dict) -> dict:
    """What arclib wrote before format 2: the same dict without settings and sha256."""
    old = {k: v for k, v in state.items() if k not in ("settings", "sha256")}
    old["format"] = 1
    return old


# ---- what a checkpoint holds ------------------------------------------------------------------------------

def test_checkpoint_holds_the_settings_and_their_sha256(finished):
    state = raw(finished)  # still a plain torch file that loads with weights_only=True
    assert state["format"] == train.CHECKPOINT_FORMAT == 2
    assert state["sha256"] == train.checkpoint_digest(state) and len(state["sha256"]) == 64
    s = state["settings"]
    assert (s["loss"], s["s"], s["m"], s["tail"], s["num_classes"]) == ("arcface", 8.0, 0.2, "continuous", 3)
    assert (s["model"], s["embedding_dim"], s["width"], s["dropout"]) == ("MnistNet", 8, 4, 0.2)
    assert (s["epochs"], s["lr"], s["optimizer"], s["weight_decay"], s["schedule"], s["seed"]) == \
        (2, 0.05, "sgd", 5e-4, "onecycle", 3)
    assert (s["max_steps"], s["steps_per_epoch"], s["margin_warmup"]) == (2, 2, 0.0)
    assert (s["batch_size"], s["train_images"], s["test_images"]) == (16, 48, None)
    assert train.load_checkpoint(finished)[2]["settings"] == s


# ---- damaged and unreadable files: one line naming the file -----------------------------------------------

def test_damaged_weights_fail_the_sha256(finished, tmp_path):
    """torch's zip reader checks no CRC: 64 flipped bytes inside a weight matrix loaded silently before format 2."""
    bad = tmp_path / "checkpoint.pt"
    weight = raw(finished)["model"]["state"]["neck.3.weight"]
    data = bytearray(finished.read_bytes())
    start = data.find(weight.numpy().tobytes()) + weight.numel() * 2 - 32  # the middle of the matrix's bytes
    data[start:start + 64] = bytes(b ^ 0xFF for b in data[start:start + 64])
    bad.write_bytes(bytes(data))
    damaged = torch.load(bad, weights_only=True)["model"]["state"]["neck.3.weight"]  # torch sees nothing wrong
    assert (damaged != weight).sum() == 16
    with pytest.raises(train.CheckpointError, match="is damaged: its contents do not match the sha256") as info:
        train.load_checkpoint(bad)
    one_line(info.value, bad)


@pytest.mark.parametrize("size", [64, 4096])
def test_overwritten_middle_is_refused(finished, tmp_path, size):
    bad = tmp_path / "checkpoint.pt"
    data = bytearray(finished.read_bytes())
    middle = len(data) // 2 - size // 2
    data[middle:middle + size] = bytes(range(256)) * (size // 256) if size >= 256 else bytes(range(size))
    bad.write_bytes(bytes(data))
    with pytest.raises(train.CheckpointError) as info:
        train.load_checkpoint(bad)
    assert "damaged" in one_line(info.value, bad) or "unreadable" in str(info.value)


def _utf8_broken(path: Path, good: Path) -> None:
    data = good.read_bytes()
    assert b"MnistNet" in data
    path.write_bytes(data.replace(b"MnistNet", b"\xffnistNet"))  # a pickled string that is no longer UTF-8


def _incomplete(path: Path, good: Path) -> None:
    state = as_format_1(raw(good))
    del state["model"]["state"]
    torch.save(state, path)


UNREADABLE = {
    "missing": (lambda p, good: None, "no such file"),
    "a folder": (lambda p, good: p.mkdir(), "not a file"),
    "empty": (lambda p, good: p.write_bytes(b""), "unreadable"),
    "text": (lambda p, good: p.write_text("not a checkpoint\n"), "unreadable"),
    "truncated": (lambda p, good: p.write_bytes(good.read_bytes()[: good.stat().st_size // 2]), "unreadable"),
    "not UTF-8": (_utf8_broken, "unreadable"),
    "a list": (lambda p, good: torch.save([1, 2, 3], p), "not an arclib checkpoint"),
    "no format": (lambda p, good: torch.save({"epoch": 1}, p), "not an arclib checkpoint"),
    "future format": (lambda p, good: torch.save({**raw(good), "format": 99}, p), "format 99"),
    "no sha256": (lambda p, good: torch.save({k: v for k, v in raw(good).items() if k != "sha256"}, p),
                  "lacks the sha256"),
    "incomplete": (_incomplete, "'model.state' is missing"),
}


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_unreadable_files_are_one_line(finished, tmp_path, case):
    make, match = UNREADABLE[case]
    path = tmp_path / "checkpoint.pt"
    make(path, finished)
    with pytest.raises(train.CheckpointError, match=match) as info:
        train.load_checkpoint(path)
    one_line(info.value, path)
    assert isinstance(info.value, ValueError)  # what the CLI turns into `arclib: error: ...`


def test_settings_that_disagree_with_the_weights(finished, tmp_path):
    state = raw(finished)
    state["model"]["config"]["width"] = 8  # the weights are of width 4
    state["sha256"] = train.checkpoint_digest(state)  # intact as a file, inconsistent inside
    path = tmp_path / "checkpoint.pt"
    torch.save(state, path)
    with pytest.raises(train.CheckpointError, match="model settings disagree with its weights: .* of shape") as info:
        train.load_checkpoint(path)
    one_line(info.value, path)


def test_absurd_sizes_fail_before_anything_is_allocated(finished, tmp_path):
    """2^30 classes × 2^16 dimensions would be a 256 TiB head: it is checked on the meta device, never built."""
    state = as_format_1(raw(finished))
    state["loss"]["hparams"].update(num_classes=1 << 30, embedding_dim=1 << 16)
    path = tmp_path / "checkpoint.pt"
    torch.save(state, path)
    t0 = time.perf_counter()
    with pytest.raises(train.CheckpointError, match="loss settings disagree with its weights") as info:
        train.load_checkpoint(path)
    assert time.perf_counter() - t0 < 10
    one_line(info.value, path)
    state["loss"]["hparams"]["num_classes"] = 1 << 31  # past the loss's own limit: its range check, by file
    torch.save(state, path)
    with pytest.raises(train.CheckpointError, match=r"invalid loss: num_classes must be"):
        train.load_checkpoint(path)


def test_format_1_still_loads_without_a_hash_check(finished, tmp_path):
    path = tmp_path / "old.pt"
    torch.save(as_format_1(raw(finished)), path)
    model, loss, meta = train.load_checkpoint(path)
    new_model, new_loss, _ = train.load_checkpoint(finished)
    assert meta["epoch"] == 2 and meta["settings"] == {} and loss.hparams() == new_loss.hparams()
    for (k, v), w in zip(model.state_dict().items(), new_model.state_dict().values()):
        assert torch.equal(v, w), k
    assert train.read_checkpoint(path)["format"] == 1


def test_leftovers_of_killed_saves_are_removed(tmp_path):
    model, loss, _ = make_run()
    path = tmp_path / "checkpoint.pt"
    names = {
        "dead": ".checkpoint.pt.pid999999999.k3j4.tmp",  # beyond any pid_max: its writer is gone
        "alive": f".checkpoint.pt.pid{os.getpid()}.h5g6.tmp",  # a live process (this one) may still be writing it
        "old, no pid": ".checkpoint.pt.x7c8v9b0.tmp",  # arclib before format 2, two hours old
        "new, no pid": ".checkpoint.pt.q1w2e3r4.tmp",  # could be a save in progress
        "other file": ".other.pt.pid999999999.z9x8.tmp",  # not this checkpoint's
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"\0" * 1024)
    two_hours_ago = time.time() - 7200
    os.utime(tmp_path / names["old, no pid"], (two_hours_ago, two_hours_ago))
    train.save_checkpoint(path, model, loss, epoch=1)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["checkpoint.pt", names["alive"], names["new, no pid"], names["other file"]])


# ---- resume: the same run, or a clear refusal ---------------------------------------------------------------

# (change to the resumed call, the setting the refusal names, its value in the checkpoint, its value now)
MISMATCHES = {
    "lr": (dict(lr=0.01), "lr", 0.05, 0.01),
    "seed": (dict(seed=4), "seed", 3, 4),
    "schedule": (dict(schedule="cosine"), "schedule", "onecycle", "cosine"),
    "optimizer": (dict(optimizer="adam"), "optimizer", "sgd", "adam"),
    "weight_decay": (dict(weight_decay=0.0), "weight_decay", 5e-4, 0.0),
    "margin_warmup": (dict(margin_warmup=1.0), "margin_warmup", 0.0, 1.0),
    "max_steps": (dict(max_steps=3), "max_steps", 2, 3),
    "epochs": (dict(epochs=3), "epochs", 2, 3),
    "extra settings": (dict(settings={"data": "mnist"}), "data", None, "mnist"),
    "m": (dict(run=dict(m=0.3)), "m", 0.2, 0.3),
    "s": (dict(run=dict(s=16.0)), "s", 8.0, 16.0),
    "loss": (dict(run=dict(loss="cosface")), "loss", "arcface", "cosface"),
    "dropout": (dict(run=dict(dropout=0.1)), "dropout", 0.2, 0.1),
    "batch size": (dict(run=dict(batch_size=8)), "batch_size", 16, 8),
    "training set": (dict(run=dict(n=60)), "train_images", 48, 60),
}


@pytest.mark.parametrize("case", list(MISMATCHES))
def test_resume_refuses_other_settings(halfway, case):
    change, name, then, now = MISMATCHES[case]
    change = dict(change)
    model, loss, loader = make_run(seed=7, **change.pop("run", {}))
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(train.ResumeMismatch) as info:
        train.fit(model, loss, loader, resume=halfway, **{**FIT, **change})
    assert (name, then, now) in info.value.mismatches
    assert f"{name} was {then!r}, now {now!r}" in one_line(info.value, halfway)
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))  # refused before anything changed


def test_resume_with_the_same_settings_continues(halfway, finished):
    model, loss, loader = make_run(seed=7)  # another init: everything comes from the checkpoint
    h = train.fit(model, loss, loader, resume=halfway, **FIT)
    assert h.train_loss == train.History.from_dict(raw(finished)["history"]).train_loss
    for k, v in raw(finished)["model"]["state"].items():
        assert torch.equal(model.state_dict()[k], v), k


def test_finished_one_cycle_run_is_not_extended(finished):
    with pytest.raises(train.ResumeMismatch, match="finished all its epochs, and epochs can change only with "
                                                   "schedule 'none'.*start a new run") as info:
        train.fit(*make_run(), resume=finished, **{**FIT, "epochs": 4})
    assert info.value.mismatches == [("epochs", 2, 4)]


def test_schedule_none_run_extends_to_exactly_the_longer_run(tmp_path):
    fit = {**FIT, "schedule": "none"}
    train.fit(*make_run(), checkpoint=tmp_path / "short.pt", **{**fit, "epochs": 1})
    model, loss, loader = make_run(seed=7)
    extended = train.fit(model, loss, loader, resume=tmp_path / "short.pt", checkpoint=tmp_path / "long.pt", **fit)
    straight_model, straight_loss, straight_loader = make_run()
    straight = train.fit(straight_model, straight_loss, straight_loader, **fit)
    assert extended.train_loss == straight.train_loss and extended.lr == straight.lr
    for (k, v), w in zip(model.state_dict().items(), straight_model.state_dict().values()):
        assert torch.equal(v, w), k
    assert raw(tmp_path / "long.pt")["settings"]["epochs"] == 2
    with pytest.raises(train.ResumeMismatch, match="has trained 2 epochs already"):  # never shorter than done
        train.fit(*make_run(), resume=tmp_path / "long.pt", **{**fit, "epochs": 1})


def test_finished_run_resumed_elsewhere_writes_its_checkpoint_there(finished, tmp_path):
    elsewhere = tmp_path / "new" / "checkpoint.pt"
    h = train.fit(*make_run(seed=7), resume=finished, checkpoint=elsewhere, **FIT)
    assert h.epochs == 2
    assert train.read_checkpoint(elsewhere)["epoch"] == 2
    for k, v in raw(finished)["model"]["state"].items():
        assert torch.equal(raw(elsewhere)["model"]["state"][k], v), k


def test_resume_refuses_a_format_1_checkpoint_and_a_missing_file(finished, tmp_path):
    old = tmp_path / "old.pt"
    torch.save(as_format_1(raw(finished)), old)
    with pytest.raises(train.CheckpointError, match="stores no run settings .*format 1") as info:
        train.fit(*make_run(), resume=old, **FIT)
    one_line(info.value, old)
    with pytest.raises(train.CheckpointError, match="no such file"):
        train.fit(*make_run(), resume=tmp_path / "nope.pt", **FIT)


# ---- divergence and devices -------------------------------------------------------------------------------

def test_divergence_names_what_went_non_finite_and_the_remedies():
    with pytest.raises(train.TrainingDiverged, match=r"epoch 1, step 2: the embeddings \(the model's output\) "
                                                     r"became non-finite.*a lower lr \(now 1e\+20\), a smaller s "
                                                     r"\(now 8\), a margin warm-up") as info:
        train.fit(*make_run(), **{**FIT, "lr": 1e20, "schedule": "none"})
    assert "\n" not in str(info.value) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(("poison", "what"), [("model", "the model's weights"), ("centres", "the class centres")])
def test_non_finite_weights_are_named(poison, what):
    model, loss, loader = make_run()
    with torch.no_grad():
        (model.neck[3].weight if poison == "model" else loss.head.weight)[0, 0] = math.nan
    with pytest.raises(train.TrainingDiverged, match=f"epoch 1, step 1: {what}.* became non-finite"):
        train.fit(model, loss, loader, **FIT)


def test_softmax_divergence_suggests_no_scale():
    model, _, loader = make_run()
    soft = losses.make("softmax", num_classes=3, embedding_dim=8)
    with torch.no_grad():
        soft.head.weight[0, 0] = math.inf
    with pytest.raises(train.TrainingDiverged, match=r"a lower lr \(now 0.05\)$"):
        train.fit(model, soft, loader, **FIT)


def test_unknown_or_absent_devices_are_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^device 'cuda': this machine has no CUDA device"):
        train.resolve_device("cuda")
    with pytest.raises(ValueError, match=r"^device must be cpu, cuda, cuda:N or mps; got 'bogus'"):
        train.resolve_device("bogus")
    with pytest.raises(ValueError, match=r"^device must be"):
        train.resolve_device("meta")
    with pytest.raises(ValueError, match=r"^device 'cuda:1'"):
        train.fit(*make_run(), **{**FIT, "device": "cuda:1"})
    assert train.resolve_device("cpu") == torch.device("cpu")
