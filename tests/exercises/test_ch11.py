"""Chapter 11's checkers: each accepts the reference answer, computed from arclib's losses and the shipped study,
and refuses typical wrong ones without giving the answer."""

import math

import pytest
import torch.nn.functional as F
from answer_leaks import never_shows

from arclib import robust
from arclib.exercises import check
from arclib.losses import make


def by_hand(x, weight, k):
    return (F.normalize(x, dim=1) @ F.normalize(weight, dim=1).T).view(len(x), -1, k).max(dim=2).values


def test_subcentre_cosines():
    assert check("11.1", by_hand).passed is True
    mean = check("11.1", lambda x, w, k: (F.normalize(x, dim=1) @ F.normalize(w, dim=1).T).view(len(x), -1, k).mean(2))
    assert mean.passed is False and "largest" in mean.hint
    strided = check("11.1", lambda x, w, k: (F.normalize(x, dim=1) @ F.normalize(w, dim=1).T).view(len(x), k, -1)
                    .max(dim=1).values)
    assert strided.passed is False and "class by class" in strided.hint
    assert "normalise" in check("11.1", lambda x, w, k: (x @ w.T).view(len(x), -1, k).max(dim=2).values).hint
    assert check("11.1", 3).passed is False


def test_adaface_poor_image():
    expected = 16 * math.cos(math.radians(60) + 0.4)
    assert check("11.2", expected).passed is True
    assert check("11.2", round(expected, 2)).passed is True  # 3 significant figures
    assert "close" in check("11.2", round(expected, 1)).message
    assert "ẑ = +1" in check("11.2", float(make("adaface", s=16, m=0.4).target_logit(math.radians(60), quality=1.0))).hint
    assert "CosFace" in check("11.2", 16 * (math.cos(math.radians(60)) - 0.4)).hint
    wrong = check("11.2", expected + 3)
    assert wrong.passed is False
    never_shows(wrong, expected)


@pytest.mark.skipif(not robust.STUDY.is_file(), reason="FAMILY.json not shipped")
def test_norm_ratio():
    study = robust.study()
    run = next(r for r in study["runs"] if r["run"] == study["models"]["family-quality-adaface"]["run"])
    means = run["quality"]["norm_mean"]
    expected = means[3] / means[0]
    assert check("11.3", expected).passed is True
    assert check("11.3", float(f"{expected:.2g}")).passed is True
    assert "level 0 over level 3" in check("11.3", means[0] / means[3]).hint
    wrong = check("11.3", expected * 3)
    assert wrong.passed is False
    never_shows(wrong, expected)


def test_adacos_fixed_scale():
    expected = math.sqrt(2) * math.log(999)
    assert check("11.4", round(expected, 2)).passed is True
    assert "close" in check("11.4", round(expected, 1)).message
    assert "base 10" in check("11.4", math.sqrt(2) * math.log10(999)).hint
    assert "√2" in check("11.4", math.log(999)).hint
    wrong = check("11.4", 30.0)
    assert wrong.passed is False
    never_shows(wrong, expected)
