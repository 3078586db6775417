"""What the pictures of a study share: the trials they show and how each outcome is drawn.

A trial shows with its final value if it completed, or with its last reported (intermediate)
value if it was stopped early (PRUNED); failed trials and trials that reported nothing have no
value and are left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import optuna
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from automl_cnn.engine.outcome import Outcome, TrialAttrs

SIZE = (9.0, 5.5)  # inches
STYLES: dict[str, dict[str, Any]] = {  # how each outcome is drawn as a line
    "stopped": {"color": "0.5", "lw": 0.8, "ls": "--", "alpha": 0.6, "zorder": 1},
    "completed": {"color": "tab:blue", "lw": 1.6, "ls": "-", "alpha": 0.9, "zorder": 2},
    "best": {"color": "tab:red", "lw": 2.4, "ls": "-", "alpha": 1.0, "zorder": 3},
}


class Target(NamedTuple):
    """What the single-objective views show: the first objective (accuracy in a search)."""

    name: str
    maximize: bool


@dataclass(frozen=True)
class Point:
    """One trial with a value: its final value, or its last reported one if it was stopped early."""

    number: int
    value: float
    stopped: bool
    params: dict[str, Any]


def target_of(study: optuna.Study) -> Target:
    names = study.metric_names or []
    return Target(names[0] if names else "objective value", study.directions[0] == StudyDirection.MAXIMIZE)


def stopped_early(trial: FrozenTrial) -> bool:
    """PRUNED with reported values; a trial that failed a check is told PRUNED too, but is no result."""
    return (
        trial.state == TrialState.PRUNED
        and bool(trial.intermediate_values)
        and TrialAttrs.read(trial).outcome != Outcome.FAILED
    )


def trial_points(study: optuna.Study) -> list[Point]:
    """Every trial with a finite value of the first objective, completed or stopped early."""
    out = []
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE and t.values:
            value, stopped = float(t.values[0]), False
        elif stopped_early(t):
            value, stopped = float(t.intermediate_values[max(t.intermediate_values)]), True
        else:
            continue
        if math.isfinite(value):
            out.append(Point(t.number, value, stopped, dict(t.params)))
    return out


def best_point(points: Sequence[Point], target: Target) -> Point | None:
    """The best completed trial (a partial score is not a result)."""
    done = [p for p in points if not p.stopped]
    if not done:
        return None
    return (max if target.maximize else min)(done, key=lambda p: p.value)


def new_figure(width: float = SIZE[0], height: float = SIZE[1]) -> tuple[Figure, Axes]:
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    return fig, ax


def outcome_legend(fig: Figure, handles: Sequence[Any]) -> None:
    """One small legend of outcomes under the plot (never one entry per trial)."""
    if handles:
        fig.legend(handles=list(handles), loc="outside lower center", ncols=len(handles), frameon=False, fontsize=9)


def nothing_yet(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no trial has a value yet", transform=ax.transAxes, ha="center", va="center", color="0.3")


def line_handle(kind: str, label: str, **changes: Any) -> Line2D:
    style = {k: v for k, v in STYLES[kind].items() if k != "zorder"}
    return Line2D([], [], label=label, **{**style, **changes})
