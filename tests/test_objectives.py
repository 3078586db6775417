"""Pareto fronts and the rule that picks the delivered model (pure logic)."""

from __future__ import annotations

import pytest

from automl_cnn.engine.objectives import PickRule, dominates, pareto_front, parse_objectives
from automl_cnn.errors import UserInputError

D = ["maximize", "minimize"]


def test_dominance_and_front() -> None:
    assert dominates([0.9, 10], [0.8, 20], D)
    assert not dominates([0.9, 10], [0.9, 10], D)
    assert not dominates([0.95, 30], [0.9, 10], D)
    points = [(0.90, 10), (0.95, 30), (0.93, 20), (0.92, 25), (0.80, 5), (0.95, 40)]
    got = pareto_front(points, list, D)
    assert got == [(0.90, 10), (0.95, 30), (0.93, 20), (0.80, 5)]


def test_pick_rule_fewest_params_within_tolerance() -> None:
    members = [
        {"accuracy": 0.990, "params": 900},
        {"accuracy": 0.986, "params": 300},
        {"accuracy": 0.980, "params": 50},
    ]
    rule = PickRule.parse(None, ("accuracy", "params"))
    assert rule == PickRule("params", 0.005)
    assert rule.choose(members, lambda m, o: m[o]) == members[1]
    assert PickRule.parse("params@0.02", ("accuracy", "params")).choose(members, lambda m, o: m[o]) == members[2]
    assert PickRule.parse("accuracy", ("accuracy", "params")).choose(members, lambda m, o: m[o]) == members[0]
    assert "fewest parameters within 0.5 points" in rule.describe()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("params,accuracy", "the first objective must be accuracy"),
        ("accuracy,size", "unknown objective 'size'"),
        ("accuracy,params,params", "repeated objective"),
    ],
)
def test_bad_objectives(text: str, words: str) -> None:
    with pytest.raises(UserInputError, match=words):
        parse_objectives(text)


def test_bad_pick_rules() -> None:
    with pytest.raises(UserInputError, match="use accuracy or OBJECTIVE@TOLERANCE"):
        PickRule.parse("smallest", ("accuracy", "params"))
    with pytest.raises(UserInputError, match="must be a number"):
        PickRule.parse("params@half", ("accuracy", "params"))
