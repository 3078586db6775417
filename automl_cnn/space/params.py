"""One searchable setting: a fixed value, a list of choices, or a numeric range.

A YAML value maps to a parameter by its shape:

* a scalar (``3``, ``relu``, ``true``)     -> :class:`Fixed`
* a list (``[16, 32, 64]``)                -> :class:`Choice`
* a mapping (``{low: 1e-4, high: 1e-2, log: true}``) -> :class:`IntRange` / :class:`FloatRange`

Each key of a space declares a :class:`KeySpec` (type and bounds); :func:`parse_param` checks a
raw YAML value against it and raises :class:`ValueError` with a short reason, which the space
loader prefixes with the file and the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["int", "float", "bool", "str"]
Scalar = int | float | bool | str


@dataclass(frozen=True)
class Fixed:
    value: Scalar

    def values(self) -> tuple[Scalar, ...]:
        return (self.value,)

    def describe(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class Choice:
    options: tuple[Scalar, ...]

    def values(self) -> tuple[Scalar, ...]:
        return self.options

    def describe(self) -> str:
        return "one of " + ", ".join(repr(o) for o in self.options)


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    log: bool = False
    step: int = 1

    def values(self) -> tuple[Scalar, ...]:
        return (self.low, self.high)

    def describe(self) -> str:
        return f"int in [{self.low}, {self.high}]" + (" (log)" if self.log else "")


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    log: bool = False
    step: float | None = None

    def values(self) -> tuple[Scalar, ...]:
        return (self.low, self.high)

    def describe(self) -> str:
        return f"float in [{self.low:g}, {self.high:g}]" + (" (log)" if self.log else "")


Param = Fixed | Choice | IntRange | FloatRange


@dataclass(frozen=True)
class KeySpec:
    """What one key of a space accepts."""

    kind: Kind
    minimum: float | None = None
    maximum: float | None = None
    maximum_open: bool = False  # True: values must stay below ``maximum``
    options: tuple[str, ...] = ()
    hint: str = ""

    def check_value(self, value: Any) -> Scalar:
        """Return ``value`` as this key's type, or raise ValueError saying what is wrong."""
        value = self._coerce(value)
        if self.kind in ("int", "float"):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{value!r} is not a finite number")
            if self.minimum is not None and value < self.minimum:
                raise ValueError(f"{value!r} is below the minimum {self.minimum:g}{self._hint()}")
            if self.maximum is not None:
                too_big = value >= self.maximum if self.maximum_open else value > self.maximum
                if too_big:
                    bound = "below" if self.maximum_open else "at most"
                    raise ValueError(f"{value!r} is not {bound} {self.maximum:g}{self._hint()}")
        if self.kind == "str" and self.options and value not in self.options:
            raise ValueError(f"unknown value {value!r}; use one of: {', '.join(self.options)}")
        return value

    def _coerce(self, value: Any) -> Scalar:
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            raise ValueError(f"expected true or false, got {value!r}")
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"expected an integer, got {value!r}")
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"expected an integer, got {value!r}")
            return int(value)
        if self.kind == "float":
            if isinstance(value, str):
                try:  # YAML reads 1e-3 (no dot) as a string
                    return float(value)
                except ValueError:
                    pass
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"expected a number, got {value!r}")
            return float(value)
        if not isinstance(value, str):
            raise ValueError(f"expected a name, got {value!r}")
        return value

    def _hint(self) -> str:
        return f"; {self.hint}" if self.hint else ""


_RANGE_KEYS = {"low", "high", "log", "step"}


def parse_param(raw: Any, spec: KeySpec) -> Param:
    """Turn a raw YAML value into a parameter of this key, or raise ValueError."""
    if isinstance(raw, list):
        if not raw:
            raise ValueError("empty list of choices; give at least one value")
        options = tuple(spec.check_value(v) for v in raw)
        if len(set(options)) != len(options):
            raise ValueError(f"repeated choices in {list(raw)!r}")
        return Fixed(options[0]) if len(options) == 1 else Choice(options)
    if isinstance(raw, dict):
        return _parse_range(raw, spec)
    if raw is None:
        raise ValueError("no value given; write a value, a list of choices or {low, high}")
    return Fixed(spec.check_value(raw))


def _parse_range(raw: dict[str, Any], spec: KeySpec) -> Param:
    if spec.kind not in ("int", "float"):
        raise ValueError(
            f"a range needs a numeric key; list the choices instead, e.g. {spec.options or [True, False]!r}"
        )
    unknown = set(raw) - _RANGE_KEYS
    if unknown:
        raise ValueError(f"unknown range field(s) {sorted(unknown)}; use low, high, log, step")
    if "low" not in raw or "high" not in raw:
        raise ValueError("a range needs both low and high")
    low, high = spec.check_value(raw["low"]), spec.check_value(raw["high"])
    assert isinstance(low, int | float) and isinstance(high, int | float)
    if low > high:
        raise ValueError(f"empty range: low {low!r} is above high {high!r}")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise ValueError(f"log must be true or false, got {log!r}")
    if log and low <= 0:
        raise ValueError(f"a log range needs low > 0, got {low!r}")
    step = raw.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int | float) or step <= 0):
        raise ValueError(f"step must be a positive number, got {step!r}")
    if log and step is not None:
        raise ValueError("a range cannot have both log and step")
    if low == high:
        return Fixed(low)
    if spec.kind == "int":
        if step is not None and not float(step).is_integer():
            raise ValueError(f"an integer range needs an integer step, got {step!r}")
        return IntRange(int(low), int(high), log=log, step=int(step or 1))
    return FloatRange(float(low), float(high), log=log, step=None if step is None else float(step))


def param_to_yaml(param: Param) -> Any:
    """The YAML form of a parameter (inverse of :func:`parse_param`)."""
    if isinstance(param, Fixed):
        return param.value
    if isinstance(param, Choice):
        return list(param.options)
    out: dict[str, Any] = {"low": param.low, "high": param.high}
    if param.log:
        out["log"] = True
    if isinstance(param, IntRange) and param.step != 1:
        out["step"] = param.step
    if isinstance(param, FloatRange) and param.step is not None:
        out["step"] = param.step
    return out
