"""Pictures of a search and of its winner, as PNG files (matplotlib, no display needed).

Study plots are Optuna's own (``optuna.visualization.matplotlib``); the winner's plots are
drawn here from its recorded history, its test predictions and its weights.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import optuna
from torch import nn

from automl_cnn.deliver.report import layer_table
from automl_cnn.model.measures import EpochResult

log = logging.getLogger(__name__)
DPI = 100


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _figure_of(ax: Any) -> Any:
    if isinstance(ax, np.ndarray):
        ax = ax.flatten()[0]
    return ax.figure


def study_plots(study: optuna.Study, folder: Path, multi_objective: bool = False) -> dict[str, Path]:
    """Optimisation history, parameter importances, parallel coordinates (and the Pareto front)."""
    from optuna.visualization import matplotlib as ovm

    plots: dict[str, Callable[[], Any]] = {}
    # with several objectives the single-objective views show the first one (accuracy)
    target: dict[str, Any] = {}
    if multi_objective:
        names = study.metric_names or []
        target = {"target": lambda t: t.values[0], "target_name": names[0] if names else "objective 0"}
        plots["pareto_front"] = lambda: ovm.plot_pareto_front(study, target_names=study.metric_names)
    plots["optimization_history"] = lambda: ovm.plot_optimization_history(study, **target)
    plots["param_importances"] = lambda: ovm.plot_param_importances(study, **target)
    plots["parallel_coordinate"] = lambda: ovm.plot_parallel_coordinate(study, params=_top_params(study), **target)
    if not multi_objective:  # several objectives: Optuna keeps no intermediate values
        plots["intermediate_values"] = lambda: ovm.plot_intermediate_values(study)
    out = {}
    for name, make in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = make()
                fig = _figure_of(ax)
                fig.set_size_inches(9, 5.5)
                out[name] = _save(fig, folder / f"{name}.png")
        except Exception as exc:  # too few trials for a plot is not an error of the search
            log.info("skipped plot %s: %s", name, exc)
            plt.close("all")
    return out


def _top_params(study: optuna.Study, k: int = 8) -> list[str] | None:
    """The most often sampled parameters (a plot of every conditional parameter is unreadable)."""
    from collections import Counter

    counts: Counter[str] = Counter()
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        counts.update(t.params.keys())
    return [p for p, _ in counts.most_common(k)] or None


def learning_curves(history: list[EpochResult], path: Path, title: str) -> Path:
    """Train versus validation loss and accuracy per epoch: the overfitting view."""
    epochs = [e.epoch for e in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(epochs, [e.train_loss for e in history], "o-", label="train")
    a.plot(epochs, [e.val_loss for e in history], "o-", label="validation")
    a.set(xlabel="epoch", ylabel="loss", title="loss")
    b.plot(epochs, [e.train_acc for e in history], "o-", label="train")
    b.plot(epochs, [e.val_acc for e in history], "o-", label="validation")
    b.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return _save(fig, path)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, class_names: tuple[str, ...], path: Path) -> Path:
    k = len(class_names)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    size = min(16, 3 + 0.5 * k)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ticks = np.arange(k)
    labels = [c[:12] for c in class_names]
    ax.set_xticks(ticks, labels, rotation=90 if k > 10 else 0)
    ax.set_yticks(ticks, labels)
    ax.set(xlabel="predicted", ylabel="true", title=f"test confusion matrix (accuracy {np.trace(cm) / cm.sum():.4f})")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(
                    j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black"
                )
    return _save(fig, path)


def first_layer_filters(network: nn.Module, path: Path) -> Path:
    """The first convolution's kernels as small images (one per output channel)."""
    conv = next(m for m in network.modules() if isinstance(m, nn.Conv2d))
    w = conv.weight.detach().float().cpu()  # out, in, k, k
    kernels = w.permute(0, 2, 3, 1).numpy() if w.shape[1] == 3 else w.mean(1).numpy()  # RGB or one map
    n = min(len(kernels), 64)
    cols = min(8, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(6.0, cols * 1.1), max(2.6, rows * 1.1 + 0.5)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            k = kernels[i]
            k = (k - k.min()) / max(float(k.max() - k.min()), 1e-8)
            ax.imshow(k, cmap=None if k.ndim == 3 else "gray", interpolation="nearest")
    fig.suptitle(f"first-layer filters ({w.shape[2]}x{w.shape[3]}, {len(kernels)} channels)")
    return _save(fig, path)


def architecture_diagram(network: nn.Module, input_shape: tuple[int, int, int], path: Path, title: str) -> Path:
    """The layers top to bottom, with output shapes and parameter counts."""
    rows = layer_table(network, input_shape)
    fig_h = 0.38 * (len(rows) + 2) + 0.6
    fig, ax = plt.subplots(figsize=(8, fig_h))
    ax.axis("off")
    colours = {"Conv2d": "#9ecae1", "Residual": "#6baed6", "Linear": "#fdae6b", "BatchNorm2d": "#e5e5e5"}
    y = len(rows) + 1
    ax.text(0.02, y, f"input {'x'.join(map(str, input_shape))}", va="center", fontsize=9, family="monospace")
    for r in rows:
        y -= 1
        ax.add_patch(plt.Rectangle((0.0, y - 0.4), 1.0, 0.8, color=colours.get(r.kind, "#f0f0f0"), ec="#888"))
        shape = "x".join(map(str, r.output_shape))
        text = f"{r.name:<22} {r.kind:<17} {shape:>12} {r.params:>10,}"
        ax.text(0.02, y, text, va="center", fontsize=8, family="monospace")
    ax.set_xlim(0, 1)
    ax.set_ylim(y - 1, len(rows) + 1.6)
    total = sum(r.params for r in rows)
    ax.set_title(f"{title}\n{total:,} parameters", fontsize=10)
    return _save(fig, path)
