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
