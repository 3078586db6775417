"""The pictures read at a glance (issue 12), checked on a study like a real 60-trial search: most
trials stopped early (PRUNED after reporting a few epochs), a few completed, a few failed.

Every picture is drawn as a matplotlib figure and checked as drawn: each axes shows something, no
two pieces of text overlap or leave the figure, legends are small and inside the figure, and the
stopped-early trials are on the history and parallel-coordinate plots. The pictures are also saved
under ``test-artifacts/pictures/`` (git ignores it) for a person to look at.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pytest
import torch
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.text import Text
from matplotlib.transforms import Bbox
from optuna.trial import TrialState
from test_deliver_pictures import SMALL, epochs, png_pixels

from automl_cnn.deliver import viz
from automl_cnn.deliver.study_plots import study_figures
from automl_cnn.deliver.study_points import trial_points
from automl_cnn.engine.outcome import TrialAttrs
from automl_cnn.model.architecture import Architecture, ConvBlock
from automl_cnn.model.builder import build_model
from automl_cnn.space.sampling import sample_candidate
from automl_cnn.space.schema import load_space

optuna.logging.set_verbosity(optuna.logging.ERROR)

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "pictures"
N_TRIALS = 60
COMPLETED = {3, 11, 19, 28, 37, 46, 55}
FAILED = {6, 33}  # crashed: FAIL, no value
GATED = {14}  # broke a limit before training: PRUNED with outcome "failed", nothing reported
UNSTARTED = {50}  # stopped by the budget before its first epoch: PRUNED, nothing reported
WITH_VALUE = N_TRIALS - len(FAILED | GATED | UNSTARTED)
STOPPED = WITH_VALUE - len(COMPLETED)
GREY = to_rgba("0.5")


def _accuracy(params: dict[str, Any], epoch: int, noise: float) -> float:
    """A plausible validation accuracy: best near a learning rate of 1e-3, rising with epochs."""
    ceiling = 0.985 - 0.05 * abs(math.log10(params["train.learning_rate"]) + 3) - 0.01 * params["blocks"]
    return ceiling - (ceiling - 0.25) * math.exp(-epoch / 2.5) + noise


@pytest.fixture(scope="module")
def search_study() -> optuna.Study:
    space = load_space("default")
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=12))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["accuracy"])  # as services.study.create_study does
    rng = np.random.default_rng(12)
    for i in range(N_TRIALS):
        trial = study.ask()
        candidate = sample_candidate(trial, space)
        if i in FAILED:
            study.tell(trial, state=TrialState.FAIL)
            continue
        if i in GATED:
            TrialAttrs(outcome="failed", reason="over --max-params").write(trial)
            study.tell(trial, state=TrialState.PRUNED)
            continue
        last = candidate.training.epochs if i in COMPLETED else 0 if i in UNSTARTED else int(rng.integers(1, 6))
        value = float("nan")
        for epoch in range(1, last + 1):
            value = _accuracy(trial.params, epoch, float(rng.normal(0, 0.01)))
            trial.report(value, epoch)
        if i in COMPLETED:
            study.tell(trial, value)
        else:
            study.tell(trial, state=TrialState.PRUNED)
    return study


@pytest.fixture(scope="module")
def two_objective_study() -> optuna.Study:
    """Accuracy and parameters: Optuna takes no reports, so a trial stopped by the budget has no value."""
    space = load_space("default")
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["accuracy", "params"])
    for i in range(30):
        trial = study.ask()
        candidate = sample_candidate(trial, space)
        if i % 4 == 3:
            study.tell(trial, state=TrialState.PRUNED)
            continue
        filters = sum(b.filters for b in candidate.architecture.blocks)
        study.tell(trial, (_accuracy(trial.params, 15, 0.0), float(filters * 2000)))
    return study


# -- checks on a drawn figure -----------------------------------------------------------------------


def drawn_texts(fig: Figure) -> list[Text]:
    """Every piece of text the figure actually draws (titles, labels, tick labels in view, legend
    entries, annotations), in drawing order."""
    drawn: list[Text] = []
    draw = Text.draw

    def record(self: Text, renderer: Any) -> None:
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)
        draw(self, renderer)

    with mock.patch.object(Text, "draw", record):
        fig.canvas.draw()
    return list(dict.fromkeys(drawn))


def _overlap(a: Bbox, b: Bbox, tolerance: float = 1.0) -> bool:
    return a.x0 < b.x1 - tolerance and b.x0 < a.x1 - tolerance and a.y0 < b.y1 - tolerance and b.y0 < a.y1 - tolerance


def _inside(inner: Bbox, outer: Bbox, tolerance: float = 1.0) -> bool:
    return (
        inner.x0 >= outer.x0 - tolerance
        and inner.y0 >= outer.y0 - tolerance
        and inner.x1 <= outer.x1 + tolerance
        and inner.y1 <= outer.y1 + tolerance
    )


def legends(fig: Figure) -> list[Legend]:
    return [*fig.legends, *(leg for ax in fig.axes if (leg := ax.get_legend()) is not None)]


def assert_legible(fig: Figure) -> None:
    """Content in every axes, no two texts overlapping, everything and every legend inside the figure."""
    texts = drawn_texts(fig)
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    assert boxes, "a picture without a word"
    outside = [text for text, box in boxes if not _inside(box, fig.bbox)]
    assert not outside, f"text out of the figure: {outside}"
    clashes = [(a, b) for (a, ba), (b, bb) in itertools.combinations(boxes, 2) if _overlap(ba, bb)]
    assert not clashes, f"overlapping text: {clashes[:5]}"
    for ax in fig.axes:
        if ax.get_visible():
            assert ax.has_data() or ax.images, f"an empty axes: {ax.get_title()!r}"
    for legend in legends(fig):
        assert 1 <= len(legend.get_texts()) <= 10, [t.get_text() for t in legend.get_texts()]
        assert _inside(legend.get_window_extent(renderer), fig.bbox), "legend out of the figure"


@pytest.fixture()
def figure_of() -> Iterator[list[Figure]]:
    """Figures the test draws, closed afterwards."""
    figures: list[Figure] = []
    yield figures
    for fig in figures:
        plt.close(fig)


def save(fig: Figure, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    fig.savefig(path, dpi=viz.DPI, bbox_inches="tight")
    return path


# -- the study's pictures ---------------------------------------------------------------------------


def test_the_fixture_is_like_a_search_that_stopped_most_trials(search_study: optuna.Study) -> None:
    states = [t.state for t in search_study.trials]
    assert states.count(TrialState.COMPLETE) == len(COMPLETED)
    assert states.count(TrialState.PRUNED) == N_TRIALS - len(COMPLETED) - len(FAILED)
    points = trial_points(search_study)
    assert len(points) == WITH_VALUE and sum(p.stopped for p in points) == STOPPED
    stopped = {p.number: p.value for p in points if p.stopped}
    for t in search_study.trials:
        if t.number in stopped:  # at its last reported value
            assert stopped[t.number] == t.intermediate_values[max(t.intermediate_values)]
    kinds = {type(v) for p in points for v in p.params.values()}
    assert {str, int, float} <= kinds  # categorical and numeric parameters, like a real space


@pytest.mark.parametrize(
    "name", ["optimization_history", "param_importances", "parallel_coordinate", "intermediate_values"]
)
def test_every_study_picture_is_legible(search_study: optuna.Study, figure_of: list[Figure], name: str) -> None:
    fig = study_figures(search_study)[name]()
    figure_of.append(fig)
    assert_legible(fig)
    png_pixels(save(fig, name))


def test_the_history_shows_stopped_trials_at_their_last_value(
    search_study: optuna.Study, figure_of: list[Figure]
) -> None:
    fig = study_figures(search_study)["optimization_history"]()
    figure_of.append(fig)
    (ax,) = fig.axes
    groups = {c.get_gid(): c for c in ax.collections if isinstance(c, PathCollection)}
    assert len(groups["completed"].get_offsets()) == len(COMPLETED)
    stopped = groups["stopped"]
    assert len(stopped.get_offsets()) == STOPPED
    assert not stopped.get_facecolor().size or stopped.get_facecolor()[:, 3].max() == 0  # hollow
    expected = {p.number: p.value for p in trial_points(search_study) if p.stopped}
    assert {int(x): y for x, y in stopped.get_offsets()} == pytest.approx(expected)
    (legend,) = legends(fig)
    labels = [t.get_text() for t in legend.get_texts()]
    assert f"stopped early: last reported value ({STOPPED})" in labels and f"completed ({len(COMPLETED)})" in labels
    best = max(v for t in search_study.trials if t.state == TrialState.COMPLETE for v in t.values)
    (line,) = ax.lines  # the best completed value so far
    assert max(line.get_ydata()) == pytest.approx(best)


def trial_lines(fig: Figure) -> dict[int, Line2D]:
    return {
        int(line.get_gid()[6:]): line for ax in fig.axes for line in ax.lines if (line.get_gid() or "")[:6] == "trial "
    }


def test_parallel_coordinates_draw_every_trial_with_a_value(
    search_study: optuna.Study, figure_of: list[Figure]
) -> None:
    fig = study_figures(search_study)["parallel_coordinate"]()
    figure_of.append(fig)
    lines = trial_lines(fig)
    points = {p.number: p for p in trial_points(search_study)}
    assert set(lines) == set(points)  # the stopped-early ones too; not the failed or unstarted
    dashed = {n for n, line in lines.items() if line.get_linestyle() == "--"}
    assert dashed == {n for n, p in points.items() if p.stopped}
    assert all(to_rgba(lines[n].get_color()) == GREY for n in dashed)
    # the first axis is the objective: each line crosses it in the order of the trials' values
    order = sorted(points, key=lambda n: points[n].value)
    crossings = [lines[n].get_ydata()[0] for n in order]
    assert crossings == sorted(crossings) and crossings[0] == 0.0 and crossings[-1] == 1.0
    labels = [t.get_text() for leg in legends(fig) for t in leg.get_texts()]
    assert f"stopped early: last reported value ({STOPPED})" in labels
    assert fig.axes[0].get_xticklabels()[0].get_text() == "accuracy"


def test_intermediate_values_are_coloured_by_outcome(search_study: optuna.Study, figure_of: list[Figure]) -> None:
    fig = study_figures(search_study)["intermediate_values"]()
    figure_of.append(fig)
    lines = trial_lines(fig)
    reported = {t.number for t in search_study.trials if t.intermediate_values and t.number not in GATED}
    assert set(lines) == reported
    colours = {n: to_rgba(line.get_color()) for n, line in lines.items()}
    assert {n for n, c in colours.items() if c != GREY} == COMPLETED
    (legend,) = legends(fig)  # outcomes, not 56 trials
    assert [t.get_text()[:13] for t in legend.get_texts()] == ["completed (7)", "stopped early"]


def test_a_search_that_stopped_every_trial_still_shows_them(figure_of: list[Figure]) -> None:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=5))
    for _ in range(12):
        trial = study.ask()
        trial.suggest_float("train.learning_rate", 1e-4, 1e-1, log=True)
        trial.suggest_categorical("block1.activation", ["relu", "gelu"])
        for epoch in (1, 2):
            trial.report(0.8, epoch)  # every trial the same: a flat objective axis
        study.tell(trial, state=TrialState.PRUNED)
    figures = study_figures(study)
    for name in ("optimization_history", "parallel_coordinate", "intermediate_values"):
        fig = figures[name]()
        figure_of.append(fig)
        assert_legible(fig)
        labels = [t.get_text() for leg in legends(fig) for t in leg.get_texts()]
        assert len(labels) == 1 and labels[0].startswith("stopped early")  # no completed, no best
    assert len(trial_lines(figure_of[1])) == 12
    with pytest.raises(ValueError):  # Optuna weighs parameters by completed trials only: no picture
        figures["param_importances"]()


def test_study_plots_writes_the_same_files(search_study: optuna.Study, two_objective_study: optuna.Study) -> None:
    style = {k: plt.rcParams[k] for k in ("axes.facecolor", "axes.grid", "axes.prop_cycle")}
    plots = viz.study_plots(search_study, ARTIFACTS)
    assert set(plots) == {"optimization_history", "param_importances", "parallel_coordinate", "intermediate_values"}
    several = viz.study_plots(two_objective_study, ARTIFACTS / "two_objectives", multi_objective=True)
    assert set(several) == {"pareto_front", "optimization_history", "param_importances", "parallel_coordinate"}
    for path in [*plots.values(), *several.values()]:
        png_pixels(path)
    # Optuna's functions set the ggplot style globally: it must not leak into later pictures
    assert {k: plt.rcParams[k] for k in style} == style


@pytest.mark.parametrize("name", ["pareto_front", "optimization_history", "param_importances", "parallel_coordinate"])
def test_pictures_of_two_objectives_are_legible(
    two_objective_study: optuna.Study, figure_of: list[Figure], name: str
) -> None:
    fig = study_figures(two_objective_study, multi_objective=True)[name]()
    figure_of.append(fig)
    assert_legible(fig)
    if name == "parallel_coordinate":
        assert len(trial_lines(fig)) == sum(t.state == TrialState.COMPLETE for t in two_objective_study.trials)


# -- the winner's pictures --------------------------------------------------------------------------

LONG_TITLE = "trial 37: " + " | ".join(["conv128k5x2-max2-d0.25"] * 5 + ["gap-fc256-d0.30"])


def test_the_learning_curves_title_clears_the_panel_titles(figure_of: list[Figure]) -> None:
    for title in ("trial 3: conv8 | gap", LONG_TITLE):
        fig = viz.draw_learning_curves(epochs(15), title)
        figure_of.append(fig)
        assert_legible(fig)
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        (suptitle,) = [t for t in fig.texts if t.get_text() == fig.get_suptitle() != ""]
        top = suptitle.get_window_extent(renderer)
        for ax in fig.axes:
            assert not _overlap(top, ax.title.get_window_extent(renderer))
            assert top.y0 >= ax.title.get_window_extent(renderer).y1
    png_pixels(save(fig, "learning_curves"))


@pytest.mark.parametrize("names", [tuple("0123456789"), tuple(f"a long class name {i}" for i in range(8))])
def test_confusion_matrix_is_legible(figure_of: list[Figure], names: tuple[str, ...]) -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(len(names)), 40)
    y_pred = np.where(rng.random(len(y)) < 0.8, y, rng.integers(0, len(names), len(y)))
    fig = viz.draw_confusion_matrix(y, y_pred, names)
    figure_of.append(fig)
    assert_legible(fig)
    png_pixels(save(fig, f"confusion_matrix_{len(names)}"))


@pytest.mark.parametrize("filters", [12, 32])
def test_first_layer_filters_are_legible(figure_of: list[Figure], filters: int) -> None:
    torch.manual_seed(0)
    network = build_model(Architecture((ConvBlock(filters=filters),)), (1, 16, 16), 10)
    fig = viz.draw_first_layer_filters(network)
    figure_of.append(fig)
    assert_legible(fig)
    shown = [ax for ax in fig.axes if ax.get_visible() and ax.images]
    assert len(shown) == filters
    png_pixels(save(fig, f"first_layer_filters_{filters}"), min_size=(200, 100))


def test_architecture_diagram_is_legible(figure_of: list[Figure]) -> None:
    fig = viz.draw_architecture(build_model(SMALL, (1, 28, 28), 10), (1, 28, 28), LONG_TITLE)
    figure_of.append(fig)
    assert_legible(fig)
    png_pixels(save(fig, "architecture"))
