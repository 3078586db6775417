"""The dataclass <-> JSON codec: what each annotation comes back as after a trip through JSON text."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest

from automl_cnn.codec import from_jsonable, to_jsonable


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass(frozen=True)
class Point:
    x: int
    y: int = 0


@dataclass(frozen=True)
class Named:
    name: str
    tags: tuple[str, ...] = ()


@dataclass
class Everything:
    number: int | str = 0
    shape: Point | Named | None = None
    color: Color | int = 0
    level: Level = Level.LOW
    where: Path | None = None
    maybe_path: Path | int = 0
    grid: tuple[tuple[int, int, int], ...] = ()
    pair: tuple[int, str] = (0, "")
    points: list[Point] = field(default_factory=list)
    scores: dict[int, float] = field(default_factory=dict)
    by_color: dict[Color, int] = field(default_factory=dict)
    by_level: dict[Level, str] = field(default_factory=dict)
    ratio: float = 0.5
    either: tuple[int, ...] | dict[str, int] = ()
    mode: Literal["a", "b"] | int = 0
    anything: Any = None


@dataclass
class WithSkip:
    name: str
    clock: float = 1.5
    cache: dict[str, int] = field(default_factory=dict)
    __json_skip__: ClassVar[tuple[str, ...]] = ("clock", "cache")


def _trip(cls: type, obj: Any) -> Any:
    """``obj`` to JSON text and back as a ``cls``."""
    return from_jsonable(cls, json.loads(json.dumps(to_jsonable(obj))))


def test_a_full_record_comes_back_equal_with_its_types() -> None:
    obj = Everything(
        number="seven",
        shape=Named("n", ("a", "b")),
        color=Color.BLUE,
        level=Level.HIGH,
        where=Path("/tmp/x"),
        maybe_path=Path("rel/y"),
        grid=((1, 2, 3), (4, 5, 6)),
        pair=(3, "three"),
        points=[Point(1, 2), Point(3)],
        scores={1: 0.5, 20: 1.0},
        by_color={Color.RED: 1, Color.BLUE: 2},
        by_level={Level.HIGH: "h"},
        ratio=2.0,
        either={"k": 1},
        mode="b",
        anything={"free": [1, "form"]},
    )
    back = _trip(Everything, obj)
    assert back == obj
    assert isinstance(back.grid, tuple) and all(isinstance(g, tuple) for g in back.grid)
    assert isinstance(back.pair, tuple)
    assert isinstance(back.shape, Named) and isinstance(back.shape.tags, tuple)
    assert back.color is Color.BLUE and back.level is Level.HIGH
    assert isinstance(back.where, Path) and isinstance(back.maybe_path, Path)
    assert all(isinstance(k, int) for k in back.scores)
    assert set(back.by_color) == {Color.RED, Color.BLUE}


def test_plain_json_values_of_a_record() -> None:
    d = to_jsonable(Everything(color=Color.RED, where=Path("/a"), grid=((1, 2, 3),), by_color={Color.BLUE: 1}))
    assert d["color"] == "red"
    assert d["where"] == "/a"
    assert d["grid"] == [[1, 2, 3]]
    assert d["by_color"] == {"blue": 1}  # an enum key by its value, not "Color.BLUE"
    assert d["level"] == 1
    json.dumps(d)  # nothing left that JSON cannot hold


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, 3),
        ("x", "x"),
    ],
)
def test_a_scalar_union_keeps_the_option_the_value_is(value: Any, expected: Any) -> None:
    back = from_jsonable(Everything, {"number": value})
    assert back.number == expected and type(back.number) is type(expected)


def test_a_union_of_records_picks_the_one_whose_required_fields_are_there() -> None:
    assert from_jsonable(Everything, {"shape": {"x": 1, "y": 2}}).shape == Point(1, 2)
    assert from_jsonable(Everything, {"shape": {"name": "n", "tags": ["t"]}}).shape == Named("n", ("t",))
    assert from_jsonable(Everything, {"shape": None}).shape is None


def test_a_union_with_an_enum_or_a_path_reads_them_and_falls_back_to_the_other_option() -> None:
    assert from_jsonable(Everything, {"color": "blue"}).color is Color.BLUE
    assert from_jsonable(Everything, {"color": 4}).color == 4
    assert from_jsonable(Everything, {"maybe_path": "a/b"}).maybe_path == Path("a/b")
    assert from_jsonable(Everything, {"maybe_path": 2}).maybe_path == 2
    assert from_jsonable(Everything, {"either": [1, 2]}).either == (1, 2)
    assert from_jsonable(Everything, {"either": {"a": 1}}).either == {"a": 1}
    assert from_jsonable(Everything, {"mode": "a"}).mode == "a"
    assert from_jsonable(Everything, {"mode": 7}).mode == 7


def test_an_int_in_a_float_field_becomes_a_float() -> None:
    back = from_jsonable(Everything, {"ratio": 2, "scores": {"3": 1}})
    assert back.ratio == 2.0 and isinstance(back.ratio, float)
    assert back.scores == {3: 1.0} and isinstance(back.scores[3], float)


def test_annotations_other_than_a_record() -> None:
    assert from_jsonable(tuple[int, ...], [1, 2]) == (1, 2)  # type: ignore[arg-type]
    assert from_jsonable(dict[int, list[Point]], {"5": [{"x": 1}]}) == {5: [Point(1)]}  # type: ignore[arg-type]
    assert from_jsonable(Point | None, None) is None  # type: ignore[arg-type]


def test_skipped_fields_are_not_written_and_take_their_defaults() -> None:
    d = to_jsonable(WithSkip("w", clock=99.0, cache={"a": 1}))
    assert d == {"name": "w"}
    back = from_jsonable(WithSkip, {"name": "w", "clock": 99.0, "cache": {"a": 1}})
    assert back == WithSkip("w")  # a skipped key in the data is not read either


def test_unknown_keys_are_ignored_and_missing_ones_defaulted() -> None:
    back = from_jsonable(Everything, {"number": 5, "added_in_a_later_version": [1, 2]})
    assert back == Everything(number=5)
    assert from_jsonable(Point, {"x": 4}) == Point(4, 0)


def test_a_missing_required_field_is_an_error() -> None:
    with pytest.raises(TypeError):
        from_jsonable(Point, {"y": 1})


def test_an_unknown_enum_value_is_an_error() -> None:
    with pytest.raises(ValueError):
        from_jsonable(Everything, {"level": 9})
    with pytest.raises(ValueError):
        from_jsonable(Everything, {"by_color": {"green": 1}})
