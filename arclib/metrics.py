"""What a trained embedding is judged by: closed-set accuracy, angle statistics, and LFW-style verification.

- ``accuracy``: the nearest class centre, as the loss predicts.
- ``angle_stats``: the ArcFace paper's angle statistics (Deng et al. 2019, Table 1's W-EqM, Intra, Inter):
  how tightly each class sits around its centre, and how far apart the classes are.
- ``support_size``: how many classes the training criterion gives probability to (sparsemax: often one).
- ``over_seeds``: mean and spread of a recorded metric over the seeds of each setting, for comparisons that
  name their spread.
- ``verification``: the face-verification protocol of LFW applied to any labelled embeddings, typically of
  classes the model never saw (open set): balanced same/different pairs scored by cosine similarity, ROC,
  TAR at fixed FAR, and 10-fold accuracy with the threshold chosen on the other nine folds.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score, roc_curve
from torch import Tensor

from arclib._checks import check_int, check_range
from arclib.sparsemax import sparsemax

FARS = (1e-1, 1e-2, 1e-3)


@torch.no_grad()
def accuracy(loss, embeddings: Tensor, labels: Tensor) -> float:
    """Fraction of embeddings whose largest score (``loss.scores``) is at their own class."""
    if len(labels) == 0:
        raise ValueError("embeddings must hold at least one row")
    device = next(loss.parameters()).device
    return (loss.scores(embeddings.to(device)).argmax(1).cpu() == labels.cpu()).float().mean().item()


@torch.no_grad()
def support_size(loss, embeddings: Tensor, labels: Tensor, threshold: float = 0.0) -> Tensor:
    """Per sample, the number of classes whose probability exceeds ``threshold`` under the loss's training
    criterion, applied to the training logits (margin included): what the loss sees while it trains.

    Softmax gives every class a positive probability (support C at ``threshold = 0``); sparsemax can give
    exactly zero, and reaches support 1 once the target logit leads every other by at least 1 (seed 002).
    """
    threshold = check_range("threshold", threshold, 0.0, 1.0, high_open=True)
    z = loss.logits(embeddings, labels, check_values=False).float()
    p = sparsemax(z, dim=1) if loss.criterion == "sparsemax" else torch.softmax(z, dim=1)
    return (p > threshold).sum(dim=1)


def _degrees(cos: Tensor) -> Tensor:
    return torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0)))


@torch.no_grad()
def angles_to_centres(embeddings: Tensor, labels: Tensor, centres: Tensor) -> tuple[Tensor, Tensor]:
    """Per embedding (N, d) with labels in [0, C), in degrees: the angle to its own centre (of ``centres``, (C, d))
    and the angle to the nearest *other* centre. An embedding is classified by angle correctly when the first is
    the smaller, and clears an angular margin m when the first plus m is."""
    if embeddings.dim() != 2 or centres.dim() != 2 or embeddings.shape[1] != centres.shape[1]:
        raise ValueError(f"embeddings (N, d) and centres (C, d) must share d, got {tuple(embeddings.shape)} and "
                         f"{tuple(centres.shape)}")
    labels = labels.long().cpu()
    c = centres.shape[0]
    if len(labels) and (labels.min() < 0 or labels.max() >= c):
        raise ValueError(f"labels must be in [0, {c}) to index the centres")
    x = F.normalize(embeddings.detach().float().cpu(), dim=1)
    w = F.normalize(centres.detach().float().cpu(), dim=1)
    cos = x @ w.T  # (N, C)
    own = _degrees(cos.gather(1, labels[:, None])).squeeze(1)
    others = cos.scatter(1, labels[:, None], -2.0)
    return own, _degrees(others.max(1).values)


@torch.no_grad()
def angle_stats(embeddings: Tensor, labels: Tensor, centres: Tensor, max_samples: int = 2000,
                seed: int = 0) -> dict[str, float]:
    """Angle statistics in degrees, of embeddings (N, d) with labels in [0, C) around centres (C, d).

    - ``intra``: mean angle between each embedding and its own centre (paper: Intra1).
    - ``to_nearest_other_centre``: mean over embeddings of the angle to the nearest *other* centre; with a
      margin this stays well above ``intra``.
    - ``inter_centre_min`` / ``inter_centre_mean`` / ``inter_centre_nearest_mean``: minimum and mean angle
      between distinct centres, and the mean over centres of the angle to the nearest other (paper: Inter1).
    - ``inter_embedding``: mean angle between embeddings of different classes (paper: Inter2 style), on at most
      ``max_samples`` randomly chosen embeddings (pairwise is O(N²)).
    """
    own, nearest_other = angles_to_centres(embeddings, labels, centres)
    labels = labels.long().cpu()
    c = centres.shape[0]
    x = F.normalize(embeddings.detach().float().cpu(), dim=1)
    w = F.normalize(centres.detach().float().cpu(), dim=1)
    cc = _degrees(w @ w.T)
    off = ~torch.eye(c, dtype=torch.bool)
    inter = cc[off]
    nearest_centre = cc.masked_fill(~off, math.inf).min(1).values
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(x), generator=g)[:max_samples] if len(x) > max_samples else torch.arange(len(x))
    xs, ls = x[pick], labels[pick]
    different = ls[:, None] != ls[None, :]
    pair_angles = _degrees(xs @ xs.T)[different]
    return {
        "intra": own.mean().item(),
        "to_nearest_other_centre": nearest_other.mean().item(),
        "inter_centre_min": inter.min().item(),
        "inter_centre_mean": inter.mean().item(),
        "inter_centre_nearest_mean": nearest_centre.mean().item(),
        "inter_embedding": pair_angles.mean().item() if pair_angles.numel() else float("nan"),
    }


def make_pairs(labels: Tensor | np.ndarray, n_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n_pairs`` random pairs (i, j), i ≠ j, half of the same class and half of different classes, shuffled.

    Returns (i, j, same) as numpy arrays; ``same`` is boolean. Pairs are drawn with replacement (a pair may repeat
    when there are few samples). The order is shuffled, so contiguous folds are random folds.
    """
    labels = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels).astype(np.int64)
    n_pairs = check_int("n_pairs", n_pairs, 2, 1 << 30)
    rng = np.random.default_rng(seed)
    n_pos, n_neg = n_pairs // 2, n_pairs - n_pairs // 2
    order = np.argsort(labels, kind="stable")
    classes, start, count = np.unique(labels[order], return_index=True, return_counts=True)
    if len(classes) < 2:
        raise ValueError("labels must hold at least 2 classes to form different-class pairs")
    eligible = np.flatnonzero(np.isin(labels, classes[count >= 2]))
    if len(eligible) == 0:
        raise ValueError("labels must hold at least one class with 2 or more samples to form same-class pairs")
    # positives: i uniform among samples whose class has a second member, j another member of that class
    i_pos = rng.choice(eligible, n_pos)
    cls = np.searchsorted(classes, labels[i_pos])
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels)) - np.repeat(start, count)
    offset = (rank[i_pos] + 1 + rng.integers(0, count[cls] - 1)) % count[cls]
    j_pos = order[start[cls] + offset]
    # negatives: i, j uniform, redrawn until the labels differ
    i_neg, j_neg = rng.integers(0, len(labels), n_neg), rng.integers(0, len(labels), n_neg)
    while (clash := labels[i_neg] == labels[j_neg]).any():
        j_neg[clash] = rng.integers(0, len(labels), int(clash.sum()))
    i = np.concatenate([i_pos, i_neg])
    j = np.concatenate([j_pos, j_neg])
    same = np.concatenate([np.ones(n_pos, bool), np.zeros(n_neg, bool)])
    perm = rng.permutation(n_pairs)
    return i[perm], j[perm], same[perm]


def tar_at_far(fpr: np.ndarray, tpr: np.ndarray, far: float) -> float:
    """TPR at FPR = ``far``, read off the ROC polyline by linear interpolation between its vertices.

    Take the last ROC vertex with fpr ≤ far (the highest TPR reachable at that FAR by a threshold) and move
    along the next segment to fpr = far. Segments are horizontal unless positive and negative scores tie, so
    this is the step ("threshold") value except across ties, where it is the randomised-threshold value.
    """
    fpr, tpr = np.asarray(fpr, float), np.asarray(tpr, float)
    k = int(np.searchsorted(fpr, far, side="right")) - 1
    if k < 0:
        return 0.0
    if k + 1 >= len(fpr) or fpr[k + 1] == fpr[k]:
        return float(tpr[k])
    return float(tpr[k] + (tpr[k + 1] - tpr[k]) * (far - fpr[k]) / (fpr[k + 1] - fpr[k]))


def best_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) maximising the accuracy of "same iff score > threshold" on these pairs.

    Every distinct cut of the sorted scores is tried (thresholds half-way between neighbouring distinct scores,
    and one below / above all), so the maximum is exact, not on a grid. Ties go to the highest threshold.
    """
    scores, same = np.asarray(scores, float), np.asarray(same, bool)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], same[order]
    n, n_neg = len(s), int((~y).sum())
    tp = np.concatenate([[0], np.cumsum(y)])  # predicted same = the top k, k = 0..n
    k = np.arange(n + 1)
    acc = (tp + (n_neg - (k - tp))) / n
    valid = np.ones(n + 1, bool)
    valid[1:n] = s[:-1] > s[1:]  # a cut between equal scores cannot be made by a threshold
    acc = np.where(valid, acc, -1.0)
    best = int(np.argmax(acc))
    if best == 0:
        thr = s[0] + 1.0
    elif best == n:
        thr = s[-1] - 1.0
    else:
        thr = (s[best - 1] + s[best]) / 2
    return float(thr), float(acc[best])


def kfold_accuracy(scores: np.ndarray, same: np.ndarray, folds: int = 10) -> tuple[float, float, list[float]]:
    """LFW's protocol: split the pairs into ``folds`` contiguous folds; for each, choose the threshold that
    maximises accuracy on the other folds and score the held-out fold with it. Returns (mean, std, thresholds)."""
    scores, same = np.asarray(scores, float), np.asarray(same, bool)
    folds = check_int("folds", folds, 2, max(2, len(scores)))
    parts = np.array_split(np.arange(len(scores)), folds)
    accs, thresholds = [], []
    for test in parts:
        train = np.setdiff1d(np.arange(len(scores)), test, assume_unique=True)
        thr, _ = best_threshold(scores[train], same[train])
        accs.append(float(((scores[test] > thr) == same[test]).mean()))
        thresholds.append(thr)
    return float(np.mean(accs)), float(np.std(accs)), thresholds


def verification(embeddings: Tensor, labels: Tensor, n_pairs: int = 6000, seed: int = 0,
                 folds: int = 10) -> dict:
    """LFW-style verification on labelled embeddings: ``n_pairs`` balanced pairs scored by cosine similarity.

    Returns a dict: ``roc`` (fpr, tpr, thresholds as lists, from ``sklearn.metrics.roc_curve``), ``auc``,
    ``tar_at_far`` {1e-1, 1e-2, 1e-3 → TAR, read off the ROC by ``tar_at_far``'s linear interpolation; with
    3000 negative pairs a FAR of 1e-3 rests on 3 pairs, so treat it as a rough figure}, ``accuracy_mean`` /
    ``accuracy_std`` over ``folds`` folds (``kfold_accuracy``), ``thresholds`` per fold, and
    ``positive_angles`` / ``negative_angles`` (degrees, numpy) for histograms.
    """
    i, j, same = make_pairs(labels, n_pairs, seed)
    x = F.normalize(embeddings.detach().float().cpu(), dim=1)
    scores = (x[i] * x[j]).sum(1).clamp(-1, 1).numpy().astype(np.float64)
    fpr, tpr, thr = roc_curve(same, scores)
    mean, std, thresholds = kfold_accuracy(scores, same, folds)
    angles = np.degrees(np.arccos(scores))
    return {
        "n_pairs": int(n_pairs),
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist()},
        "auc": float(roc_auc_score(same, scores)),
        "tar_at_far": {far: tar_at_far(fpr, tpr, far) for far in FARS},
        "accuracy_mean": mean,
        "accuracy_std": std,
        "thresholds": thresholds,
        "positive_angles": angles[same],
        "negative_angles": angles[~same],
    }


#: the columns of ``comparison``: key, header, width, format (degrees carry their sign)
_COLUMNS = (("accuracy", "test acc", 9, "{:.2%}"), ("intra", "own", 7, "{:.1f}°"),
            ("to_nearest_other_centre", "nearest other", 13, "{:.1f}°"), ("gap", "gap", 7, "{:.1f}°"),
            ("inter_centre_min", "centres min", 11, "{:.1f}°"), ("inter_centre_mean", "centres mean", 12, "{:.1f}°"))


def comparison(runs: dict[str, tuple]) -> tuple[dict[str, dict], str]:
    """One row per run, the chapters' comparison table: ``runs`` maps a label to ``(loss, embeddings, labels)``
    or ``(loss, embeddings, labels, seconds)``.

    Per run: test ``accuracy`` (nearest centre), the ``angle_stats`` in degrees — **own** (``intra``), **nearest
    other** centre, their **gap**, **centres min / mean** — and the wall time when given. Returns
    ``(stats, text)``: the numbers per label, and the table as fixed-width text.
    """
    width = max([len(label) for label in runs] + [4])
    timed = any(len(entry) > 3 for entry in runs.values())
    header = f"{'run':{width}s} " + " ".join(f"{h:>{w}s}" for _, h, w, _ in _COLUMNS)
    lines = [header + (f" {'wall time':>9s}" if timed else "")]
    lines.append("-" * len(lines[0]))
    stats: dict[str, dict] = {}
    for label, (loss, emb, labels, *seconds) in runs.items():
        row = stats[label] = {"accuracy": accuracy(loss, emb, labels), **angle_stats(emb, labels, loss.head.weight)}
        row["gap"] = row["to_nearest_other_centre"] - row["intra"]
        line = f"{label:{width}s} " + " ".join(f"{f.format(row[k]):>{w}s}" for k, _, w, f in _COLUMNS)
        if seconds:
            row["seconds"] = float(seconds[0])
            line += f" {row['seconds']:7.0f} s"
        lines.append(line)
    return stats, "\n".join(lines)


def over_seeds(runs: list[dict], metric: str, by: tuple[str, ...] = ("label",)
               ) -> dict[tuple | str, tuple[float, float, int]]:
    """Mean, sample standard deviation (ddof = 1; NaN for one seed) and number of seeds of ``metric`` per setting.

    ``runs`` holds one dict per trained run; runs that agree on the keys ``by`` are seeds of one setting. The result
    is keyed by the value of ``by`` (a single key gives the value itself, several a tuple), in first-seen order.
    A run without ``metric`` or one of ``by`` is refused by name.
    """
    cells: dict = {}
    for i, run in enumerate(runs):
        missing = [k for k in (*by, metric) if k not in run]
        if missing:
            raise ValueError(f"runs[{i}] has no {', '.join(map(repr, missing))}; it has {sorted(run)}")
        key = run[by[0]] if len(by) == 1 else tuple(run[k] for k in by)
        cells.setdefault(key, []).append(float(run[metric]))
    return {key: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else float("nan"), len(v))
            for key, v in cells.items()}
