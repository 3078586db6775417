"""The score a search optimises: accuracy, balanced accuracy or macro F1.

* ``accuracy``: the share of images predicted right, every image alike;
* ``balanced_accuracy``: the mean recall over the classes present, i.e. a weighted share of
  images predicted right, each image weighing ``1 / (classes present x images of its class)``;
  a model that never predicts a rare class scores at most ``1 - 1/K`` however rare it is;
* ``macro_f1``: the mean over the classes present of F1, the harmonic mean of the class's
  precision and recall (``2 TP / (predicted as the class + images of the class)``). Unlike the
  other two it also charges a model for false alarms of a rare class, and it does not
  decompose per image.

``--metric auto`` (the default) takes balanced accuracy when the largest class of the training
split holds more than :data:`AUTO_IMBALANCE` times the images of the smallest, else accuracy.

A :class:`Yardstick` is the metric on one set of labelled images: every comparison the search
makes after training (the winner, ties, ensembles, the final checks, promotion) scores and
compares models with one. Its paired test (:mod:`automl_cnn.stats`) is McNemar's, weighted under
balanced accuracy, and a paired permutation test under macro F1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from automl_cnn.stats import LEVEL, PairedTest, mcnemar, permutation_test

METRICS = ("auto", "accuracy", "balanced_accuracy", "macro_f1")
CLASS_METRICS = ("balanced_accuracy", "macro_f1")  # every class counts the same: for imbalanced data
AUTO_IMBALANCE = 1.5
LABELS = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro F1"}
# a score less than this share of the way from chance (1 / classes) to perfect: the task is far
# from solved (the summary's warning on the delivered model; the learned training length's
# reason to train longer, engine/search/ceiling.py)
SOLVED_SHARE = 0.5


def unsolved(score: float, classes: int) -> bool:
    """``score`` is less than halfway (:data:`SOLVED_SHARE`) from chance to perfect."""
    chance = 1.0 / classes
    return score < chance + SOLVED_SHARE * (1.0 - chance)


def metric_name(text: str) -> str:
    """``--metric``'s text: one of :data:`METRICS` (argparse reports the error in one line)."""
    import argparse

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
    """Per-image weights summing to 1 under an accuracy-like ``metric`` (None: accuracy, every
    image alike; macro F1 has none)."""
    if metric not in ("accuracy", "balanced_accuracy"):
        raise ValueError(f"{metric} is not a weighted share of images")
    if metric == "accuracy" or not len(labels):
        return None
    labels = np.asarray(labels)
    classes, index, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return (1.0 / (len(classes) * counts))[index]


def macro_f1(predicted: np.ndarray, labels: np.ndarray) -> float:
    """The mean F1 over the classes present in ``labels`` (as :mod:`automl_cnn.deliver.perclass`)."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    size = int(max(predicted.max(initial=0), labels.max(initial=0))) + 1
    support = np.bincount(labels, minlength=size)
    guessed = np.bincount(predicted, minlength=size)
    hits = np.bincount(labels[predicted == labels], minlength=size)
    present = support > 0
    return float(np.mean(2 * hits[present] / (guessed[present] + support[present])))


def score(metric: str, predicted: np.ndarray, labels: np.ndarray) -> float:
    """``metric`` of class predictions ``predicted`` against ``labels`` (nan on no images)."""
    if not len(labels):
        return float("nan")
    if metric == "macro_f1":
        return macro_f1(predicted, labels)
    right = np.asarray(predicted) == np.asarray(labels)
    weights = image_weights(metric, labels)
    return float(right.mean()) if weights is None else float(np.sum(weights * right))


def label(metric: str) -> str:
    """``balanced accuracy``: the metric's name in prose."""
    return LABELS[metric]


def paired_test(metric: str) -> str:
    """The paired test that compares two models under ``metric``, as a reason names it."""
    return "paired permutation" if metric == "macro_f1" else "McNemar"


def _predicted(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    return values.argmax(1) if values.ndim == 2 else values


@dataclass(frozen=True, eq=False)
class Yardstick:
    """The search's ``metric`` on one set of labelled images: scores a model's predictions
    there (class probabilities, one row per image, or predicted classes) and tells two models
    apart on them."""

    metric: str
    labels: np.ndarray

    def __call__(self, predictions: np.ndarray) -> float:
        return score(self.metric, _predicted(predictions), self.labels)

    @property
    def name(self) -> str:
        return LABELS[self.metric]

    @property
    def test_name(self) -> str:
        return paired_test(self.metric)

    def compare(self, a: np.ndarray, b: np.ndarray) -> PairedTest:
        """The one-sided paired test of "model a scores higher than model b on these images"."""
        a, b = _predicted(a), _predicted(b)
        if len(a) != len(b) or len(a) != len(self.labels):
            raise ValueError(f"paired test on different images: {len(a)} vs {len(b)} ({len(self.labels)} labels)")
        if self.metric == "macro_f1":
            return permutation_test(a, b, self.labels)
        return mcnemar(a == self.labels, b == self.labels, image_weights(self.metric, self.labels))

    def better(self, a: np.ndarray, b: np.ndarray, level: float = LEVEL) -> bool:
        """Whether model a scores significantly higher than model b here."""
        return self.compare(a, b).a_better(level)

    def p_value(self, a: np.ndarray, b: np.ndarray) -> float:
        """The one-sided p-value that a leads b by chance; 1.0 where a is not ahead."""
        test = self.compare(a, b)
        return test.p_value if test.lead > 0 else 1.0
