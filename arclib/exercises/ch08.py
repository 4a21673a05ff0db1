"""Chapter 08 — open-set verification: TAR at a FAR by hand, what the fold spread measures, what a FAR rests on, and
the same test on the digits the network was trained on (predict, then measure)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve

from arclib import data, metrics, pretrained
from arclib.exercises import Wrong, exercise, expect_number, expect_prediction


def verification_scores() -> tuple[np.ndarray, np.ndarray]:
    """The cosine scores of exercise 08.1: 10 genuine pairs and 20 impostor pairs, no two scores equal."""
    genuine = np.array([0.91, 0.84, 0.80, 0.77, 0.73, 0.69, 0.62, 0.58, 0.49, 0.41])
    impostor = np.array([0.75, 0.66, 0.55, 0.52, 0.47, 0.44, 0.39, 0.35, 0.31, 0.28,
                         0.24, 0.21, 0.18, 0.15, 0.12, 0.09, 0.06, 0.03, -0.02, -0.08])
    return genuine, impostor


def _tar(genuine: np.ndarray, impostor: np.ndarray, far: float) -> float:
    scores = np.concatenate([genuine, impostor])
    same = np.concatenate([np.ones(len(genuine), bool), np.zeros(len(impostor), bool)])
    fpr, tpr, _ = roc_curve(same, scores)
    return metrics.tar_at_far(fpr, tpr, far)


@exercise("08.1", "TAR at a FAR from given scores")
def tar_from_scores(answer) -> str:
    genuine, impostor = verification_scores()
    expected = _tar(genuine, impostor, 0.1)
    # typical slips: the threshold set on the genuine scores, the count instead of the share, FAR 1 %
    genuine_threshold = np.sort(genuine)[::-1][int(0.1 * len(genuine)) - 1]
    swapped = float((impostor >= genuine_threshold).mean())
    value = expect_number(answer, expected, what="the TAR", rel=1e-6, abs_tol=1e-9,
                          mistakes={"that is a count of genuine pairs; the TAR is a share of them":
                                    expected * len(genuine),
                                    "that threshold was set on the genuine pairs; a FAR is a share of impostor pairs":
                                    swapped,
                                    "that is the TAR at FAR = 1 % or below (no impostor accepted)":
                                    _tar(genuine, impostor, 0.01),
                                    "that threshold accepts 10 % of the impostors, but a lower one accepts no more "
                                    "of them and more genuine pairs": float((genuine >= np.sort(impostor)[-2]).mean())},
                          hint="the TAR at a FAR is the best share of genuine pairs any threshold accepts while "
                               "letting in at most that share of the impostor pairs")
    if not 0 <= value <= 1:
        raise Wrong("a TAR is a share between 0 and 1")
    return "a high threshold: two impostors in, and a good share of the genuine pairs left out"


@exercise("08.2", "what the ± of the 10-fold accuracy measures")
def fold_spread(answer) -> str:
    choices = {"a": "seeds", "b": "folds", "c": "threshold"}
    if not isinstance(answer, str) or answer.strip().lower() not in choices:
        raise Wrong(f"answer with one letter: {', '.join(repr(c) for c in choices)}")
    picked = choices[answer.strip().lower()]
    if picked == "seeds":
        raise Wrong("every number of the table comes from one trained network per loss",
                    "what changes from one fold to the next, and what stays the same?")
    if picked == "threshold":
        raise Wrong("the threshold changes between folds, but the ± is computed from the fold accuracies",
                    "look at what kfold_accuracy takes the standard deviation of")
    return "the spread over ten subsets of pairs of one model; the spread between training seeds was not measured"


@exercise("08.3", "how many impostor pairs a FAR rests on")
def pairs_behind_a_far(answer) -> str:
    negatives = 6000 - 6000 // 2  # LFW's 6,000 pairs, half of them negative (metrics.make_pairs splits the same way)
    expected = 1e-3 * negatives
    value = expect_number(answer, expected, what="the number of impostor pairs", rel=1e-6, abs_tol=1e-9,
                          mistakes={"that is for all 6,000 pairs; only the negative ones count for a FAR":
                                    1e-3 * 6000,
                                    "that is for the chapter's 30,000 negative pairs; the question is about LFW's":
                                    1e-3 * 30_000,
                                    "that is a share; the question asks for a number of pairs": 1e-3},
                          hint="FAR = accepted impostor pairs ÷ all impostor pairs")
    if value != int(value):
        raise Wrong("a number of pairs is a whole number")
    return "so TAR@FAR = 10⁻³ on LFW moves with each single impostor pair: the chapter uses 60,000 pairs for it"


def seen_and_unseen_verification(name: str = "mnist-open-arcface") -> tuple[float, float]:
    """10-fold verification accuracy (%) of the shipped model ``name`` on 6,000 pairs of MNIST test digits 0–6 (the
    classes it trained on) and on 6,000 pairs of 7–9 (never seen), as section 4 measures the latter."""
    from torch.utils.data import DataLoader

    from arclib.train import embed

    model, _, _ = pretrained.load(name)
    test = data.load("mnist", train=False)
    out = []
    for classes in (list(range(7)), [7, 8, 9]):
        x, labels = embed(model, DataLoader(data.select(test, classes=classes), batch_size=1000), "cpu")
        out.append(100 * metrics.verification(x, labels, n_pairs=6000)["accuracy_mean"])
    return out[0], out[1]


def _gap_outcome(seen: float, unseen: float) -> str:
    return "a" if seen - unseen < 5 else ("b" if seen - unseen <= 15 else "c")


@exercise("08.4", "verification on the digits it was trained on (predict, then measure)")
def seen_digits_verification(answer) -> str:
    choices = {"a": "within 5 points of the unseen digits' accuracy", "b": "5 to 15 points higher",
               "c": "more than 15 points higher"}
    seen, unseen, verdict = expect_prediction(
        answer, choices, seen_and_unseen_verification, _gap_outcome, digits=3,
        what="the 10-fold accuracy on pairs of digits 0–6 (in %)",
        hint="embed the test digits 0–6 (data.select(test, classes=range(7))), then metrics.verification(x, labels, "
             "n_pairs=6000)['accuracy_mean'], times 100")
    note = f"{seen:.1f} % on pairs of seen digits, {unseen:.1f} % on unseen ones — {verdict}."
    if _gap_outcome(seen, unseen) == "c":
        note += (" The embedding tells apart the seven digits it was trained on, not handwritten characters in "
                 "general: the gap is what open-set verification measures and closed-set accuracy hides")
    return note
