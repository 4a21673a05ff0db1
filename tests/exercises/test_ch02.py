"""Chapter 02's checkers accept the reference answers and name the typical slips, never the answer."""

import math

import torch
import torch.nn.functional as F
from answer_leaks import never_shows
from torch import nn

from arclib.exercises import ch02, check


def test_02_1_scale_doubles():
    s, cos45 = 2 * ch02.SCALE_S, math.cos(math.radians(ch02.SCALE_THETA_DEG))
    by_hand = math.log1p(9 * math.exp(-s * cos45))
    assert check("02.1", by_hand).passed is True
    before = math.log1p(9 * math.exp(-ch02.SCALE_S * cos45))
    halved = check("02.1", before / 2)
    assert halved.passed is False and "exponent" in halved.hint
    doubled = check("02.1", 2 * before)
    assert doubled.passed is False and "down, not up" in doubled.hint
    never_shows(halved, by_hand)


def _by_hand(theta, p, s, m):
    return s * torch.sin(theta + m) * (1 - p)


def test_02_2_gradient():
    assert check("02.2", _by_hand).passed is True
    sign = check("02.2", lambda t, p, s, m: -_by_hand(t, p, s, m))
    assert sign.passed is False and "sign" in sign.hint
    normface = check("02.2", lambda t, p, s, m: s * torch.sin(t) * (1 - p))
    assert normface.passed is False and "NormFace" in normface.hint
    degrees = check("02.2", lambda t, p, s, m: _by_hand(t, p, s, math.degrees(m)))
    assert degrees.passed is False


def test_02_3_cosface_margin():
    theta2 = math.radians(ch02.COSFACE_THETA2_DEG)
    by_hand = math.degrees(theta2 - math.acos(math.cos(theta2) + ch02.COSFACE_M))
    assert check("02.3", by_hand).passed is True
    radians = check("02.3", math.radians(by_hand))
    assert radians.passed is False and "radians" in radians.hint
    m_itself = check("02.3", math.degrees(ch02.COSFACE_M))
    assert m_itself.passed is False and "step in cosine" in m_itself.hint
    first_order = check("02.3", math.degrees(ch02.COSFACE_M / math.sin(theta2)))
    assert first_order.passed is False and "first-order" in first_order.hint
    never_shows(first_order, by_hand)


def test_02_4_half_probability():
    by_hand = math.degrees(math.acos(math.log(9) / ch02.HALF_S) - ch02.HALF_M)
    assert check("02.4", by_hand).passed is True
    no_margin = check("02.4", math.degrees(math.acos(math.log(9) / ch02.HALF_S)))
    assert no_margin.passed is False and "NormFace" in no_margin.hint
    ten = check("02.4", math.degrees(math.acos(math.log(10) / ch02.HALF_S) - ch02.HALF_M))
    assert ten.passed is False and "non-target" in ten.hint
    never_shows(no_margin, by_hand)


class MyArcFace(nn.Module):
    """The reference solution of exercise 02.5, as the chapter's collapsed solution writes it."""

    def __init__(self, embedding_dim, num_classes, s=64.0, m=0.5):
        super().__init__()
        self.s, self.m = s, m
        self.weight = nn.Parameter(torch.randn(num_classes, embedding_dim))

    def cosines(self, x):
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).T

    def forward(self, x, labels):
        cos = self.cosines(x)
        eps = torch.finfo(cos.dtype).eps
        theta = torch.acos(cos.clamp(-1 + eps, 1 - eps))
        psi = torch.where(theta > math.pi - self.m, cos + math.cos(self.m) - 1, torch.cos(theta + self.m))
        target = F.one_hot(labels, cos.shape[1]).bool()
        return F.cross_entropy(self.s * torch.where(target, psi, cos), labels)


class NoClamp(MyArcFace):
    def forward(self, x, labels):
        cos = self.cosines(x)
        theta = torch.acos(cos)
        psi = torch.where(theta > math.pi - self.m, cos + math.cos(self.m) - 1, torch.cos(theta + self.m))
        return F.cross_entropy(self.s * torch.where(F.one_hot(labels, cos.shape[1]).bool(), psi, cos), labels)


class Textbook(MyArcFace):
    def forward(self, x, labels):
        cos = self.cosines(x)
        eps = torch.finfo(cos.dtype).eps
        theta = torch.acos(cos.clamp(-1 + eps, 1 - eps))
        target = F.one_hot(labels, cos.shape[1]).bool()
        return F.cross_entropy(self.s * torch.where(target, torch.cos(theta + self.m), cos), labels)


class EveryClass(MyArcFace):
    def forward(self, x, labels):
        cos = self.cosines(x)
        eps = torch.finfo(cos.dtype).eps
        theta = torch.acos(cos.clamp(-1 + eps, 1 - eps))
        psi = torch.where(theta > math.pi - self.m, cos + math.cos(self.m) - 1, torch.cos(theta + self.m))
        return F.cross_entropy(self.s * psi, labels)


class BiasKept(MyArcFace):
    def __init__(self, embedding_dim, num_classes, s=64.0, m=0.5):
        super().__init__(embedding_dim, num_classes, s, m)
        self.bias = nn.Parameter(torch.zeros(num_classes))


class Stub(nn.Module):
    def __init__(self, embedding_dim, num_classes, s=64.0, m=0.5):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, embedding_dim))

    def forward(self, x, labels):
        raise NotImplementedError  # your code


def test_02_5_from_scratch():
    assert check("02.5", MyArcFace).passed is True
    assert check("02.5", Stub).passed is None
    no_clamp = check("02.5", NoClamp)
    assert no_clamp.passed is False and "not finite" in no_clamp.message
    textbook = check("02.5", Textbook)
    assert textbook.passed is False and "π − m" in textbook.hint
    every = check("02.5", EveryClass)
    assert every.passed is False and "target class only" in every.hint
    bias = check("02.5", BiasKept)
    assert bias.passed is False and "bias" in bias.message
    instance = check("02.5", MyArcFace(6, 4))
    assert instance.passed is False and "class" in instance.message
