"""Per-class figures of the delivered model on the test split: what plain accuracy hides on
imbalanced data (a model that never predicts the rare class can score 90%).

For each class: its test images (support), precision and recall; over the classes: balanced
accuracy (the mean recall) and macro F1; and the confusion matrix normalised by row (each true
class's row sums to 1: its recall on the diagonal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from automl_cnn.metrics import macro_f1

SUMMARY_ROWS = 12  # the summary lists every class up to this many; beyond it, the lowest recalls


@dataclass(frozen=True)
class ClassFigures:
    name: str
    support: int  # test images of this class
    predicted: int  # test images predicted as this class
    precision: float | None  # None: the model never predicted this class
    recall: float


@dataclass(frozen=True)
class PerClass:
    classes: tuple[ClassFigures, ...]
    confusion: tuple[tuple[float, ...], ...]  # row-normalised: true class x predicted class
    f1_interval: tuple[float, float] | None = None  # a 95% bootstrap interval of macro F1 (when asked)

    @property
    def balanced_accuracy(self) -> float:
        """The mean recall over the classes with test images."""
        recalls = [c.recall for c in self.classes if c.support]
        return float(np.mean(recalls)) if recalls else 0.0

    def balanced_interval(self, z_score: float = 1.96) -> tuple[float, float]:
        """A 95% interval of the balanced accuracy: the normal approximation of a mean of
        independent per-class recalls (each binomial on its class's test images)."""
        present = [c for c in self.classes if c.support]
        if not present:
            return 0.0, 0.0
        var = sum(c.recall * (1 - c.recall) / c.support for c in present) / len(present) ** 2
        half = z_score * var**0.5
        return max(0.0, self.balanced_accuracy - half), min(1.0, self.balanced_accuracy + half)

    @property
    def macro_f1(self) -> float:
        scores = []
        for c in self.classes:
            if not c.support:
                continue
            p = c.precision or 0.0
            scores.append(0.0 if p + c.recall == 0 else 2 * p * c.recall / (p + c.recall))
        return float(np.mean(scores)) if scores else 0.0

    @property
    def imbalance(self) -> float:
        """The largest class's test images over the smallest's."""
        sizes = [c.support for c in self.classes if c.support]
        return max(sizes) / min(sizes) if sizes else 1.0

    def summary_lines(self) -> list[str]:
        """The summary's block: balanced accuracy and macro F1, then one line per class (the
        lowest recalls first when there are more than :data:`SUMMARY_ROWS` classes)."""
        rows = list(self.classes)
        head = f"per class (test)    balanced accuracy {self.balanced_accuracy:.4f}, macro F1 {self.macro_f1:.4f}"
        if len(rows) > SUMMARY_ROWS:
            rows = sorted(rows, key=lambda c: c.recall)[:5]
            head += f"; the {len(rows)} lowest recalls of {len(self.classes)} classes (all in report.md)"
        width = min(24, max(len(c.name) for c in rows))
        lines = [head]
        for c in rows:
            precision = "   n/a" if c.precision is None else f"{c.precision:.4f}"
            lines.append(
                f"  {c.name[:width]:<{width}}  recall {c.recall:.4f}  precision {precision}  ({c.support} images)"
            )
        return lines

    def to_record(self) -> dict[str, object]:
        return {
            "balanced_accuracy": self.balanced_accuracy,
            "macro_f1": self.macro_f1,
            "classes": [c.__dict__ for c in self.classes],
            "confusion_normalised": [list(row) for row in self.confusion],
        }


def per_class(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: tuple[str, ...], f1_interval: bool = False
) -> PerClass:
    """The figures of predictions ``y_pred`` against labels ``y_true`` (class indices); with
    ``f1_interval``, a 95% percentile-bootstrap interval of macro F1 as well."""
    k = len(class_names)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    classes = tuple(
        ClassFigures(
            class_names[c],
            int(support[c]),
            int(predicted[c]),
            float(cm[c, c] / predicted[c]) if predicted[c] else None,
            float(cm[c, c] / support[c]) if support[c] else 0.0,
        )
        for c in range(k)
    )
    rows = cm / np.maximum(support, 1)[:, None]
    interval = bootstrap_macro_f1(np.asarray(y_true), np.asarray(y_pred)) if f1_interval else None
    return PerClass(classes, tuple(tuple(float(v) for v in row) for row in rows), interval)


def bootstrap_macro_f1(y_true: np.ndarray, y_pred: np.ndarray, rounds: int = 1000) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of macro F1 over ``rounds`` resamples of the images
    (with replacement, from a fixed seed)."""
    if not len(y_true):
        return 0.0, 0.0
    rng = np.random.default_rng(0)
    values = []
    for _ in range(rounds):
        pick = rng.integers(0, len(y_true), len(y_true))
        values.append(macro_f1(y_pred[pick], y_true[pick]))
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)
