"""Chapter 10 exercises: one-shot by hand, and reading the Omniglot study — a difference against the seed spread,
what more classes buy, the sign of the margin — and one-shot by Euclidean distance (predict, then measure).

Every reference value comes from the study arclib ships (``arclib.fewshot.study()``) or is measured on a shipped
model, never typed in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from arclib import data, fewshot
from arclib.exercises import Wrong, exercise, expect_number, expect_prediction, expect_same_function


def _cells(metric: str = "one_shot_episodes") -> dict:
    return fewshot.summary(fewshot.study()["runs"], metric)


def _inputs() -> list[tuple[Tensor, Tensor]]:
    g = torch.Generator().manual_seed(10)
    out = []
    for n_query, n_way in ((20, 20), (7, 5)):
        query = torch.randn(n_query, 16, generator=g)
        # supports of very different lengths: a rule that ignores the angle picks the long ones
        support = torch.randn(n_way, 16, generator=g) * torch.logspace(-1, 1, n_way)[:, None]
        out.append((query, support))
    return out


@exercise("10.1", "20-way one-shot by hand")
def one_shot_by_hand(answer) -> str:
    expect_same_function(
        answer, fewshot.nearest_support, _inputs(), what="your one_shot(query, support)", grad=False,
        mistakes={
            "that is the nearest support by Euclidean distance; the embedding is compared by angle":
                lambda q, s: torch.cdist(q, s).argmin(dim=1),
            "that is the largest dot product: without normalising, long support vectors win":
                lambda q, s: (q @ s.T).argmax(dim=1),
            "that picks the support with the *smallest* cosine, the farthest by angle":
                lambda q, s: (F.normalize(q, dim=1) @ F.normalize(s, dim=1).T).argmin(dim=1),
        },
        hint="normalise both sets of rows, take every query-support cosine, and keep the largest per query")
    return "that is arclib.fewshot.nearest_support: nothing is learnt about the 20 new characters"


@exercise("10.2", "a difference against the seed spread")
def inside_the_spread(answer) -> str:
    cells = _cells()
    (a_mean, a_sd, _), (n_mean, n_sd, _) = cells[("arcface", 964)], cells[("normface", 964)]
    outside = abs(a_mean - n_mean) > a_sd + n_sd
    expected = ("a" if a_mean > n_mean else "c") if outside else "b"
    if not isinstance(answer, str) or answer.strip().lower() not in ("a", "b", "c"):
        raise Wrong("answer with one letter: 'a', 'b' or 'c'")
    picked = answer.strip().lower()
    if picked != expected:
        raise Wrong("not what the table says",
                    "take the two means at K = 964, their difference, and compare it with the sum of the two "
                    "standard deviations")
    return "and a difference inside the spread is not a difference this many seeds can show"


@exercise("10.3", "what more classes buy")
def gain_from_classes(answer) -> str:
    cells = _cells()
    expected = cells[("arcface", 964)][0] - cells[("arcface", 10)][0]
    expect_number(answer, expected, what="the gain in points", digits=2, mistakes={  # a table reading passes
        "that is the gain from K = 10 to 964 the other way round: 964 minus 10": -expected,
        "that is NormFace's gain, not ArcFace's": cells[("normface", 964)][0] - cells[("normface", 10)][0],
        "that is a ratio; the question asks for a difference in percentage points":
            cells[("arcface", 964)][0] / cells[("arcface", 10)][0],
    }, hint="mean 20-way one-shot accuracy of ArcFace at K = 964 minus its mean at K = 10")
    return "the number of training classes moves unseen-class accuracy far more than the choice of loss does"


@exercise("10.4", "the sign of the margin")
def best_cosface_margin(answer) -> str:
    cells = _cells()
    margins = {-0.2: "cosface-m-0.2", -0.1: "cosface-m-0.1", 0.0: "normface", 0.1: "cosface-m0.1",
               0.25: "cosface", 0.4: "cosface-m0.4"}
    found = {m: cells[(label, 964)][0] for m, label in margins.items() if (label, 964) in cells}
    if len(found) < 2:
        raise Wrong("the shipped study has no CosFace margin sweep; rerun benchmarks/omniglot_study.py")
    expected = max(found, key=found.get)
    worst = min(found, key=found.get)
    expect_number(answer, expected, what="the margin m", rel=1e-6, abs_tol=1e-9, mistakes={
        "that is the margin with the *lowest* one-shot accuracy": worst,
        "that is an angle in degrees; CosFace's m is subtracted from the cosine": expected * 57.29577951308232,
    }, hint="read the rows of the s-and-m table whose loss is CosFace (m = 0 is NormFace) at the same s")
    return "compare the winner's lead with the seed spread before you call it a law"


#: exercise 10.5: 500 random 20-way episodes at seed 0 (a few seconds)
EPISODES = 500


def one_shot_by_metric(name: str = "omniglot-arcface", episodes: int = EPISODES) -> dict[str, float]:
    """20-way one-shot accuracy (%) of the shipped Omniglot model ``name`` on the 659 evaluation characters, by
    cosine and by Euclidean distance between the raw embeddings, over the same ``episodes`` (seed 0)."""
    from torch.utils.data import DataLoader

    from arclib.train import embed

    model, _, _ = fewshot.shipped(name)
    x, labels = embed(model, DataLoader(data.omniglot("evaluation"), batch_size=1024), "cpu")
    return {metric: fewshot.episodes(x, labels, n_episodes=episodes, seed=0, metric=metric)[0]
            for metric in fewshot.METRICS}


@exercise("10.5", "one-shot by Euclidean distance (predict, then measure)")
def euclidean_one_shot(answer) -> str:
    choices = {"higher": "higher than by cosine", "same": "within a point of the cosine's",
               "lower": "lower than by cosine"}

    def measure() -> tuple[float, float]:
        both = one_shot_by_metric()
        return both["euclidean"], both["cosine"]

    euclidean, cosine, verdict = expect_prediction(
        answer, choices, measure,
        lambda euc, cos: "same" if abs(euc - cos) <= 1 else ("higher" if euc > cos else "lower"),
        digits=3, what="the Euclidean one-shot accuracy (in %)",
        hint='fewshot.episodes(embeddings, labels, n_episodes=500, seed=0, metric="euclidean")[0]')
    note = f"{euclidean:.1f} % by Euclidean distance, {cosine:.1f} % by cosine — {verdict}."
    if euclidean < cosine - 1:
        note += (" ArcFace trained the directions only; the lengths it never constrained vary from image to image "
                 "and add noise to the distance")
    return note
