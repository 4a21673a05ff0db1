"""SparseMax and Angular SparseMax (Chan & Kittler; seed 002): the sparsemax criterion on angular logits."""

from __future__ import annotations

from arclib.losses.arcface import ArcFace
from arclib.losses.normface import NormFace


class Sparsemax(NormFace):
    r"""z = s·cos θ, loss = sparsemax loss (seed 002: "Sparsemax s=1.9"). See ``arclib.sparsemax``."""

    name = "sparsemax"

    def __init__(self, s: float = 1.9, num_classes: int | None = None, embedding_dim: int | None = None) -> None:
        super().__init__(s=s, num_classes=num_classes, embedding_dim=embedding_dim, criterion="sparsemax")

    def hparams(self) -> dict:
        out = super().hparams()
        del out["criterion"]
        return out


class AngularSparsemax(ArcFace):
    r"""z = s·cos(φ), φ_i = θ_i + m on the target, θ_i elsewhere (seed 002, eq. 9), then the sparsemax loss.

    The seed's best settings: s = 1.9, m = 0.2 (CASIA) and m = 0.1 (MS-Celeb-1M).
    """

    name = "angular_sparsemax"

    def __init__(self, s: float = 1.9, m: float = 0.2, tail: str = "continuous", num_classes: int | None = None,
                 embedding_dim: int | None = None) -> None:
        super().__init__(s=s, m=m, tail=tail, num_classes=num_classes, embedding_dim=embedding_dim,
                         criterion="sparsemax")

    def hparams(self) -> dict:
        out = super().hparams()
        del out["criterion"]
        return out
