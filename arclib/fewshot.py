"""One-shot classification of characters no model has seen: the Omniglot benchmark (Lake et al., Science 2015).

In a 20-way one-shot trial the reader gets one image of each of 20 new characters (the *support*) and must name
the character of a 21st image (the *query*) drawn by another person. An embedding answers with the support image
nearest by angle (cosine nearest neighbour); nothing is trained on the new characters.

- ``official_runs``: the author's 20 fixed runs (``all_runs.zip``: 20 queries each, characters of one alphabet,
  support and query by different drawers). Published anchors: people err on 4.5 %, the modified Hausdorff
  distance on the raw strokes (``hausdorff_error``, Lake's ``demo_classification.py``) on about 38.8 %.
- ``episodes``: many random 20-way trials over a whole split, for an estimate tighter than 400 trials allow.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from arclib._checks import check_choice, check_int
from arclib.config import data_root
from arclib.data import Omniglot, omniglot_image

RUNS_FILE = "all_runs.zip"
RUNS_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/one-shot-classification/all_runs.zip"
RUNS_SHA256 = "437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325"  # the file at brendenlake/omniglot 057f034


def _runs_zip(root: str | os.PathLike | None, download: bool | None) -> Path:
    from arclib.pretrained import sha256

    path = data_root(root) / Omniglot.folder / RUNS_FILE
    if not path.is_file() and download is not False:
        from torchvision.datasets.utils import download_url

        try:
            download_url(RUNS_URL, str(path.parent), RUNS_FILE)
        except Exception as err:  # no network: say where the file goes
            path.unlink(missing_ok=True)
            raise FileNotFoundError(f"{path} not found and its download failed ({type(err).__name__}: {err}): it "
                                    f"is {RUNS_URL}; put it there (the offline mirror's `materialize` does) or pass "
                                    f"root=...") from None
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (download=False): it is {RUNS_URL}; put it there or pass root=...")
    if sha256(path) != RUNS_SHA256:
        raise ValueError(f"{path} is not the author's all_runs.zip: its sha256 differs from {RUNS_SHA256[:16]}…")
    return path


def official_runs(root: str | os.PathLike | None = None, size: int = 28, download: bool | None = None) -> list[dict]:
    """The 20 runs as dicts: ``support`` (20, 1, size, size) and ``query`` (20, 1, size, size) tensors in the
    normalisation of ``arclib.data.omniglot``, ``answer`` (20,) the index of each query's support image, and
    ``support_ink`` / ``query_ink``: the 105×105 boolean ink masks the Hausdorff baseline reads. The zip is
    downloaded when missing (``download=None``; False never downloads) and its sha256 checked."""
    from PIL import Image

    runs = []
    with zipfile.ZipFile(_runs_zip(root, download)) as z:
        for r in range(1, 21):
            pairs = [line.split() for line in z.read(f"run{r:02d}/class_labels.txt").decode().splitlines() if line]
            support_names = sorted({train for _, train in pairs})

            def read(name: str, run: int = r):
                with Image.open(io.BytesIO(z.read(name))) as img:
                    return omniglot_image(img, size), ~np.asarray(img.convert("1"), dtype=bool)

            support = [read(n) for n in support_names]
            query = [read(q) for q, _ in pairs]
            runs.append({"support": torch.stack([s[0] for s in support]),
                         "query": torch.stack([q[0] for q in query]),
                         "answer": torch.tensor([support_names.index(t) for _, t in pairs]),
                         "support_ink": [s[1] for s in support], "query_ink": [q[1] for q in query]})
    return runs


METRICS = ("cosine", "euclidean")


@torch.no_grad()
def nearest_support(query: Tensor, support: Tensor, metric: str = "cosine") -> Tensor:
    """For each query embedding, the index of the nearest support embedding: the largest cosine (``"cosine"``), or
    the smallest Euclidean distance between the raw, unnormalised embeddings (``"euclidean"``)."""
    check_choice("metric", metric, METRICS)
    if metric == "euclidean":
        return torch.cdist(query.float(), support.float()).argmin(dim=1)
    return (F.normalize(query.float(), dim=1) @ F.normalize(support.float(), dim=1).T).argmax(dim=1)


@torch.no_grad()
def runs_error(model: torch.nn.Module, runs: list[dict]) -> tuple[float, list[float]]:
    """(mean error, per-run errors) of ``model``'s cosine nearest neighbour on the official runs, in percent."""
    model.eval()
    errors = []
    for run in runs:
        guess = nearest_support(model(run["query"]), model(run["support"]))
        errors.append(100.0 * float((guess != run["answer"]).float().mean()))
    return float(np.mean(errors)), errors


def _ink_points(mask: np.ndarray) -> np.ndarray:
    points = np.argwhere(mask).astype(float)
    return points - points.mean(axis=0)  # Lake's LoadImgAsPoints centres each image on its ink


def modified_hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    """Dubuisson & Jain's modified Hausdorff distance between two point sets: the larger of the two mean
    nearest-point distances."""
    from scipy.spatial.distance import cdist

    d = cdist(a, b)
    return max(d.min(axis=1).mean(), d.min(axis=0).mean())


def hausdorff_error(runs: list[dict]) -> tuple[float, list[float]]:
    """The official runs' baseline: each query takes the support image at the least modified Hausdorff distance
    between the centred ink pixels. Returns (mean error, per-run errors) in percent."""
    errors = []
    for run in runs:
        support = [_ink_points(m) for m in run["support_ink"]]
        cost = np.array([[modified_hausdorff(_ink_points(q), s) for s in support] for q in run["query_ink"]])
        errors.append(100.0 * float(np.mean(cost.argmin(axis=1) != run["answer"].numpy())))
    return float(np.mean(errors)), errors


@torch.no_grad()
def episodes(embeddings: Tensor, labels: Tensor, n_way: int = 20, n_episodes: int = 2000, seed: int = 0,
             metric: str = "cosine") -> tuple[float, float]:
    """Accuracy (%) of nearest neighbour (``metric`` as in ``nearest_support``) over ``n_episodes`` random
    ``n_way``-way one-shot trials, and its 95 % half-width (1.96 standard errors over episodes).

    Each trial draws ``n_way`` classes of ``labels`` at random, then for every class two different images: one
    support, one query; every query is scored, so a trial counts ``n_way`` answers. The trials depend on ``seed``
    only, so two metrics compared at one seed see the same images."""
    check_choice("metric", metric, METRICS)
    n_way = check_int("n_way", n_way, 2, 1 << 20)
    n_episodes = check_int("n_episodes", n_episodes, 1, 1 << 24)
    labels = torch.as_tensor(labels)
    classes = torch.unique(labels)
    if len(classes) < n_way:
        raise ValueError(f"n_way must be at most the number of classes ({len(classes)}), got {n_way}")
    members = [torch.nonzero(labels == c).flatten() for c in classes]
    if min(len(m) for m in members) < 2:
        raise ValueError("every class needs at least two images (one support, one query)")
    x = F.normalize(embeddings.float(), dim=1) if metric == "cosine" else embeddings.float()
    g = torch.Generator().manual_seed(seed)
    scores = []
    for _ in range(n_episodes):
        chosen = torch.randperm(len(classes), generator=g)[:n_way]
        picks = [members[int(c)][torch.randperm(len(members[int(c)]), generator=g)[:2]] for c in chosen]
        support = x[torch.stack([p[0] for p in picks])]
        query = x[torch.stack([p[1] for p in picks])]
        scores.append(float((nearest_support(query, support, metric) == torch.arange(n_way)).float().mean()))
    acc = np.asarray(scores) * 100
    return float(acc.mean()), float(1.96 * acc.std(ddof=1) / np.sqrt(len(acc))) if len(acc) > 1 else 0.0


# ---- the study: train on K background characters, test on the evaluation characters ----------------------------

TRAIN_DRAWERS = tuple(range(16))  # drawers 1-16 of each training character train ...
HELD_OUT_DRAWERS = tuple(range(16, 20))  # ... drawers 17-20 measure closed-set accuracy on the same characters


def training_characters(num_classes: int, seed: int, available: int = 964) -> list[int]:
    """``num_classes`` background characters drawn at random, fixed by ``seed`` (the same for every loss)."""
    num_classes = check_int("num_classes", num_classes, 2, available)
    g = torch.Generator().manual_seed(10_007 * seed + num_classes)
    return sorted(torch.randperm(available, generator=g)[:num_classes].tolist())


def recipe_epochs(num_classes: int, epochs_at_all: int = 6, min_steps: int = 240, batch_size: int = 128) -> int:
    """Epochs for a run on ``num_classes`` characters: ``epochs_at_all`` epochs, or more where that would be
    fewer than ``min_steps`` optimizer steps (10 characters are 160 images: one batch an epoch)."""
    steps_per_epoch = max(1, (num_classes * len(TRAIN_DRAWERS)) // batch_size)
    return max(epochs_at_all, -(-min_steps // steps_per_epoch))


def random_affine(images: Tensor, degrees: float = 10.0, shift: float = 0.07, scale: float = 0.1,
                  shear: float = 10.0) -> Tensor:
    """A batch (N, 1, H, W) of normalised Omniglot images, each through its own random affine map: rotation
    ±``degrees``, shift ±``shift`` of the width, scale 1 ± ``scale``, shear ±``shear`` degrees; the paper shows
    outside the map. One ``grid_sample`` for the whole batch (per-image transforms cost more than the training step
    on a CPU)."""
    from arclib.data import OMNIGLOT_NORMALISATION

    n = images.shape[0]
    u = torch.rand(n, 5) * 2 - 1
    angle, shear_ = torch.deg2rad(u[:, 0] * degrees), torch.deg2rad(u[:, 1] * shear)
    zoom = 1 + u[:, 2] * scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin + torch.tan(shear_) * cos, 2 * shift * u[:, 3]], 1),
                         torch.stack([sin, cos + torch.tan(shear_) * sin, 2 * shift * u[:, 4]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    background = -OMNIGLOT_NORMALISATION[0] / OMNIGLOT_NORMALISATION[1]
    # sample ink (image − background) so that outside the map is background, not zero
    return F.grid_sample(images - background, grid, align_corners=False) + background


def _augmenting_collate(batch):
    x, y = torch.utils.data.default_collate(batch)
    return random_affine(x), y


def train_on_characters(background, loss_name: str, num_classes: int, seed: int, loss_kw: dict | None = None,
                        epochs: int | None = None, embedding_dim: int = 128, dropout: float = 0.1,
                        batch_size: int = 128, lr: float = 0.1, weight_decay: float = 5e-4,
                        margin_warmup: float | None = None, checkpoint=None, resume=None,
                        progress: bool = False, max_steps: int | None = None, augment: bool = False) -> dict:
    """Train ``MnistNet`` + ``loss_name`` on ``num_classes`` random background characters (drawers 1-16).

    Every loss of a comparison with the same ``seed`` gets the same characters, the same network initialisation
    (``torch.manual_seed(seed)`` right before the model is built) and the same batches; the class centres are
    drawn next (a ``CosineHead``'s random rows, or ``nn.Linear``'s for softmax). ``margin_warmup`` defaults to a
    sixth of the epochs. ``augment``: every training batch through random affine maps (``random_affine``). Returns ``{"model", "loss", "history", "characters", "held_out"}`` (``held_out``: a
    loader of drawers 17-20 of the same characters, for closed-set accuracy).
    """
    from torch.utils.data import DataLoader

    from arclib import losses, models
    from arclib.data import omniglot_subset
    from arclib.train import fit

    characters = training_characters(num_classes, seed, len(background.classes))
    epochs = recipe_epochs(num_classes, batch_size=batch_size) if epochs is None else epochs
    train = omniglot_subset(background, characters, TRAIN_DRAWERS)
    held = omniglot_subset(background, characters, HELD_OUT_DRAWERS)
    train_loader = DataLoader(train, batch_size=batch_size, collate_fn=_augmenting_collate if augment else None, shuffle=True, drop_last=len(train) > batch_size,
                              generator=torch.Generator().manual_seed(seed))
    held_loader = DataLoader(held, batch_size=512)
    torch.manual_seed(seed)
    model = models.MnistNet(embedding_dim, dropout=dropout)
    loss = losses.make(loss_name, num_classes=num_classes, embedding_dim=embedding_dim, **(loss_kw or {}))
    history = fit(model, loss, train_loader, held_loader, epochs=epochs, lr=lr, weight_decay=weight_decay,
                  seed=seed, checkpoint=checkpoint, resume=resume, progress=progress, max_steps=max_steps,
                  margin_warmup=epochs / 6 if margin_warmup is None else margin_warmup,
                  settings={"data": "omniglot-background", "characters": characters,
                            "drawers": list(TRAIN_DRAWERS), "augment": bool(augment), "dropout": dropout})
    return {"model": model, "loss": loss, "history": history, "characters": characters, "held_out": held_loader}


@torch.no_grad()
def unseen_metrics(model: torch.nn.Module, evaluation, runs: list[dict] | None = None, n_pairs: int = 6000,
                   n_episodes: int = 2000, seed: int = 0) -> dict:
    """What ``model`` does on characters it never saw: pair verification (as chapter 08: 10-fold accuracy, ROC
    AUC, TAR at FAR = 1e-3 over ``n_pairs`` pairs), random 20-way one-shot episodes, and the official runs.
    Percentages, except the AUC."""
    from torch.utils.data import DataLoader

    from arclib.metrics import verification
    from arclib.train import embed

    emb, labels = embed(model, DataLoader(evaluation, batch_size=1024), "cpu")
    ver = verification(emb, labels, n_pairs=n_pairs, seed=seed)
    acc, half_width = episodes(emb, labels, n_episodes=n_episodes, seed=seed)
    out = {"verification_accuracy": 100 * ver["accuracy_mean"], "auc": ver["auc"],
           "tar_at_far_1e-3": 100 * ver["tar_at_far"][1e-3], "one_shot_episodes": acc,
           "one_shot_episodes_ci95": half_width}
    if runs is not None:
        out["one_shot_runs_error"] = runs_error(model, runs)[0]
    return out


# ---- what the study recorded, shipped inside arclib ---------------------------------------------------------

STUDY = Path(__file__).resolve().parent / "checkpoints" / "OMNIGLOT.json"


def study() -> dict:
    """The Omniglot study as ``benchmarks/omniglot_study.py --ship`` recorded it: ``{"runs": [one dict per run:
    label, loss, loss_kw, K, seed, the metrics of ``unseen_metrics``, closed_set, train_loss, seconds, ...],
    "models": {name: manifest entry}, "commands": [...]}``."""
    import json

    if not STUDY.is_file():
        raise FileNotFoundError(f"{STUDY} is missing; reinstall arclib or run benchmarks/omniglot_study.py --ship")
    return json.loads(STUDY.read_text())


def summary(runs: list[dict], metric: str) -> dict[tuple[str, int], tuple[float, float, int]]:
    """{(label, K): (mean, standard deviation over seeds, number of seeds)} of ``metric`` over ``runs``."""
    from arclib import metrics

    return metrics.over_seeds(runs, metric, by=("label", "K"))


def shipped(name: str) -> tuple[torch.nn.Module, torch.nn.Module, dict]:
    """(model, loss, entry) of a shipped Omniglot model, both in eval mode, its sha256 checked."""
    from arclib import pretrained

    return pretrained.load_from_study(study(), STUDY.parent, name, "Omniglot study")
