"""Pictures of a search's Optuna study, drawn to read at a glance.

The optimisation history, the parallel coordinates (:mod:`automl_cnn.deliver.parallel_plot`) and
the intermediate values are drawn here rather than by ``optuna.visualization.matplotlib``:
Optuna's versions show only completed trials (a search that stopped most trials early looks
empty) and label every trial in a legend. Here a trial stopped early (PRUNED) shows at its last
reported value, in grey, dashed or hollow, and each legend names outcomes, not trials. The
parameter importances and the Pareto front are Optuna's own, sized and laid out like the rest.

Each ``draw_*`` function returns a matplotlib :class:`~matplotlib.figure.Figure`, not yet saved,
so that tests can check what is on it; :func:`automl_cnn.deliver.viz.study_plots` saves them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import optuna
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from optuna.trial import TrialState

from automl_cnn.deliver.parallel_plot import draw_parallel
from automl_cnn.deliver.study_points import (
    SIZE,
    STYLES,
    Point,
    Target,
    line_handle,
    new_figure,
    nothing_yet,
    outcome_legend,
    stopped_early,
    target_of,
    trial_points,
)

# -- optimisation history ---------------------------------------------------------------------------


def draw_history(study: optuna.Study) -> Figure:
    """Each trial's value by trial number, the stopped-early ones hollow, and the best so far."""
    target, points = target_of(study), trial_points(study)
    fig, ax = new_figure()
    done = [p for p in points if not p.stopped]
    stopped = [p for p in points if p.stopped]
    if stopped:
        xs, ys = [p.number for p in stopped], [p.value for p in stopped]
        ax.scatter(xs, ys, s=30, facecolors="none", edgecolors="0.45", linewidths=1.1, gid="stopped", zorder=2)
    if done:
        ax.scatter([p.number for p in done], [p.value for p in done], s=34, color="tab:blue", gid="completed", zorder=3)
        ax.step(*_best_so_far(done, target, max(p.number for p in points)), where="post", color="tab:red", zorder=4)
    ax.set(xlabel="trial", ylabel=target.name, title=f"optimisation history: {target.name} of each trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if not points:
        nothing_yet(ax)
    handles = []
    if done:
        handles.append(_marker_handle("tab:blue", f"completed ({len(done)})", filled=True))
        handles.append(Line2D([], [], color="tab:red", label="best completed so far"))
    if stopped:
        handles.append(_marker_handle("0.45", f"stopped early: last reported value ({len(stopped)})", filled=False))
    outcome_legend(fig, handles)
    return fig


def _marker_handle(colour: str, label: str, filled: bool) -> Line2D:
    face = colour if filled else "none"
    return Line2D([], [], ls="", marker="o", mec=colour, mfc=face, label=label)


def _best_so_far(done: Sequence[Point], target: Target, last: int) -> tuple[list[int], list[float]]:
    pick = max if target.maximize else min
    xs, ys, best = [], [], None
    for p in sorted(done, key=lambda p: p.number):
        best = p.value if best is None else pick(best, p.value)
        xs.append(p.number)
        ys.append(best)
    return [*xs, last], [*ys, ys[-1]]


# -- intermediate values ----------------------------------------------------------------------------


def draw_intermediate(study: optuna.Study) -> Figure:
    """Each trial's reported values per epoch, coloured by outcome, with an outcome legend."""
    target = target_of(study)
    fig, ax = new_figure()
    counts = {"completed": 0, "stopped": 0}
    for t in study.get_trials(deepcopy=False):
        kind = "completed" if t.state == TrialState.COMPLETE else "stopped" if stopped_early(t) else None
        steps = sorted(t.intermediate_values)
        if kind is None or not steps:
            continue
        counts[kind] += 1
        values = [t.intermediate_values[s] for s in steps]
        ax.plot(steps, values, gid=f"trial {t.number}", **STYLES[kind])
        if kind == "stopped":  # where it stopped
            ax.plot(steps[-1:], values[-1:], marker="o", ms=4, mfc="none", mec="0.4", ls="", zorder=1)
    ax.set(xlabel="epoch (reported step)", ylabel=f"{target.name} (reported)", title="intermediate values per trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if not any(counts.values()):
        nothing_yet(ax)
    handles = [line_handle("completed", f"completed ({counts['completed']})")] if counts["completed"] else []
    if counts["stopped"]:
        label = f"stopped early ({counts['stopped']}), circle: last report"
        handles.append(line_handle("stopped", label, marker="o", ms=4, mfc="none", mec="0.4"))
    outcome_legend(fig, handles)
    return fig


# -- Optuna's own: parameter importances and the Pareto front ---------------------------------------


def _optuna_figure(draw: Callable[[], Any]) -> Figure:
    """Call an ``optuna.visualization.matplotlib`` function without its style leaking out
    (it sets the ggplot style globally) and size and lay out its figure like ours."""
    with plt.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ax = draw()
    first = ax.flatten()[0] if isinstance(ax, np.ndarray) else ax
    fig: Figure = first.figure
    fig.set_size_inches(*SIZE)
    fig.set_layout_engine("constrained")
    return fig


def draw_importances(study: optuna.Study) -> Figure:
    """Optuna's fANOVA importances of the first objective (from completed trials only)."""
    from optuna.visualization import matplotlib as ovm

    target = target_of(study)
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if not done:
        raise ValueError("no completed trial to weigh the parameters by")
    several = len(study.directions) > 1
    fig = _optuna_figure(
        lambda: ovm.plot_param_importances(
            study, target=(lambda t: t.values[0]) if several else None, target_name=target.name
        )
    )
    for ax in fig.axes:
        if (legend := ax.get_legend()) is not None:
            legend.remove()  # one entry, the objective: the title says it
        ax.set_title(f"parameter importances for {target.name} (from {done} completed trials)", loc="left")
        fig.set_size_inches(SIZE[0], max(SIZE[1], 0.26 * len(ax.get_yticks()) + 1.5))  # a bar per parameter
    return fig


def draw_pareto(study: optuna.Study) -> Figure:
    from optuna.visualization import matplotlib as ovm

    return _optuna_figure(lambda: ovm.plot_pareto_front(study, target_names=study.metric_names))


def study_figures(study: optuna.Study, multi_objective: bool = False) -> dict[str, Callable[[], Figure]]:
    """The study's pictures by file name, each drawn when called: the Pareto front with several
    objectives; the intermediate values with one (Optuna keeps none with several)."""
    figures: dict[str, Callable[[], Figure]] = {}
    if multi_objective:
        figures["pareto_front"] = lambda: draw_pareto(study)
    figures["optimization_history"] = lambda: draw_history(study)
    figures["param_importances"] = lambda: draw_importances(study)
    figures["parallel_coordinate"] = lambda: draw_parallel(study)
    if not multi_objective:
        figures["intermediate_values"] = lambda: draw_intermediate(study)
    return figures
