"""Exercises that check themselves.

Each chapter ends with exercises; the reader writes an answer and calls ``check``::

    from arclib.exercises import check
    answer = ...            # the reader's number, tensor, function or nn.Module
    check("02.3", answer)   # ✅ correct, ❌ what is wrong and a hint (never the answer), or ⏳ not answered yet

An answer left as ``...`` or ``None``, or a stub that still raises ``NotImplementedError``, is *not answered yet*: a chapter run top to bottom with every exercise empty
does not fail. The checkers live one module per chapter (``ch01.py`` … ``ch09.py``); each registers its exercises
with ``@exercise("CC.N", "title")``. A checker takes the answer and returns a short note on success, or raises
``Wrong(what, hint)``. The helpers below catch the typical mistakes (a sign, degrees for radians) so that the hint
can name them.

A numeric exercise states the precision it asks for ("to 3 significant figures", "to 2 decimals") in its prompt and
on its answer line, and its checker passes the same to ``expect_number(..., digits=3)`` or ``decimals=2``: every
answer within that precision passes, and one that is only not precise enough (the right value rounded to fewer
places, or within 5 %) is told "close — give more digits", never "too small" or "too large" (issue 22).
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["Feedback", "Wrong", "Exercise", "Precision", "check", "exercise", "exercises", "expect_number",
           "expect_prediction", "expect_tensor", "expect_same_function"]


class Wrong(Exception):
    """Raised by a checker: ``what`` is wrong with the answer, ``hint`` points the way without giving the answer."""

    def __init__(self, what: str, hint: str = "") -> None:
        super().__init__(what)
        self.what = what
        self.hint = hint


@dataclass(frozen=True)
class Feedback:
    """The verdict on one answer: ``passed`` is True, False, or None (not answered yet)."""

    exercise: str
    passed: bool | None
    message: str
    hint: str = ""

    def __str__(self) -> str:
        mark = {True: "✅", False: "❌", None: "⏳"}[self.passed]
        verdict = {True: "correct", False: "not yet", None: "not answered yet"}[self.passed]
        text = f"{mark} {self.exercise} {verdict}: {self.message}"
        return f"{text}\n   hint: {self.hint}" if self.hint else text

    __repr__ = __str__

    def _repr_markdown_(self) -> str:
        lines = str(self).splitlines()
        return "  \n".join(lines)


@dataclass(frozen=True)
class Exercise:
    id: str
    title: str
    checker: Callable[[Any], str]

    @property
    def chapter(self) -> str:
        return self.id.split(".")[0]


_REGISTRY: dict[str, Exercise] = {}
_loaded = False


def exercise(exercise_id: str, title: str) -> Callable[[Callable[[Any], str]], Callable[[Any], str]]:
    """Register ``checker`` as exercise ``exercise_id`` ("CC.N": chapter, number)."""
    chapter, _, number = exercise_id.partition(".")
    if not (len(chapter) == 2 and chapter.isdigit() and number.isdigit()):
        raise ValueError(f"exercise id must look like '02.3' (chapter.number), got {exercise_id!r}")

    def register(checker: Callable[[Any], str]) -> Callable[[Any], str]:
        if exercise_id in _REGISTRY and _REGISTRY[exercise_id].checker is not checker:
            raise ValueError(f"exercise {exercise_id} is registered twice")
        _REGISTRY[exercise_id] = Exercise(exercise_id, title, checker)
        return checker

    return register


def _load_chapters() -> None:
    global _loaded
    if not _loaded:
        for module in pkgutil.iter_modules(__path__):
            if module.name.startswith("ch"):
                importlib.import_module(f"{__name__}.{module.name}")
        _loaded = True


def exercises(chapter: str | int | None = None) -> list[Exercise]:
    """Every registered exercise, in order; only chapter ``chapter`` ("02" or 2) when given."""
    _load_chapters()
    wanted = None if chapter is None else f"{int(chapter):02d}"
    key = lambda e: tuple(int(p) for p in e.id.split("."))  # noqa: E731 — sort 02.10 after 02.9
    return sorted((e for e in _REGISTRY.values() if wanted in (None, e.chapter)), key=key)


def check(exercise_id: str, answer: Any) -> Feedback:
    """Check ``answer`` to exercise ``exercise_id``. Never raises for a wrong answer: the verdict is the return value."""
    _load_chapters()
    if exercise_id not in _REGISTRY:
        known = ", ".join(e.id for e in exercises()) or "none"
        raise ValueError(f"exercise_id must be one of {known}; got {exercise_id!r}")
    if answer is None or answer is Ellipsis:
        return Feedback(exercise_id, None, "replace the `...` with your answer and run the cell again")
    try:
        note = _REGISTRY[exercise_id].checker(answer)
    except Wrong as wrong:
        return Feedback(exercise_id, False, wrong.what, wrong.hint)
    except NotImplementedError:  # the stub the chapter hands out, not yet filled in
        return Feedback(exercise_id, None, "your code still raises NotImplementedError: write it in place of that line")
    except Exception as error:  # the reader's own code raised: say so in one line, not a traceback
        first = str(error).splitlines()[0] if str(error) else ""
        return Feedback(exercise_id, False, f"your answer raised {type(error).__name__}: {first}".rstrip(": "),
                        "run your code on a small input by itself first")
    return Feedback(exercise_id, True, note or "well done")


# ---------------------------------------------------------------------------------------------------------------
# Helpers for checkers


def _as_float(answer: Any, what: str) -> float:
    if isinstance(answer, Tensor):
        if answer.numel() != 1:
            raise Wrong(f"{what} should be one number; you gave a tensor of shape {tuple(answer.shape)}")
        answer = answer.item()
    if isinstance(answer, bool):
        raise Wrong(f"{what} should be a number, not {answer!r}")
    try:
        value = float(answer)
    except (TypeError, ValueError):
        raise Wrong(f"{what} should be a number; you gave {type(answer).__name__} {answer!r}") from None
    if math.isnan(value):
        raise Wrong(f"{what} is NaN", "look for a 0/0, or an arccos of a value outside [−1, 1]")
    return value


@dataclass(frozen=True)
class Precision:
    """The precision an exercise asks for: ``digits`` significant figures, or ``decimals`` places after the point.

    An answer passes when it is within half a unit of the last asked place of the reference, so that the reference
    correctly rounded to that precision always passes. An answer that fails but is within ``near`` of the reference
    (a share of it, 5 % unless told), or is the reference correctly rounded to fewer places than asked (2.3 for
    ln 10 when 4 significant figures are asked, 0.00 for 0.004 when 3 decimals are), is a *near miss*: it is told
    "close — give more digits", not "too small" or "too large". Without ``digits`` or ``decimals`` the tolerance is
    ``rel`` (a share of the reference) or ``abs_tol``, whichever is larger, and a near miss only exists when ``near``
    is given.
    """

    digits: int | None = None
    decimals: int | None = None
    rel: float = 0.0
    abs_tol: float = 0.0
    near: float = 0.0

    @classmethod
    def of(cls, digits: int | None, decimals: int | None, rel: float | None, abs_tol: float | None,
           near: float | None) -> Precision:
        if digits is not None and decimals is not None:
            raise ValueError("give digits (significant figures) or decimals, not both")
        if digits is not None or decimals is not None:
            if rel is not None:
                raise ValueError("rel is the tolerance of an answer with no stated precision; with digits or "
                                 "decimals the precision sets the tolerance")
            if digits is not None and digits < 1:
                raise ValueError(f"digits must be at least 1, got {digits}")
            return cls(digits, decimals, 0.0, abs_tol or 0.0, 0.05 if near is None else near)
        return cls(None, None, 1e-3 if rel is None else rel, 1e-6 if abs_tol is None else abs_tol, near or 0.0)

    @property
    def stated(self) -> bool:
        return self.digits is not None or self.decimals is not None

    def __str__(self) -> str:
        if self.digits is not None:
            return f"{self.digits} significant figure{'' if self.digits == 1 else 's'}"
        if self.decimals is not None:
            return f"{self.decimals} decimal{'' if self.decimals == 1 else 's'}"
        if self.rel:
            return f"within {100 * self.rel:g} %"
        return f"within {self.abs_tol:g}"

    def tolerance(self, target: float) -> float:
        """How far an answer may be from ``target`` and still pass."""
        slack = 1 + 1e-9  # the correctly rounded value, stored as a float, may sit a hair outside half a unit
        if self.digits is not None:
            if target == 0 or not math.isfinite(target):
                return self.abs_tol
            unit = 10.0 ** (math.floor(math.log10(abs(target))) - self.digits + 1)
            return max(0.5 * unit * slack, self.abs_tol)
        if self.decimals is not None:
            return max(0.5 * 10.0 ** -self.decimals * slack, self.abs_tol)
        return max(self.rel * abs(target), self.abs_tol)

    def coarser(self, target: float) -> list[Precision]:
        """The precisions coarser than this one, down to one significant figure of ``target`` (none unstated)."""
        if self.digits is not None:
            return [Precision(digits=k) for k in range(self.digits - 1, 0, -1)]
        if self.decimals is not None:
            lowest = self.decimals - 1
            if target != 0 and math.isfinite(target):
                lowest = min(lowest, -math.floor(math.log10(abs(target))))
            return [Precision(decimals=k) for k in range(self.decimals - 1, lowest - 1, -1)]
        return []

    def written_to(self, value: float) -> bool:
        """Whether ``value`` has no more digits than this precision writes."""
        if self.digits is not None:
            shortened = float(f"{value:.{self.digits}g}")
        else:
            shortened = round(value, self.decimals)
        return abs(value - shortened) <= 1e-9 * max(1.0, abs(value))

    def passes(self, value: float, target: float) -> bool:
        return abs(value - target) <= self.tolerance(target)

    def near_miss(self, value: float, target: float) -> bool:
        """``target`` correctly rounded to a coarser precision than asked, or within ``near`` of ``target``."""
        if abs(value - target) <= self.near * abs(target):
            return True
        return any(k.written_to(value) and k.passes(value, target) for k in self.coarser(target))

    def close(self, what: str, shown: str) -> Wrong:
        """The verdict on a near miss: give more digits, at the precision asked."""
        asked = f"{self} asked" if self.stated else f"the answer must be {self}"
        return Wrong(f"{what} ({shown}) is close — give more digits ({asked})",
                     f"keep every digit while you compute and round only the final answer, to {self}")


def expect_number(answer: Any, expected: float, *, what: str = "your answer", digits: int | None = None,
                  decimals: int | None = None, rel: float | None = None, abs_tol: float | None = None,
                  near: float | None = None, mistakes: dict[str, float] | None = None, hint: str = "") -> float:
    """Pass when ``answer`` agrees with ``expected`` to the precision the exercise states; otherwise raise ``Wrong``.

    ``digits`` (significant figures) or ``decimals`` (places after the point) is the precision asked: any answer
    within half a unit of the last asked place passes, so the correctly rounded reference always does (see
    ``Precision``). Without either, ``rel`` (default 1e-3) and ``abs_tol`` (default 1e-6) are the tolerance; an
    exact answer is ``rel=0, abs_tol=1e-9``.

    ``mistakes`` maps a hint to the value a typical mistake produces (``{"you gave degrees; the answer is in
    radians": math.degrees(expected)}``): an answer matching one, at the same precision, gets that hint. An answer
    that is merely not precise enough (within ``near``, 5 % of ``expected`` unless told, or ``expected`` rounded to
    fewer places than asked) is told "close — give more digits", never "too small" or "too large".
    """
    precision = Precision.of(digits, decimals, rel, abs_tol, near)
    value = _as_float(answer, what)
    if precision.passes(value, expected):
        return value
    for mistake_hint, mistaken in (mistakes or {}).items():
        if precision.passes(value, mistaken):
            raise Wrong(f"{what} ({value:.6g}) is what a typical slip gives", mistake_hint)
    if precision.near_miss(value, expected):
        raise precision.close(what, f"{value:.6g}")
    direction = "too large" if value > expected else "too small"
    raise Wrong(f"{what} ({value:.6g}) is {direction}", hint)


def expect_prediction(answer: Any, choices: dict[str, str], measure: Callable[[], tuple[float, Any]],
                      outcome: Callable[[float, Any], str], **precision: Any) -> tuple[float, Any, str]:
    """A predict-then-measure exercise: ``answer`` is ``{"prediction": "a", "measured": 12.3}``.

    ``choices`` maps each allowed prediction to what it says. ``measure()`` runs the experiment once the answer is
    well formed (it may take seconds) and returns the reference measurement and anything else the note needs;
    the reader's measurement must agree with it to ``precision`` (``expect_number``'s keywords). The prediction is
    not graded: ``outcome(reference, other)`` names the choice the measurement supports, and the returned verdict
    says whether the reader's was it. Returns (reference, other, verdict).
    """
    listed = ", ".join(f'"{key}" ({text})' for key, text in choices.items())
    if not isinstance(answer, dict) or set(answer) != {"prediction", "measured"}:
        raise Wrong('your answer should be a dict {"prediction": ..., "measured": ...}; you gave '
                    f"{type(answer).__name__} {answer!r}"[:200], f"predict one of {listed}, then run the experiment")
    prediction = answer["prediction"]
    if prediction in (None, Ellipsis) or answer["measured"] in (None, Ellipsis):
        raise Wrong("both the prediction and the measurement are needed: predict first, then measure")
    if prediction not in choices:
        raise Wrong(f"prediction must be one of {listed}; you gave {prediction!r}")
    reference, other = measure()
    expect_number(answer["measured"], reference, **precision)
    actual = outcome(reference, other)
    return reference, other, "as you predicted" if prediction == actual else f"not as you predicted: {choices[actual]}"


def expect_tensor(answer: Any, expected: Tensor, *, what: str = "your answer", rtol: float = 1e-5,
                  atol: float = 1e-6, digits: int | None = None, decimals: int | None = None,
                  near: float | None = None, mistakes: dict[str, Tensor] | None = None, hint: str = "") -> Tensor:
    """Tensor version of ``expect_number``: shape first, then values (with the same ``mistakes`` mechanism).

    With ``digits`` or ``decimals`` every entry is held to that precision, as ``expect_number`` holds one number
    (``rtol`` and ``atol`` are then not used), and an answer all of whose entries are near misses or right is told
    "close — give more digits".
    """
    if not isinstance(answer, Tensor):
        try:
            answer = torch.as_tensor(answer, dtype=expected.dtype)
        except (TypeError, ValueError, RuntimeError):
            raise Wrong(f"{what} should be a tensor (or a list of numbers); you gave {type(answer).__name__}") from None
    if answer.shape != expected.shape:
        raise Wrong(f"{what} has shape {tuple(answer.shape)}; it should have shape {tuple(expected.shape)}")
    answer = answer.detach().to(expected.dtype)
    if digits is None and decimals is None:
        def agrees(got: Tensor, target: Tensor) -> bool:
            return torch.allclose(got, target, rtol=rtol, atol=atol)

        near_miss = None
    else:
        precision = Precision.of(digits, decimals, None, None, near)

        def each(test: Callable[[float, float], bool], got: Tensor, target: Tensor) -> bool:
            return all(test(g, t) for g, t in zip(got.flatten().tolist(), target.flatten().tolist(), strict=True))

        def agrees(got: Tensor, target: Tensor) -> bool:
            return each(precision.passes, got, target)

        def near_miss(got: Tensor) -> bool:
            return each(lambda g, t: precision.passes(g, t) or precision.near_miss(g, t), got, expected)

    if agrees(answer, expected):
        return answer
    for mistake_hint, mistaken in (mistakes or {}).items():
        if agrees(answer, mistaken.to(expected.dtype)):
            raise Wrong(f"{what} matches what a typical slip gives", mistake_hint)
    if near_miss is not None and near_miss(answer):
        raise precision.close(what, ", ".join(f"{v:.6g}" for v in answer.flatten().tolist()))
    worst = (answer - expected).abs().max().item()
    raise Wrong(f"{what} differs from the reference by up to {worst:.3g}", hint)


def expect_same_function(candidate: Callable[..., Tensor], reference: Callable[..., Tensor],
                         inputs: Iterable[tuple[Tensor, ...]], *, what: str = "your function", rtol: float = 1e-5,
                         atol: float = 1e-6, grad: bool = True,
                         mistakes: dict[str, Callable[..., Tensor]] | None = None, hint: str = "") -> None:
    """Call ``candidate`` and ``reference`` on each input tuple; values (and, with ``grad``, the gradients with
    respect to every floating-point input) must agree. ``mistakes`` maps a hint to a function with a typical bug."""
    if not callable(candidate):
        raise Wrong(f"{what} should be a function or an nn.Module; you gave {type(candidate).__name__}")

    def run(fn: Callable[..., Tensor], args: tuple[Tensor, ...]) -> tuple[Tensor, list[Tensor]]:
        leaves = [a.detach().clone().requires_grad_(grad and a.is_floating_point()) if isinstance(a, Tensor) else a
                  for a in args]
        out = fn(*leaves)
        if not isinstance(out, Tensor):
            raise Wrong(f"{what} should return a tensor; it returned {type(out).__name__}")
        grads = []
        if grad:
            floats = [a for a in leaves if isinstance(a, Tensor) and a.requires_grad]
            if not out.requires_grad:
                raise Wrong(f"{what} returns a tensor with no gradient",
                            "build the result from the inputs with torch operations (no .item(), .numpy() or "
                            "torch.tensor(...) of intermediate values)")
            grads = list(torch.autograd.grad(out.sum(), floats, allow_unused=True))
            grads = [torch.zeros_like(a) if g is None else g for a, g in zip(floats, grads, strict=True)]
        return out.detach(), grads

    for args in inputs:
        expected, expected_grads = run(reference, args)
        got, got_grads = run(candidate, args)
        if got.shape != expected.shape:
            raise Wrong(f"{what} returns shape {tuple(got.shape)}; it should be {tuple(expected.shape)}")
        if not torch.allclose(got, expected, rtol=rtol, atol=atol):
            for mistake_hint, buggy in (mistakes or {}).items():
                mistaken, _ = run(buggy, args)
                if mistaken.shape == got.shape and torch.allclose(got, mistaken, rtol=rtol, atol=atol):
                    raise Wrong(f"{what} gives the values of a typical slip", mistake_hint)
            worst = (got - expected).abs().max().item()
            raise Wrong(f"{what} differs from the reference by up to {worst:.3g}", hint)
        for g, e in zip(got_grads, expected_grads, strict=True):
            if not torch.allclose(g, e, rtol=rtol, atol=atol):
                worst = (g - e).abs().max().item()
                raise Wrong(f"{what} has the right values but its gradients differ by up to {worst:.3g}",
                            "a value computed without gradient (detach, a clamp that cuts the gradient) or a "
                            "different formula that happens to agree at these points")
