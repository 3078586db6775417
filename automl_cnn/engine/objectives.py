"""What a search optimises: validation accuracy, optionally traded against size or speed.

``--objective accuracy,params`` (or ``flops``, ``latency``) makes the study multi-objective;
the result is a Pareto front, and one member is delivered by a stated rule (``--pick``):

* ``params@0.005`` (the default for ``accuracy,params``): the fewest parameters among the
  front members within 0.5 accuracy points of the best accuracy; likewise ``flops@...``,
  ``latency@...``;
* ``accuracy``: the most accurate member.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from automl_cnn.errors import UserInputError

OBJECTIVES: dict[str, Literal["maximize", "minimize"]] = {
    "accuracy": "maximize",
    "params": "minimize",
    "flops": "minimize",
    "latency": "minimize",
}
UNITS = {
    "accuracy": "validation accuracy",
    "params": "parameters",
    "flops": "FLOPs per image",
    "latency": "ms per image",
}
DEFAULT_TOLERANCE = 0.005


def parse_objectives(text: str | Sequence[str]) -> tuple[str, ...]:
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise UserInputError(f"unknown objective {unknown[0]!r}; use accuracy and any of: params, flops, latency")
    if not names or names[0] != "accuracy":
        raise UserInputError("the first objective must be accuracy, e.g. --objective accuracy,params")
    if len(set(names)) != len(names):
        raise UserInputError(f"repeated objective in {','.join(names)}")
    return tuple(names)


@dataclass(frozen=True)
class PickRule:
    """``objective@tolerance`` or ``accuracy``."""

    objective: str = "accuracy"
    tolerance: float = 0.0

    @classmethod
    def parse(cls, text: str | None, objectives: tuple[str, ...]) -> PickRule:
        if not text:
            return cls(objectives[1], DEFAULT_TOLERANCE) if len(objectives) > 1 else cls()
        name, _, tol = text.partition("@")
        name = name.strip()
        if name not in OBJECTIVES:
            raise UserInputError(f"--pick {text!r}: use accuracy or OBJECTIVE@TOLERANCE, e.g. params@0.005")
        try:
            tolerance = float(tol) if tol else (0.0 if name == "accuracy" else DEFAULT_TOLERANCE)
        except ValueError:
            raise UserInputError(
                f"--pick {text!r}: the tolerance must be a number of accuracy points, e.g. 0.005"
            ) from None
        if tolerance < 0 or tolerance >= 1:
            raise UserInputError(f"--pick {text!r}: the tolerance must be in [0, 1)")
        return cls(name, tolerance)

    def describe(self) -> str:
        if self.objective == "accuracy":
            return "the most accurate"
        return (
            f"the fewest {UNITS[self.objective]} within {self.tolerance * 100:g} points of the best validation accuracy"
        )

    def choose(self, members: Sequence[Any], value: Any) -> Any:
        """``value(member, objective)`` gives a member's value of an objective."""
        best = max(value(m, "accuracy") for m in members)
        if self.objective == "accuracy":
            return max(members, key=lambda m: value(m, "accuracy"))
        close = [m for m in members if value(m, "accuracy") >= best - self.tolerance - 1e-12]
        return min(close, key=lambda m: (value(m, self.objective), -value(m, "accuracy")))


def dominates(first: Sequence[float], second: Sequence[float], directions: Sequence[str]) -> bool:
    """``a`` is at least as good as ``b`` everywhere and better somewhere."""
    better = False
    for x, y, d in zip(first, second, directions, strict=True):
        if (x < y) if d == "maximize" else (x > y):
            return False
        if x != y:
            better = True
    return better


def pareto_front(items: Sequence[Any], vector: Any, directions: Sequence[str]) -> list[Any]:
    """The members of ``items`` that no other member dominates (``vector(item)`` -> values)."""
    values = [vector(i) for i in items]
    return [
        item
        for k, item in enumerate(items)
        if not any(dominates(values[j], values[k], directions) for j in range(len(items)) if j != k)
    ]
