"""Chapter 10's checkers: each accepts the reference answer, computed from the shipped study, and refuses typical
wrong ones without giving the answer."""

import torch
import torch.nn.functional as F
from answer_leaks import never_shows

from arclib import fewshot
from arclib.exercises import check


def cells():
    return fewshot.summary(fewshot.study()["runs"], "one_shot_episodes")


def test_one_shot_by_hand():
    assert check("10.1", lambda q, s: (F.normalize(q, dim=1) @ F.normalize(s, dim=1).T).argmax(dim=1)).passed
    assert "Euclidean" in check("10.1", lambda q, s: torch.cdist(q, s).argmin(dim=1)).hint + \
        check("10.1", lambda q, s: torch.cdist(q, s).argmin(dim=1)).message
    assert check("10.1", lambda q, s: (q @ s.T).argmax(dim=1)).passed is False
    assert check("10.1", 3).passed is False


def test_inside_the_spread():
    c = cells()
    (a, a_sd, _), (n, n_sd, _) = c[("arcface", 964)], c[("normface", 964)]
    expected = ("a" if a > n else "c") if abs(a - n) > a_sd + n_sd else "b"
    assert check("10.2", expected).passed is True
    assert check("10.2", f" {expected.upper()} ").passed is True
    for wrong in {"a", "b", "c"} - {expected}:
        assert check("10.2", wrong).passed is False
    assert "one letter" in check("10.2", "yes").message


def test_gain_from_classes():
    c = cells()
    expected = c[("arcface", 964)][0] - c[("arcface", 10)][0]
    assert check("10.3", expected).passed is True
    assert check("10.3", round(expected, 1)).passed is True  # a rounded reading of the table is right
    assert "other way round" in check("10.3", -expected).hint
    assert "NormFace" in check("10.3", c[("normface", 964)][0] - c[("normface", 10)][0]).hint
    wrong = check("10.3", expected + 7)
    assert wrong.passed is False
    never_shows(wrong, expected)


def test_best_cosface_margin():
    c = cells()
    margins = {-0.2: "cosface-m-0.2", -0.1: "cosface-m-0.1", 0.0: "normface", 0.1: "cosface-m0.1",
               0.25: "cosface", 0.4: "cosface-m0.4"}
    found = {m: c[(label, 964)][0] for m, label in margins.items() if (label, 964) in c}
    best, worst = max(found, key=found.get), min(found, key=found.get)
    assert check("10.4", best).passed is True
    assert "lowest" in check("10.4", worst).hint
    assert check("10.4", best + 0.05).passed is False


def test_euclidean_one_shot_predict_then_measure(omniglot_root, monkeypatch):
    import functools

    from answer_leaks import predicts_and_measures

    from arclib.exercises import ch10

    monkeypatch.setenv("ARCLIB_DATA", str(omniglot_root))
    monkeypatch.setenv("ARCLIB_OMNIGLOT_CHECKSUMS", "offline-mirror")
    monkeypatch.setattr(ch10, "one_shot_by_metric", functools.lru_cache(ch10.one_shot_by_metric))
    both = ch10.one_shot_by_metric()
    assert 40 < both["cosine"] < 100 and 20 < both["euclidean"] < 100
    euclidean = both["euclidean"]
    actual = "same" if abs(euclidean - both["cosine"]) <= 1 else ("higher" if euclidean > both["cosine"] else "lower")
    verdict = predicts_and_measures("10.5", ("higher", "same", "lower"), actual, euclidean, round(euclidean, 1),
                                    euclidean + 8)
    assert f"{both['cosine']:.1f}" in verdict.message
