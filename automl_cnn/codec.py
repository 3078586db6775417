"""Dataclasses to JSON and back, driven by their field types, so no record lists its fields twice.

``to_jsonable`` turns a dataclass (and what it holds: dataclasses, tuples, lists, dicts, enums,
paths, bytes-free scalars) into JSON-ready values; ``from_jsonable(cls, data)`` rebuilds it from
the field annotations, so tuples come back as tuples, nested records as records and enums as
enums. Fields named in a dataclass's ``__json_skip__`` (e.g. clocks) are left out and take their
defaults; keys a newer or older format adds or lacks are ignored or defaulted.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

T = TypeVar("T")


def to_jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values (dict, list, str, int, float, bool, None)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        skip = getattr(obj, "__json_skip__", ())
        absent = getattr(obj, "__json_omit_none__", ())  # fields not written while None
        return {
            f.name: to_jsonable(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if f.name not in skip and not (f.name in absent and getattr(obj, f.name) is None)
        }
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {_key_text(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    return obj


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_jsonable(cls: type[T], data: Any) -> T:
    """Rebuild a ``cls`` (a dataclass, or any annotation such as ``tuple[int, ...] | None``)."""
    return _decode(cls, data)  # type: ignore[no-any-return]


def _decode(tp: Any, value: Any) -> Any:
    if value is None or tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return _decode(options[0], value) if len(options) == 1 else _first_fit(options, value)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = _hints(tp)
        known = {f.name for f in dataclasses.fields(tp) if f.init} - set(getattr(tp, "__json_skip__", ()))
        return tp(**{k: _decode(hints[k], v) for k, v in value.items() if k in known})
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    if tp is Path:
        return Path(value)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v) for v in value)
        return tuple(_decode(a, v) for a, v in zip(args, value, strict=True)) if args else tuple(value)
    if origin is list:
        return [_decode(args[0], v) for v in value] if args else list(value)
    if origin is dict:
        key_tp, val_tp = args if args else (Any, Any)
        return {_decode_key(key_tp, k): _decode(val_tp, v) for k, v in value.items()}
    if tp is float and isinstance(value, int):
        return float(value)
    return value


def _key_text(key: Any) -> str:
    """A dict key as JSON object keys must be: text (an enum by its value, as ``_decode_key`` reads it)."""
    return str(key.value if isinstance(key, enum.Enum) else key)


def _decode_key(tp: Any, key: str) -> Any:
    if tp is bool:
        return key == "True"
    if tp in (int, float, Path):
        return tp(key)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        for member in tp:
            if str(member.value) == key:
                return member
        raise ValueError(f"{key!r} is not a valid {tp.__name__}")
    return key


def _first_fit(options: list[Any], value: Any) -> Any:
    """A value of a union of several types: the first option (in the union's order) it fits."""
    for tp in options:
        if _fits(tp, value):
            return _decode(tp, value)
    return value


def _fits(tp: Any, value: Any) -> bool:
    """Whether the JSON ``value`` can be read as a ``tp``."""
    base = typing.get_origin(tp) or tp
    if base is typing.Literal:
        return value in typing.get_args(tp)
    if isinstance(value, list):
        return base in (tuple, list)
    if isinstance(value, dict):
        if dataclasses.is_dataclass(base) and isinstance(base, type):
            skip = set(getattr(base, "__json_skip__", ()))
            no_default = dataclasses.MISSING
            required = {
                f.name
                for f in dataclasses.fields(base)
                if f.init and f.name not in skip and f.default is no_default and f.default_factory is no_default
            }
            return required <= value.keys()
        return base is dict
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return any(m.value == value for m in base)
    if base is Path:
        return isinstance(value, str)
    try:
        return isinstance(value, base) or (base is float and isinstance(value, int) and not isinstance(value, bool))
    except TypeError:  # not a class (a Protocol, a special form): not a fit
        return False
