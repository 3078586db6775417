"""Parallel coordinates of a study: one line per trial with a value, across the objective and the
most sampled parameters. Optuna's version shows completed trials only; here the trials stopped
early are dashed grey lines at their last reported value, and the best completed one is red.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, MaxNLocator
from optuna.distributions import BaseDistribution, CategoricalDistribution

from automl_cnn.deliver.study_points import (
    SIZE,
    STYLES,
    Point,
    best_point,
    line_handle,
    new_figure,
    nothing_yet,
    outcome_legend,
    target_of,
    trial_points,
)

LABEL_BOX = {"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8}  # over the lines
UNSET = -0.16  # where a trial without a (conditional) parameter crosses that parameter's axis


def top_params(study: optuna.Study, count: int = 8) -> list[str] | None:
    """The most often sampled parameters among trials with a value (a plot of every conditional
    parameter is unreadable); of those sampled equally often, the ones that tell most about the
    value first."""
    points = trial_points(study)
    counts: Counter[str] = Counter()
    for p in points:
        counts.update(p.params.keys())
    ranked = sorted(counts, key=lambda name: (-counts[name], -_telling(points, name)))
    return ranked[:count] or None


def _telling(points: Sequence[Point], name: str) -> float:
    """The share of the values' variance between the parameter's groups (its categories, or the
    quartiles of a number): the correlation ratio, 0 to 1."""
    pairs = [(p.params[name], p.value) for p in points if name in p.params]
    values = np.array([v for _, v in pairs])
    if len(values) < 3 or values.var() == 0:
        return 0.0
    keys = [x for x, _ in pairs]
    if len(set(map(_fmt, keys))) > 4 and all(isinstance(x, int | float) and not isinstance(x, bool) for x in keys):
        ranks = np.argsort(np.argsort(np.asarray(keys, dtype=float), kind="stable"), kind="stable")
        groups = [str(r * 4 // len(keys)) for r in ranks]
    else:
        groups = [_fmt(x) for x in keys]
    labels = np.array(groups)
    between = sum((labels == g).sum() * (values[labels == g].mean() - values.mean()) ** 2 for g in set(groups))
    return float(between / len(values) / values.var())


@dataclass(frozen=True)
class Column:
    """One vertical axis: where each trial crosses it (0 to 1, or UNSET) and its tick labels."""

    name: str
    positions: list[float]
    ticks: list[tuple[float, str]]


def _fmt(value: Any) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.3g}"
    return str(int(value)) if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def _scale(lo: float, hi: float, log: bool) -> Callable[[float], float]:
    f: Callable[[float], float] = math.log10 if log and lo > 0 else float
    span = f(hi) - f(lo)
    return lambda v: 0.5 if span == 0 else (f(v) - f(lo)) / span


def _numeric_ticks(lo: float, hi: float, log: bool, integer: bool) -> list[float]:
    """The range's ends and the round numbers between them (1, 2, 5 per decade on a log scale)."""
    if hi <= lo:
        return [lo]
    if integer and hi - lo <= 6:
        return [float(v) for v in range(int(lo), int(hi) + 1)]
    if log and lo > 0:
        nice = LogLocator(subs=(1.0, 2.0, 5.0) if hi / lo <= 300 else (1.0,)).tick_values(lo, hi)
    else:
        nice = MaxNLocator(nbins=4, integer=integer).tick_values(lo, hi)
    scale = _scale(lo, hi, log)
    inner = [float(v) for v in nice if 0.08 < scale(float(v)) < 0.92]  # not crowding the ends
    return [lo, *inner, hi]


def _column(name: str, values: Sequence[Any], dist: BaseDistribution | None) -> Column:
    """An axis for a parameter (its whole range, from its distribution) or for the objective."""
    given = [v for v in values if v is not None]
    if isinstance(dist, CategoricalDistribution) or any(isinstance(v, str | bool) for v in given):
        choices = list(dist.choices) if isinstance(dist, CategoricalDistribution) else sorted(set(given), key=str)
        step = 1 / max(len(choices) - 1, 1)
        where = {_fmt(c): (i * step if len(choices) > 1 else 0.5) for i, c in enumerate(choices)}
        positions = [UNSET if v is None else where[_fmt(v)] for v in values]
        ticks = [(y, label) for label, y in where.items()]
    else:
        lo = float(getattr(dist, "low", min(given)))
        hi = float(getattr(dist, "high", max(given)))
        log = bool(getattr(dist, "log", False))
        scale = _scale(lo, hi, log)
        positions = [UNSET if v is None else scale(float(v)) for v in values]
        integer = isinstance(dist, optuna.distributions.IntDistribution)
        ticks = [(scale(v), _fmt(v)) for v in _numeric_ticks(lo, hi, log, integer)]
    if any(v is None for v in values):
        ticks.append((UNSET, "(not set)"))
    return Column(name, positions, ticks)


def _columns(study: optuna.Study, points: Sequence[Point], params: Sequence[str]) -> list[Column]:
    dists: dict[str, BaseDistribution] = {}
    for t in study.get_trials(deepcopy=False):
        for name, dist in t.distributions.items():
            dists.setdefault(name, dist)
    objective = _column(target_of(study).name, [p.value for p in points], None)
    return [objective, *(_column(n, [p.params.get(n) for p in points], dists.get(n)) for n in params)]


def draw_parallel(study: optuna.Study, params: Sequence[str] | None = None) -> Figure:
    """One line per trial with a value across the objective and the most sampled parameters;
    stopped-early trials dashed grey at their last reported value, the best one in red."""
    points = trial_points(study)
    names = list(params) if params is not None else top_params(study) or []
    columns = _columns(study, points, names) if points else []
    fig, ax = new_figure(max(SIZE[0], 1.15 * len(columns) + 1.5))
    target = target_of(study)
    best = best_point(points, target)
    for i, p in enumerate(points):
        kind = "best" if p is best else "stopped" if p.stopped else "completed"
        ax.plot(range(len(columns)), [c.positions[i] for c in columns], gid=f"trial {p.number}", **STYLES[kind])
    _parallel_axes(ax, columns)
    ax.set_title("parallel coordinates: each line is one trial (the most sampled parameters)")
    if not points:
        nothing_yet(ax)
    done = sum(not p.stopped for p in points)
    handles = [line_handle("completed", f"completed ({done})")] if done else []
    handles += [line_handle("best", f"best {target.name}: trial {best.number}")] if best else []
    stopped = len(points) - done
    handles += [line_handle("stopped", f"stopped early: last reported value ({stopped})")] if stopped else []
    outcome_legend(fig, handles)
    return fig


def _parallel_axes(ax: Axes, columns: Sequence[Column]) -> None:
    """Vertical axes with their tick labels beside them and the parameter names below."""
    for i, c in enumerate(columns):
        ax.axvline(i, color="0.25", lw=0.8, zorder=0)
        for y, label in c.ticks:
            ax.annotate(
                label, (i, y), xytext=(4, 0), textcoords="offset points", fontsize=7, va="center", bbox=LABEL_BOX
            )
    ax.set_xticks(range(len(columns)), [c.name.replace(".", "\n", 1) for c in columns], fontsize=8)
    ax.tick_params(axis="x", length=0)
    ax.set_yticks([])
    unset = any(y == UNSET for c in columns for y, _ in c.ticks)
    ax.set_ylim((UNSET if unset else 0) - 0.06, 1.06)
    ax.set_xlim(-0.15, max(len(columns) - 0.4, 0.85))
    for spine in ax.spines.values():
        spine.set_visible(False)
