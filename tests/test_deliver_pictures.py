"""Unit tests of what a user takes home: the pictures (automl_cnn.deliver.viz), the Markdown and
HTML reports (automl_cnn.deliver.report) and the summary of a search (automl_cnn.deliver.result).

Pictures are drawn from small real models and small real Optuna studies and checked as PNG files.
"""

from __future__ import annotations

import html.parser
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch
from PIL import Image

from automl_cnn.deliver.parallel_plot import top_params
from automl_cnn.deliver.report import html_report, layer_table, markdown_table, search_report, tables
from automl_cnn.deliver.result import SearchResult, accuracy_text
from automl_cnn.deliver.viz import (
    architecture_diagram,
    confusion_matrix,
    first_layer_filters,
    learning_curves,
    study_plots,
)
from automl_cnn.engine.records import TrialRecord
from automl_cnn.model.architecture import Architecture, Candidate, ConvBlock, Dense, Head, TrainConfig
from automl_cnn.model.builder import build_model
from automl_cnn.model.measures import EpochResult
from automl_cnn.model.profile import profile
from automl_cnn.model.trained import TrainedModel

optuna.logging.set_verbosity(optuna.logging.ERROR)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SMALL = Architecture(
    (ConvBlock(filters=8), ConvBlock(filters=16, convs=2, dropout=0.25)),
    Head(type="global_avg", dense=(Dense(units=24, dropout=0.3),)),
)
RESIDUAL = Architecture(
    (ConvBlock(filters=8, pooling="none"), ConvBlock(type="residual", filters=16, convs=2, pooling="avg")),
    Head(type="flatten"),
)


def png_pixels(path: Path, min_size: tuple[int, int] = (300, 150)) -> np.ndarray:
    """Check ``path`` is a valid PNG of a sensible size with real content; return its RGB pixels."""
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG"
        width, height = img.size
        assert width >= min_size[0] and height >= min_size[1], img.size
        assert width <= 3000 and height <= 3000, img.size
        rgb = np.asarray(img.convert("RGB"))
    packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    assert len(np.unique(packed)) > 16, "a flat picture"
    assert 0.01 < ink(rgb) < 0.99
    return rgb


def ink(rgb: np.ndarray) -> float:
    """The share of pixels that are not (nearly) white."""
    return float((rgb.min(axis=2) < 235).mean())


def colourful(rgb: np.ndarray) -> float:
    """The share of clearly coloured pixels (markers, lines, bars; not grey axes or text)."""
    return float(((rgb.max(axis=2).astype(int) - rgb.min(axis=2)) > 60).mean())


def epochs(n: int) -> list[EpochResult]:
    return [
        EpochResult(
            epoch=e,
            train_loss=2.0 / e,
            train_acc=1 - 0.5 / e,
            val_loss=2.2 / e + 0.05 * e,
            val_acc=1 - 0.6 / e,
            seconds=1.5,
            lr=1e-3,
        )
        for e in range(1, n + 1)
    ]


# -- real Optuna studies ----------------------------------------------------------------------------


def _objective(trial: optuna.Trial, report: bool = True) -> float:
    lr = trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
    filters = trial.suggest_int("filters", 8, 64)
    act = trial.suggest_categorical("activation", ["relu", "gelu"])
    if act == "gelu":  # a conditional parameter, sampled in some trials only
        trial.suggest_float("dropout", 0.0, 0.5)
    score = 0.9 - abs(np.log10(lr) + 2) * 0.05 + filters / 1000
    if report:
        for epoch in range(3):
            trial.report(score - 0.1 * (2 - epoch), epoch)
    return score


@pytest.fixture(scope="module")
def study() -> optuna.Study:
    s = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    s.optimize(_objective, n_trials=8)
    return s


@pytest.fixture(scope="module")
def two_objective_study() -> optuna.Study:
    s = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        s.set_metric_names(["accuracy", "params"])
    s.optimize(lambda t: (_objective(t, report=False), float(t.params["filters"] * 1000)), n_trials=8)
    return s


@pytest.fixture(scope="module")
def study_pictures(study: optuna.Study, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("study") / "out" / "plots"
    return folder, study_plots(study, folder)


def test_study_plots_single_objective(study_pictures: tuple[Path, dict[str, Path]]) -> None:
    folder, plots = study_pictures
    assert set(plots) == {"optimization_history", "param_importances", "parallel_coordinate", "intermediate_values"}
    for name, path in plots.items():
        assert path == folder / f"{name}.png"
        png_pixels(path)
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.png" for n in plots)


def test_study_plots_several_objectives_add_the_pareto_front(two_objective_study: optuna.Study, tmp_path: Path) -> None:
    plots = study_plots(two_objective_study, tmp_path, multi_objective=True)
    # Optuna keeps no intermediate values with several objectives: that plot is left out
    assert set(plots) == {"pareto_front", "optimization_history", "param_importances", "parallel_coordinate"}
    for path in plots.values():
        png_pixels(path)


def test_a_study_without_results_draws_no_points(study_pictures: tuple[Path, dict[str, Path]], tmp_path: Path) -> None:
    _, drawn = study_pictures
    empty = optuna.create_study(direction="maximize")
    blank = study_plots(empty, tmp_path / "empty")  # no error: too few trials is not the search's fault
    assert "optimization_history" in blank
    with Image.open(drawn["optimization_history"]) as full, Image.open(blank["optimization_history"]) as none:
        assert colourful(np.asarray(full.convert("RGB"))) > 0.001  # the trials' markers and best line
        assert colourful(np.asarray(none.convert("RGB"))) == 0.0


def test_parallel_coordinates_show_the_most_sampled_parameters(study: optuna.Study) -> None:
    with_dropout = sum("dropout" in t.params for t in study.trials)
    assert 0 < with_dropout < len(study.trials), "the fixture should sample the conditional parameter sometimes"
    top = top_params(study)
    assert top is not None
    assert set(top[:3]) == {"learning_rate", "filters", "activation"}
    assert top[3:] == ["dropout"]  # sampled in fewer trials than the unconditional ones: last
    assert len(top_params(study, count=2) or []) == 2
    assert top_params(optuna.create_study()) is None


# -- pictures of the winner -------------------------------------------------------------------------


def test_learning_curves(tmp_path: Path) -> None:
    path = learning_curves(epochs(6), tmp_path / "sub" / "curves.png", "trial 3: conv8 | gap")
    assert path == tmp_path / "sub" / "curves.png"
    rgb = png_pixels(path)
    assert rgb.shape[1] > rgb.shape[0]  # two panels side by side


def test_confusion_matrix_shows_the_predictions(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 10)
    perfect = png_pixels(confusion_matrix(y, y, ("a", "b", "c", "d"), tmp_path / "perfect.png"))
    noisy = png_pixels(confusion_matrix(y, rng.integers(0, 4, len(y)), ("a", "b", "c", "d"), tmp_path / "noisy.png"))
    shifted = png_pixels(confusion_matrix(y, (y + 1) % 4, ("a", "b", "c", "d"), tmp_path / "shifted.png"))
    assert perfect.shape != noisy.shape or not np.array_equal(perfect, noisy)
    # coloured by each true class's share: every prediction wrong moves the colour off the
    # diagonal (as much colour, elsewhere); predictions spread over classes give paler cells
    assert not np.array_equal(perfect, shifted) and abs(colourful(shifted) - colourful(perfect)) < 0.01
    assert colourful(noisy) < colourful(perfect) and colourful(noisy) > 0.02


@pytest.mark.parametrize("k", [21])
def test_confusion_matrix_with_many_classes(tmp_path: Path, k: int) -> None:
    y = np.arange(k).repeat(3)
    names = tuple(f"a rather long class name {i}" for i in range(k))
    png_pixels(confusion_matrix(y, np.roll(y, 1), names, tmp_path / "cm.png"))


def test_first_layer_filters(tmp_path: Path) -> None:
    torch.manual_seed(0)
    few = build_model(Architecture((ConvBlock(filters=8),)), (1, 8, 8), 3)
    many = build_model(Architecture((ConvBlock(filters=32, kernel_size=5),)), (1, 8, 8), 3)
    rgb = build_model(Architecture((ConvBlock(filters=16),)), (3, 8, 8), 3)
    a = png_pixels(first_layer_filters(few, tmp_path / "few.png"), min_size=(200, 100))
    b = png_pixels(first_layer_filters(many, tmp_path / "many.png"), min_size=(200, 100))
    c = png_pixels(first_layer_filters(rgb, tmp_path / "rgb.png"), min_size=(200, 100))
    assert b.shape[0] > a.shape[0]  # 32 kernels take four rows, 8 take one
    # colour kernels are drawn in colour; one-channel kernels in grey
    assert colourful(a) == colourful(b) == 0.0 < colourful(c)


def test_architecture_diagram_grows_with_the_network(tmp_path: Path) -> None:
    small = build_model(Architecture((ConvBlock(filters=8),)), (1, 16, 16), 10)
    deep = build_model(SMALL, (1, 16, 16), 10)
    a = png_pixels(architecture_diagram(small, (1, 16, 16), tmp_path / "a.png", "small"), min_size=(300, 100))
    b = png_pixels(architecture_diagram(deep, (1, 16, 16), tmp_path / "b.png", "deep"))
    assert b.shape[0] > a.shape[0]
    png_pixels(architecture_diagram(build_model(RESIDUAL, (3, 8, 8), 5), (3, 8, 8), tmp_path / "r.png", "res"))


# -- reports ---------------------------------------------------------------------------------------


def test_layer_table_rows_shapes_and_parameters() -> None:
    net = build_model(RESIDUAL, (3, 8, 8), 5)
    net.train()
    rows = layer_table(net, (3, 8, 8))
    assert net.training, "the network's mode is restored"
    kinds = [r.kind for r in rows]
    assert kinds.count("Residual") == 1  # a residual block is one row
    assert rows[0].name == "normalize" and rows[0].output_shape == (3, 8, 8) and rows[0].params == 0
    assert rows[-1].kind == "Linear" and rows[-1].output_shape == (5,)
    assert sum(r.params for r in rows) == sum(p.numel() for p in net.parameters())
    residual = next(r for r in rows if r.kind == "Residual")
    assert residual.output_shape == (16, 8, 8)
    assert next(r for r in rows if r.kind == "AvgPool2d").output_shape == (16, 4, 4)


def test_markdown_table() -> None:
    text = markdown_table(["a", "b"], [[1, "x"], [2.5, None]])
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1 | x |", "| 2.5 | None |"]


def make_summary(**changes: Any) -> dict[str, Any]:
    prof = profile(SMALL, (1, 8, 8), 10)
    candidate = Candidate(SMALL, TrainConfig(epochs=7, learning_rate=0.003))
    summary: dict[str, Any] = {
        "data": "digits",
        "architecture": SMALL.describe(),
        "val_accuracy": 0.95123,
        "test_accuracy_text": "0.9387",
        "params": prof.params,
        "flops": prof.flops,
        "latency_ms": 0.4321,
        "counts": {"completed": 5, "pruned": 3, "failed": 1},
        "training": {k: v for k, v in candidate.flat_params().items() if k.startswith(("train.", "augment."))},
        "tracking_uri": "sqlite:///tmp/mlflow.db",
        "experiment": "7",
        "parent_run_id": "abc123",
        "fingerprint": "f00dfeed",
        "split_seed": 11,
        "best_trial": 4,
        "pick_rule": "best accuracy",
        "pareto": [],
        "final_table": [],
        "model_uri": "models:/automl-cnn-digits@champion",
        "model_version": "2",
        "wall_seconds": 123.4,
    }
    summary.update(changes)
    return summary


def test_search_report_holds_the_key_figures() -> None:
    summary = make_summary()
    net = build_model(SMALL, (1, 8, 8), 10)
    text = search_report(summary, net, (1, 8, 8))
    assert text.startswith("# automl-cnn: digits\n")
    assert f"Best architecture: `{SMALL.describe()}`" in text
    for line in (
        "| validation accuracy (search) | 0.9512 |",
        "| test accuracy (held out) | 0.9387 |",
        f"| parameters | {summary['params']:,} |",
        f"| FLOPs per image | {summary['flops']:,} |",
        "| latency per image (1 CPU thread) | 0.43 ms |",
        "| trials | completed: 5, pruned: 3, failed: 1 |",
        "| wall time | 123 s |",
        "| registered model | models:/automl-cnn-digits@champion (version 2) |",
        "| data | digits (fingerprint f00dfeed, split seed 11) |",
        "| train.epochs | 7 |",
        "| train.learning_rate | 0.003 |",
    ):
        assert line in text, line
    assert "## Architecture" in text and "| normalize | Normalize | 1x8x8 | 0 |" in text
    assert "Pareto front" not in text and "Final evaluation" not in text


def test_report_tables_for_a_pareto_front_and_several_finalists() -> None:
    pareto = [
        {"trial": 4, "accuracy": 0.95, "params": 12000.0, "architecture": "conv8"},
        {"trial": 2, "accuracy": 0.91, "params": 3500.0, "architecture": "conv4"},
    ]
    final = [
        {"trial": 4, "val_accuracy": 0.95, "test_accuracy": "0.9400", "architecture": "conv8"},
        {"trial": 2, "val_accuracy": 0.91, "test_accuracy": "0.9000", "architecture": "conv4"},
    ]
    summary = make_summary(pareto=pareto, final_table=final, latency_ms=None)
    net = build_model(SMALL, (1, 8, 8), 10)
    titles = [t.title for t in tables(summary, net, (1, 8, 8))]
    assert titles == [
        "Metrics",
        "Training settings",
        "Pareto front (delivered: best accuracy)",
        "Final evaluation (retrained on train + half of validation)",
        "Architecture",
    ]
    text = search_report(summary, net, (1, 8, 8))
    assert "| 4 | 0.9500 | 12,000 | conv8 |" in text
    assert "| 2 | 0.9100 | 0.9000 | conv4 |" in text
    assert "| latency per image (1 CPU thread) | 0.00 ms |" in text


class _Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tables = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        self.tables += tag == "table"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_report_links_the_pictures_and_lists_the_trials(tmp_path: Path) -> None:
    prof = profile(SMALL, (1, 8, 8), 10)
    cand = Candidate(SMALL)
    records = [
        TrialRecord(
            number=0, seed=1, run_id="r0", candidate=cand, profile=prof, outcome="completed", history=epochs(3)
        ),
        TrialRecord(
            number=1,
            seed=2,
            run_id="r1",
            candidate=cand,
            profile=prof,
            outcome="pruned",
            reason="stopped by <asha> at epoch 1",
            history=epochs(1),
        ),
        TrialRecord(number=2, seed=3, run_id="r2", candidate=cand, outcome="failed", reason="feature map below 1x1"),
    ]
    curves = learning_curves(epochs(3), tmp_path / "plots" / "learning_curves.png", "t")
    page = html_report(
        make_summary(), build_model(SMALL, (1, 8, 8), 10), (1, 8, 8), records, {"learning_curves": curves}, tmp_path
    )
    parser = _Page()
    parser.feed(page)
    assert parser.images == ["plots/learning_curves.png"]
    assert (tmp_path / parser.images[0]).is_file()
    assert parser.tables == 4  # metrics, settings, architecture, trials
    text = "".join(parser.text)
    assert "stopped by <asha> at epoch 1" in text  # escaped in the page, read back intact
    assert "<asha>" not in page
    assert f"{prof.params:,}" in text and "feature map below 1x1" in text
    assert "learning curves" in text  # the caption
    assert "0.8000" in text and "0.4000" in text  # each trial's last validation accuracy


# -- the result of a search -------------------------------------------------------------------------


def make_result(tmp_path: Path, **changes: Any) -> SearchResult:
    prof = profile(SMALL, (1, 8, 8), 10)
    cand = Candidate(SMALL, TrainConfig(epochs=3))
    net = build_model(SMALL, (1, 8, 8), 10)
    model = TrainedModel.from_weights(
        cand,
        net.state_dict(),
        (1, 8, 8),
        tuple(str(i) for i in range(10)),
        (0.5,),
        (0.25,),
        info={"params": prof.params, "flops": prof.flops},
    )
    fields: dict[str, Any] = {
        "model": model,
        "candidate": cand,
        "best_trial": 6,
        "val_accuracy": 0.98765,
        "test_accuracy": 0.97531,
        "test_accuracy_std": None,
        "test_accuracies": [0.97531],
        "counts": {"completed": 3, "pruned": 62, "failed": 5},
        "wall_seconds": 569.6,
        "out_dir": tmp_path / "runs" / "digits-1",
        "tracking_uri": "sqlite:///x/mlflow.db",
        "experiment_id": "1",
        "parent_run_id": "3bca",
        "model_uri": "models:/automl-cnn-digits@champion",
        "model_version": "1",
    }
    fields.update(changes)
    return SearchResult(**fields)


def test_summary_holds_the_key_figures(tmp_path: Path) -> None:
    result = make_result(tmp_path)
    prof = profile(SMALL, (1, 8, 8), 10)
    lines = result.summary().splitlines()
    assert lines[0] == f"best architecture   {SMALL.describe()}"
    assert lines[1] == f"                    {prof.params:,} parameters, {prof.flops:,} FLOPs (trial 6)"
    for line in (
        "validation accuracy 0.9877",
        "test accuracy       0.9753",
        "trials              3 completed, 62 pruned, 5 failed",
        "wall time           570 s",
        f"model folder        {tmp_path / 'runs' / 'digits-1'}",
        "registered model    models:/automl-cnn-digits@champion (version 1)",
        "MLflow              sqlite:///x/mlflow.db (experiment 1, run 3bca)",
        "browse              automl-cnn ui --tracking-uri sqlite:///x/mlflow.db",
    ):
        assert line in lines, line
    assert "Pareto" not in result.summary() and "final evaluation" not in result.summary()


def test_summary_with_several_seeds_a_front_and_finalists(tmp_path: Path) -> None:
    pareto = [
        {"trial": 6, "accuracy": 0.98, "params": 123456.0, "architecture": "big"},
        {"trial": 2, "accuracy": 0.91, "params": 2048.0, "architecture": "small"},
    ]
    final = [
        {"trial": 6, "val_accuracy": 0.98, "test_accuracy": "0.9700", "architecture": "big"},
        {"trial": 2, "val_accuracy": 0.91, "test_accuracy": "0.9000", "architecture": "small"},
    ]
    result = make_result(
        tmp_path,
        test_accuracies=[0.97, 0.95, 0.96],
        pareto=pareto,
        final_table=final,
        pick_rule="most accurate within 1%",
    )
    text = result.summary()
    assert "test accuracy       0.9753 (delivered model); this design: 0.9600 ± 0.0100 over 3 seeds" in text
    assert "Pareto front (2 trials; delivered: most accurate within 1%):" in text
    front = [line for line in text.splitlines() if line.rstrip().endswith(("big", "small")) and "trial" not in line]
    assert front[0].startswith("*") and "0.9800" in front[0] and "123,456" in front[0]
    assert front[1].startswith(" ") and "2,048" in front[1]
    assert "final evaluation (retrained on train + half of validation, scored on test):" in text
    assert "* trial    6  val 0.9800  test 0.9700  big" in text
    assert "  trial    2  val 0.9100  test 0.9000  small" in text


def test_accuracy_text() -> None:
    assert accuracy_text([0.91234]) == "0.9123"
    assert accuracy_text([0.9, 0.8]) == "0.8500 ± 0.0707 over 2 seeds"
