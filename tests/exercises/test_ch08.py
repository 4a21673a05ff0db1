"""Chapter 08's checkers: each accepts the reference answer and refuses typical wrong ones, without giving the answer."""

import numpy as np

from arclib.exercises import check
from arclib.exercises.ch08 import verification_scores


def test_tar_from_scores():
    genuine, impostor = verification_scores()
    third = np.sort(impostor)[-3]  # the lowest threshold above it still lets in only two impostors of 20
    reference = float((genuine > third).mean())
    assert check("08.1", reference).passed is True
    assert "lower one" in check("08.1", float((genuine >= np.sort(impostor)[-2]).mean())).hint
    assert "count" in check("08.1", reference * len(genuine)).hint
    wrong = check("08.1", 0.5)
    assert wrong.passed is False and str(reference) not in str(wrong)


def test_fold_spread():
    assert check("08.2", "b").passed is True
    assert check("08.2", " B ").passed is True
    assert check("08.2", "a").passed is False
    assert check("08.2", "c").passed is False
    assert "one letter" in check("08.2", "folds").message


def test_pairs_behind_a_far():
    assert check("08.3", 3).passed is True
    assert "negative" in check("08.3", 6).hint
    assert "30,000" in check("08.3", 30).hint
    assert check("08.3", 0.001).passed is False
    assert check("08.3", 2.5).passed is False


def test_seen_digits_verification_predict_then_measure(mnist_root, monkeypatch):
    import functools

    from answer_leaks import predicts_and_measures

    from arclib.exercises import ch08

    monkeypatch.setenv("ARCLIB_DATA", str(mnist_root))
    monkeypatch.setattr(ch08, "seen_and_unseen_verification", functools.lru_cache(ch08.seen_and_unseen_verification))
    seen, unseen = ch08.seen_and_unseen_verification()
    assert 50 < unseen < seen <= 100  # pairs of trained digits verify better than pairs of new ones
    actual = "a" if seen - unseen < 5 else ("b" if seen - unseen <= 15 else "c")
    verdict = predicts_and_measures("08.4", ("a", "b", "c"), actual, seen, round(seen, 1), seen - 6)
    assert f"{unseen:.1f}" in verdict.message
