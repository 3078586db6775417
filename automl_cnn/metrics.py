"""The score a search optimises: accuracy, or balanced accuracy on imbalanced classes.

Both are a weighted share of images predicted right, so every comparison the search makes
(pruning, the winner, ties, ensembles, the final checks, promotion) uses one formula with one
set of per-image weights:

* ``accuracy``: every image counts the same;
* ``balanced_accuracy``: the mean recall over the classes present, i.e. each image weighs
  ``1 / (classes present x images of its class)``; a model that never predicts a rare class
  scores at most ``1 - 1/K`` however rare the class is.

``--metric auto`` (the default) takes balanced accuracy when the largest class of the training
split holds more than :data:`AUTO_IMBALANCE` times the images of the smallest, else accuracy.
The paired test of two models under weights is in :func:`automl_cnn.stats.mcnemar`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRICS = ("auto", "accuracy", "balanced_accuracy")
AUTO_IMBALANCE = 1.5
LABELS = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy"}


MACRO_F1_REFUSAL = (
    "macro F1 is reported per class in the summary but not selectable yet; "
    "use --metric balanced_accuracy, the closest selectable metric"
)


def metric_name(text: str) -> str:
    """``--metric``'s text: one of :data:`METRICS` (argparse reports the error in one line)."""
    import argparse

    if text == "macro_f1":
        raise argparse.ArgumentTypeError(MACRO_F1_REFUSAL)
    if text not in METRICS:
        raise argparse.ArgumentTypeError(f"unknown metric {text!r}; use one of: {', '.join(METRICS)}")
    return text


def resolve(metric: str, train_counts: Sequence[int]) -> tuple[str, str]:
    """The metric ``metric`` stands for on a training split with ``train_counts`` images per
    class, and why (one phrase)."""
    if metric != "auto":
        return metric, "as asked (--metric)"
    present = [c for c in train_counts if c]
    ratio = max(present) / min(present) if present else 1.0
    if ratio > AUTO_IMBALANCE:
        return "balanced_accuracy", f"auto: the largest class has {ratio:.1f}x the images of the smallest"
    return "accuracy", f"auto: the classes are balanced (largest/smallest {ratio:.2f}x <= {AUTO_IMBALANCE}x)"


def image_weights(metric: str, labels: np.ndarray) -> np.ndarray | None:
    """Per-image weights summing to 1 under ``metric`` (None: accuracy, every image alike)."""
    if metric == "accuracy" or not len(labels):
        return None
    labels = np.asarray(labels)
    classes, index, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return (1.0 / (len(classes) * counts))[index]


def score(metric: str, predicted: np.ndarray, labels: np.ndarray) -> float:
    """``metric`` of class predictions ``predicted`` against ``labels`` (nan on no images)."""
    if not len(labels):
        return float("nan")
    right = np.asarray(predicted) == np.asarray(labels)
    weights = image_weights(metric, labels)
    return float(right.mean()) if weights is None else float(np.sum(weights * right))


def label(metric: str) -> str:
    """``balanced accuracy``: the metric's name in prose."""
    return LABELS[metric]
