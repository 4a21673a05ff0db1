"""Chapter 01's checkers accept the reference answers and name the typical slips, never the answer."""

import math

import torch
import torch.nn.functional as F
from answer_leaks import never_shows

from arclib.exercises import ch01, check


def test_01_1_offset_angle():
    expected = ch01.offset_angle_degrees()
    a, b = torch.tensor(ch01.A), torch.tensor(ch01.B) + ch01.OFFSET
    reference = math.degrees(math.acos(float(a @ b / (a.norm() * b.norm()))))
    assert check("01.1", reference).passed is True
    radians = check("01.1", math.radians(reference))
    assert radians.passed is False and "radians" in radians.hint
    unchanged = check("01.1", 7.9435)  # the angle without the offset (chapter 01's worked example)
    assert unchanged.passed is False and "not a scaling" in unchanged.hint
    for wrong in (radians, unchanged, check("01.1", 20.0)):
        never_shows(wrong, expected)


def test_01_2_chord():
    assert check("01.2", lambda t: 2 * torch.sin(t / 2)).passed is True
    assert check("01.2", lambda t: torch.sqrt(2 - 2 * torch.cos(t))).passed is True  # the same function
    arc = check("01.2", lambda t: t)
    assert arc.passed is False and "arc length" in arc.hint
    degrees = check("01.2", lambda t: 2 * torch.sin(torch.deg2rad(t) / 2))
    assert degrees.passed is False and "degrees" in degrees.hint
    assert check("01.2", lambda t: 2 * torch.sin(t)).passed is False


def test_01_3_cosine_layer():
    def reference(E, W):
        return F.normalize(E, dim=1) @ F.normalize(W, dim=0)

    assert check("01.3", reference).passed is True
    rows = check("01.3", lambda E, W: F.normalize(E, dim=1) @ F.normalize(W, dim=1))
    assert rows.passed is False and "column" in rows.hint
    raw = check("01.3", lambda E, W: E @ W)
    assert raw.passed is False and "dot products" in raw.hint


def test_01_4_flip_offset():
    expected = ch01.flip_offset()
    x = torch.tensor(ch01.DIM_IMAGE)
    c = F.normalize(torch.tensor(ch01.CENTRES), dim=1)
    grid = torch.arange(0, 10, 0.001)
    cos = F.normalize(x + grid[:, None], dim=1) @ c.T
    scanned = grid[(cos[:, 1] > cos[:, 0]).nonzero()[0, 0]].item()  # what a reader's grid search finds
    assert check("01.4", scanned).passed is True
    negative = check("01.4", -scanned)
    assert negative.passed is False and "negative" in negative.hint
    far = check("01.4", 2.31)  # the gain at which the *Euclidean* decision flips in the chapter
    assert far.passed is False
    never_shows(far, expected)
