"""Pictures of a search and of its winner, as PNG files (matplotlib, no display needed).

The study's pictures are drawn in :mod:`automl_cnn.deliver.study_plots`; the winner's are drawn
here from its recorded history, its test predictions and its weights. Each picture has a
``draw_*`` function that returns the figure (for tests to inspect) and a function that saves it.
"""

from __future__ import annotations

import logging
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import optuna
from matplotlib.figure import Figure
from torch import nn

from automl_cnn.deliver.report import layer_table
from automl_cnn.deliver.study_plots import study_figures
from automl_cnn.model.measures import EpochResult

log = logging.getLogger(__name__)
DPI = 100


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def study_plots(study: optuna.Study, folder: Path, multi_objective: bool = False) -> dict[str, Path]:
    """Optimisation history, parameter importances, parallel coordinates, intermediate values
    (with several objectives: the Pareto front instead of the intermediate values)."""
    out = {}
    for name, draw in study_figures(study, multi_objective).items():
        try:
            out[name] = _save(draw(), folder / f"{name}.png")
        except Exception as exc:  # too few trials for a plot is not an error of the search
            log.info("skipped plot %s: %s", name, exc)
            plt.close("all")
    return out


def _wrap(title: str, width: int) -> str:
    """A long title (an architecture's description) broken between its parts."""
    return "\n".join(textwrap.wrap(title, width, break_on_hyphens=False)) or title


def _short(name: str, width: int) -> str:
    """A long name cut in the middle, so that names differing at their end stay apart."""
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return f"{name[:head]}…{name[len(name) - (width - 1 - head) :]}"


def learning_curves(history: Sequence[EpochResult], path: Path, title: str) -> Path:
    """Train versus validation loss and accuracy per epoch: the overfitting view."""
    return _save(draw_learning_curves(history, title), path)


def draw_learning_curves(history: Sequence[EpochResult], title: str) -> Figure:
    epochs = [e.epoch for e in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    a.plot(epochs, [e.train_loss for e in history], "o-", label="train")
    a.plot(epochs, [e.val_loss for e in history], "o-", label="validation")
    a.set(xlabel="epoch", ylabel="loss", title="loss")
    b.plot(epochs, [e.train_acc for e in history], "o-", label="train")
    b.plot(epochs, [e.val_acc for e in history], "o-", label="validation")
    b.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(_wrap(title, 90))
    return fig


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, class_names: tuple[str, ...], path: Path) -> Path:
    return _save(draw_confusion_matrix(y_true, y_pred, class_names), path)


def draw_confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, class_names: tuple[str, ...]) -> Figure:
    k = len(class_names)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    size = min(16, 3 + 0.5 * k)
    fig, ax = plt.subplots(figsize=(size, size * 0.85), layout="constrained")
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)  # coloured by row: each true class's recall
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ticks = np.arange(k)
    labels = [_short(c, 16) for c in class_names]
    crowded = k > 10 or k * max(len(c) for c in labels) > 48  # side by side they would overlap
    ax.set_xticks(ticks, labels, rotation=90 if crowded else 0)
    ax.set_yticks(ticks, labels)
    ax.set(
        xlabel="predicted",
        ylabel="true",
        title=f"test confusion matrix (accuracy {np.trace(cm) / cm.sum():.4f}; colour: share of the row)",
    )
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
    return fig


def first_layer_filters(network: nn.Module, path: Path) -> Path | None:
    """The first convolution's kernels as small images (one per output channel); None for a
    network without convolutions (nothing is drawn)."""
    if not any(isinstance(m, nn.Conv2d) for m in network.modules()):
        return None
    return _save(draw_first_layer_filters(network), path)


def draw_first_layer_filters(network: nn.Module) -> Figure:
    conv = next(m for m in network.modules() if isinstance(m, nn.Conv2d))
    w = conv.weight.detach().float().cpu()  # out, in, k, k
    kernels = w.permute(0, 2, 3, 1).numpy() if w.shape[1] == 3 else w.mean(1).numpy()  # RGB or one map
    n = min(len(kernels), 64)
    cols = min(8, n)
    rows = math.ceil(n / cols)
    size = (max(6.0, cols * 1.1), max(2.6, rows * 1.1 + 0.5))
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False, layout="constrained")
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        ax.set_visible(i < n)  # the last row's empty places
        if i < n:
            k = kernels[i]
            k = (k - k.min()) / max(float(k.max() - k.min()), 1e-8)
            ax.imshow(k, cmap=None if k.ndim == 3 else "gray", interpolation="nearest")
    fig.suptitle(f"first-layer filters ({w.shape[2]}x{w.shape[3]}, {len(kernels)} channels)")
    return fig


def architecture_diagram(network: nn.Module, input_shape: tuple[int, int, int], path: Path, title: str) -> Path:
    """The layers top to bottom, with output shapes and parameter counts."""
    return _save(draw_architecture(network, input_shape, title), path)


def draw_architecture(network: nn.Module, input_shape: tuple[int, int, int], title: str) -> Figure:
    rows = layer_table(network, input_shape)
    fig_h = 0.38 * (len(rows) + 2) + 0.6
    fig, ax = plt.subplots(figsize=(8, fig_h), layout="constrained")
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
    ax.set_title(f"{_wrap(title, 85)}\n{total:,} parameters", fontsize=10)
    return fig
