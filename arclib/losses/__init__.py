"""The margin losses, one file each, and ``make(name, **hparams)`` to build any of them by name."""

from __future__ import annotations

from arclib.losses.adacos import AdaCos
from arclib.losses.adaface import AdaFace
from arclib.losses.arcface import TAILS, ArcFace, angular_margin
from arclib.losses.base import CRITERIA, MarginLoss, angle
from arclib.losses.combined import Combined
from arclib.losses.cosface import CosFace
from arclib.losses.normface import NormFace
from arclib.losses.qamface import QAMFace
from arclib.losses.softmax import Softmax
from arclib.losses.sparsemax import AngularSparsemax, Sparsemax
from arclib.losses.sphereface import SphereFace
from arclib.losses.subcenter import SubCenterArcFace, SubCenterHead

LOSSES: dict[str, type[MarginLoss]] = {
    cls.name: cls
    for cls in (Softmax, NormFace, SphereFace, CosFace, ArcFace, Combined, QAMFace, Sparsemax, AngularSparsemax,
                SubCenterArcFace, AdaFace, AdaCos)
}
NAMES: tuple[str, ...] = tuple(LOSSES)


def make(name: str, **hparams) -> MarginLoss:
    """Build a loss by name, e.g. ``make("arcface", s=30, m=0.5, num_classes=10, embedding_dim=2)``."""
    if name not in LOSSES:
        raise ValueError(f"name must be one of {', '.join(NAMES)}; got {name!r}")
    try:
        return LOSSES[name](**hparams)
    except TypeError as err:
        raise ValueError(f"{name}: {err}") from None


__all__ = ["LOSSES", "NAMES", "make", "MarginLoss", "angle", "angular_margin", "CRITERIA", "TAILS",
           "Softmax", "NormFace", "SphereFace", "CosFace", "ArcFace", "Combined", "QAMFace", "Sparsemax",
           "AngularSparsemax",
           "SubCenterArcFace", "SubCenterHead", "AdaFace", "AdaCos"]
