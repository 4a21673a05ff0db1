"""Argument checks that fail loudly: every error names the argument and the range it must lie in."""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: F.normalize's floor on a norm. A class centre (a row of W) shorter than this has no direction: it is normalised
#: by the floor instead of its length, and its gradient is scaled by 1/floor (about 1e12).
NORM_EPS = 1e-12


def check_range(name: str, value: float, low: float = -math.inf, high: float = math.inf,
                low_open: bool = False, high_open: bool = False) -> float:
    """Return ``value`` if it lies in the interval, else raise a ValueError that names ``name`` and the interval."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if math.isnan(value) or below or above:
        interval = f"{'(' if low_open else '['}{_fmt(low)}, {_fmt(high)}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return value


def check_int(name: str, value: int, low: int, high: int) -> int:
    try:
        integral = not isinstance(value, bool) and float(value).is_integer()
    except (TypeError, ValueError):
        integral = False
    if not integral:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    check_range(name, value, low, high)
    return int(value)


def check_choice(name: str, value: str, choices: tuple[str, ...] | list[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_finite(name: str, tensor: Tensor) -> None:
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} must be finite (values in (-inf, inf), no NaN); it holds non-finite entries")


def first_zero_row(norms: Tensor) -> Tensor:
    """The index of the first norm below ``NORM_EPS``, or −1: a 0-d tensor on ``norms``' device (no host sync)."""
    zero = norms < NORM_EPS
    return torch.where(zero.any(), zero.int().argmax(), -1)  # argmax: the first maximum


def zero_centre_message(cls: int) -> str:
    return (f"weight rows (class centres) must have norm >= {NORM_EPS:g}, a direction to normalise; the row of "
            f"class {cls} is shorter (zero)")


def check_centres(norms: Tensor, first_class: int = 0) -> None:
    """A ValueError naming the class if a row norm of W is below ``NORM_EPS`` (rows ``first_class``, ... of W)."""
    row = int(first_zero_row(norms))
    if row >= 0:
        raise ValueError(zero_centre_message(first_class + row))


def compute_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """The dtype the head and the margin run in: the widest of ``dtypes`` and float32 (float16 and bfloat16
    features or weights are promoted; under autocast the matmul still runs in the autocast dtype)."""
    out = torch.float32
    for dtype in dtypes:
        out = torch.promote_types(out, dtype)
    return out


def check_tensor(name: str, value, shape: str) -> Tensor:
    """``value`` if it is a tensor; a numpy array or a list is refused by name (converting it here would hide a
    device or dtype the caller did not choose)."""
    if not isinstance(value, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {shape}, got a {type(value).__name__} "
                         f"(convert it with torch.as_tensor)")
    return value


def check_angles(name: str, value) -> Tensor:
    """``value`` (a tensor, number, list or numpy array) as a floating tensor of angles in [0, π], radians.

    A tensor that is already floating comes back as is, autograd graph included. float32's π lies a rounding
    step above π, so angles up to π·(1 + 1e-6) are accepted.
    """
    try:
        t = value if isinstance(value, Tensor) else torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be angles in [0, pi] (a tensor, number, list or array), got "
                         f"{type(value).__name__}") from None
    if not t.dtype.is_floating_point:
        t = t.to(torch.get_default_dtype())
    if t.numel() and torch.isnan(t).any():
        raise ValueError(f"{name} must be angles in [0, pi]; it holds NaN")
    if t.numel() and (t.min() < 0 or t.max() > math.pi * (1 + 1e-6)):
        raise ValueError(f"{name} must be angles in [0, pi], got values in [{float(t.min()):.4g}, {float(t.max()):.4g}]")
    return t


def check_labels(labels: Tensor, batch_size: int, num_classes: int) -> Tensor:
    if not isinstance(labels, Tensor) or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor of shape ({batch_size},) with values in [0, {num_classes})")
    if labels.shape != (batch_size,):
        raise ValueError(f"labels must have shape ({batch_size},) to match the batch, got {tuple(labels.shape)}")
    if batch_size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got values in "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    return labels.long()


def _fmt(x: float) -> str:
    if x == math.inf:
        return "inf"
    if x == -math.inf:
        return "-inf"
    if abs(x - math.pi) < 1e-12:
        return "pi"
    if abs(x - math.pi / 2) < 1e-12:
        return "pi/2"
    return f"{x:g}"
