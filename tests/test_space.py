"""Search spaces: shipped files load, malformed files fail with file, key and problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from automl_cnn.errors import SpaceError
from automl_cnn.space.params import Choice, Fixed, FloatRange, IntRange
from automl_cnn.space.schema import load_space, parse_space, shipped_spaces

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"


def test_shipped_spaces_include_the_required_ones() -> None:
    names = set(shipped_spaces())
    assert {"default", "tiny", "residual"} <= names
    assert load_space("residual").blocks.type == Fixed("residual")


def test_value_forms_become_typed_params() -> None:
    space = parse_space(
        {
            "blocks": {"count": {"low": 1, "high": 3}, "filters": [16, 32], "kernel_size": 3},
            "training": {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}},
        }
    )
    assert space.blocks.count == IntRange(1, 3)
    assert space.blocks.filters == Choice((16, 32))
    assert space.blocks.kernel_size == Fixed(3)
    assert space.training.learning_rate == FloatRange(1e-4, 1e-2, log=True)


def test_yaml_round_trip_keeps_every_key(tmp_path: Path) -> None:
    space = load_space(SPACES / "default.yaml")
    again = tmp_path / "again.yaml"
    again.write_text(space.to_yaml())
    reloaded = load_space(again)
    assert reloaded.blocks == space.blocks
    assert reloaded.head == space.head
    assert reloaded.training == space.training


def test_max_epochs_caps_every_epoch_setting() -> None:
    space = parse_space({"training": {"epochs": {"low": 5, "high": 30}}})
    assert space.with_max_epochs(10).training.epochs == IntRange(5, 10)
    assert space.with_max_epochs(3).training.epochs == Fixed(3)
    assert space.with_max_epochs(3).max_epochs() == 3


MALFORMED = [
    # (yaml text, the key named in the message, words of the problem)
    ("blocks:\n  filtres: [16]\n", "blocks.filtres", "unknown key"),
    ("bloks:\n  filters: [16]\n", "bloks", "unknown key"),
    ("blocks:\n  count: {low: 4, high: 2}\n", "blocks.count", "empty range"),
    ("blocks:\n  filters: []\n", "blocks.filters", "empty list"),
    ("blocks:\n  kernel_size: [0, 3]\n", "blocks.kernel_size", "below the minimum 1"),
    ("blocks:\n  dropout: 1.0\n", "blocks.dropout", "not below 1"),
    ("head:\n  dropout: {low: -0.1, high: 0.5}\n", "head.dropout", "below the minimum 0"),
    ("blocks:\n  filters: [sixteen]\n", "blocks.filters", "expected an integer"),
    ("blocks:\n  batch_norm: 3\n", "blocks.batch_norm", "expected true or false"),
    ("blocks:\n  pooling: [max, median]\n", "blocks.pooling", "unknown value 'median'"),
    ("training:\n  epochs: 2.5\n", "training.epochs", "expected an integer"),
    ("training:\n  optimizer: {low: 1, high: 2}\n", "training.optimizer", "range needs a numeric key"),
    ("blocks: [1, 2]\n", "blocks", "expected a mapping"),
]


@pytest.mark.parametrize(("text", "key", "problem"), MALFORMED)
def test_malformed_space_names_file_key_and_problem(tmp_path: Path, text: str, key: str, problem: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert key in message
    assert problem in message


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("blocks:\n  filters: [16, 32\n")
    with pytest.raises(SpaceError, match=r"broken.yaml: not valid YAML at line \d+"):
        load_space(bad)
    with pytest.raises(SpaceError, match=r"not found; give a YAML path or one of: .*tiny"):
        load_space(tmp_path / "nope.yaml")


def test_a_space_may_ask_for_the_extendable_wsd_schedule_beside_cosine() -> None:
    space = parse_space({"training": {"lr_schedule": ["cosine", "wsd"]}})
    assert space.training.lr_schedule == Choice(("cosine", "wsd"))
    assert load_space("default").training.lr_schedule == Choice(("cosine", "onecycle"))  # unchanged
    with pytest.raises(SpaceError, match="lr_schedule"):
        parse_space({"training": {"lr_schedule": "linear"}})
