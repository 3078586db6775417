"""Settings declared once: a dataclass field that carries its command-line form.

A setting is one dataclass field. :func:`option` (a flag taking a value) or :func:`switch`
(flags taking none) is that field, with a :class:`CliOption` in its metadata saying how
``automl-cnn search`` spells, explains and parses it; :func:`not_an_option` marks a setting of
the Python API only. The command line is built from the fields (``automl_cnn.cli``), so its
defaults are the fields' defaults, and :func:`cli_values` reads the parsed values back by field.

A setting given as text from Python (``time_budget="10m"``, ``memory_budget="4GB"``) is parsed
by the same parser as its flag: :func:`parse_given_text`, called by each settings group's
``__post_init__``, so the command line and the Python API read text one way.

The text parsers below raise :class:`argparse.ArgumentTypeError`, which argparse reports as a
one-line usage error naming the flag.

A registry (:class:`Entry`) maps a name to what it builds and one line saying what it is; the
choices of a flag such as ``--sampler`` and their help are generated from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

KEY = "automl_cnn.cli"  # the metadata key of a setting's CliOption (None: not on the command line)


@dataclass(frozen=True)
class Switch:
    """A flag without a value: giving it sets the field to ``value``."""

    flag: str
    value: Any
    help: str


@dataclass(frozen=True)
class CliOption:
    """How one setting appears on the command line."""

    flag: str | None = None  # the flag taking a value, e.g. "--image-size"; None for switches only
    help: str | None = None
    parse: Callable[[str], Any] | None = None  # argparse's ``type``: the text to a value
    choices: tuple[str, ...] | None = None
    switches: tuple[Switch, ...] = ()  # flags without a value; two or more exclude each other
    shown: str | None = None  # the default as ``--help`` shows it, where the value itself says little

    @property
    def flags(self) -> tuple[str, ...]:
        return ((self.flag,) if self.flag else ()) + tuple(s.flag for s in self.switches)

    @property
    def metavar(self) -> str | None:
        """The value's name in ``--help``, from the flag (the field's name may differ)."""
        if self.flag is None or self.choices is not None:
            return None  # argparse shows the choices
        return self.flag.lstrip("-").replace("-", "_").upper()


def option(
    default: T,
    flag: str,
    *,
    help: str | None = None,
    parse: Callable[[str], Any] | None = None,
    choices: tuple[str, ...] | None = None,
    shown: str | None = None,
) -> T:
    """A setting given on the command line as ``flag VALUE``; ``parse`` reads its text (from the
    command line, or given as text from Python); ``shown`` is its default as ``--help`` says it."""
    meta = CliOption(flag, help, parse, choices, shown=shown)
    return dataclasses.field(default=default, metadata={KEY: meta})


def switch(default: T, *switches: Switch, shown: str = "off") -> T:
    """A setting given by flags without a value (``--strict``; ``--stream`` or ``--in-memory``)."""
    return dataclasses.field(default=default, metadata={KEY: CliOption(switches=switches, shown=shown)})


def not_an_option(default: T) -> T:
    """A setting of the Python API only, not on the command line."""
    return dataclasses.field(default=default, metadata={KEY: None})


def cli_option(f: dataclasses.Field[Any]) -> CliOption | None:
    """``f``'s command-line form, or None where it has none; a field that says neither is an error."""
    if KEY not in f.metadata:
        raise TypeError(f"setting {f.name!r} declares no command-line form; use option(), switch() or not_an_option()")
    found: CliOption | None = f.metadata[KEY]
    return found


def field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def cli_values(cls: type, parsed: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of dataclass ``cls`` from parsed command-line values (keyed by field name)."""
    return {f.name: parsed[f.name] for f in dataclasses.fields(cls) if cli_option(f) is not None}


def help_text(opt: CliOption, default: Any, text: str | None = None) -> str:
    """``text`` (else the option's help) ending with its default, unless it already names it."""
    text = text if text is not None else (opt.help or "")
    if "default" in text:
        return text
    if opt.shown is not None:
        shown = opt.shown
    elif isinstance(default, tuple):
        shown = ",".join(map(str, default)) or "none"
    elif isinstance(default, float):
        shown = f"{default:g}"
    else:
        shown = str(default)
    return f"{text} (default: {shown})" if text else f"default: {shown}"


def parse_given_text(settings: Any, error: type[Exception]) -> None:
    """Parse each field of the frozen dataclass instance ``settings`` that was given as text
    where its flag parses text (a duration, a size, a number, a path), as the command line
    would; a bad text raises ``error`` naming the flag."""
    for f in dataclasses.fields(settings):
        opt = f.metadata.get(KEY)
        value = getattr(settings, f.name)
        if opt is None or opt.parse is None or not isinstance(value, str):
            continue
        try:
            parsed = opt.parse(value)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            raise error(f"{opt.flag} {value!r}: {exc}") from None
        object.__setattr__(settings, f.name, parsed)


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One name of a registry (samplers, pruners, presets): what it builds, and one line
    saying what it is, for ``--help``."""

    value: T
    about: str


def registry_help(registry: Mapping[str, Entry[Any]], lead: str = "") -> str:
    """``lead`` then each name of ``registry`` with its line: ``tpe: ...; random: ...``."""
    return lead + "; ".join(f"{name}: {entry.about}" for name, entry in registry.items())


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def fractions(text: str) -> tuple[float, float, float]:
    """``0.7,0.15,0.15`` (or with ``/``) -> three fractions."""
    try:
        parts = tuple(float(p) for p in text.replace("/", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three fractions like 0.7,0.15,0.15, got {text!r}") from None
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected three fractions like 0.7,0.15,0.15, got {text!r}")
    return parts[0], parts[1], parts[2]


def height_width(text: str) -> tuple[int, int]:
    """``32`` or ``32x48`` (height x width)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 32 or 32x48, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected a size like 32 or 32x48, got {text!r}")
    return parts[0], parts[1]


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr)?\s*$")
_DURATION_UNITS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}


def duration(text: str) -> float:
    """``90s``, ``10m``, ``1.5h`` or a number of seconds -> seconds (positive)."""
    m = _DURATION.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected a duration like 90s, 10m or 1h, got {text!r}")
    seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive duration, got {text!r}")
    return seconds


def byte_size(text: str) -> int:
    """``512MB``, ``4GB``, ``1.5g`` or a number of bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise argparse.ArgumentTypeError(f"expected a size like 512MB or 4GB, got {text!r}")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
