"""Argument checks that fail loudly: every error names the argument and the range it must lie in."""

from __future__ import annotations

import math

import torch
from torch import Tensor


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
