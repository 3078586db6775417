"""Ensemble selection and the paired comparisons the final phase makes, on stored predictions.

* :func:`select_ensemble` is Caruana et al.'s ensemble selection (2004, "Ensemble selection from
  libraries of models"), as AutoGluon and auto-sklearn use it: start from the winning trial,
  then greedily add (with replacement) the trial whose predictions most improve the averaged
  predictions, and keep the best prefix. The weights are the counts. The search's metric
  (accuracy, balanced accuracy or macro F1: :mod:`automl_cnn.metrics`) decides each step, the
  log loss breaks ties (on a few hundred images the metric alone ties often).

Pure numpy and scipy: probabilities in, indices and weights out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from automl_cnn.metrics import Yardstick

EPS = 1e-7
ROUNDS = 25  # greedy steps of ensemble selection


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    if not len(labels):
        return float("nan")
    p = probs.astype(np.float64)[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(p, EPS, 1.0)).mean())


def score(probs: np.ndarray, labels: np.ndarray, metric: str = "accuracy") -> tuple[float, float]:
    """What ensemble selection maximises: ``metric`` (the search's), then the negative log loss."""
    return Yardstick(metric, labels)(probs), -log_loss(probs, labels)


def blend(probs: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The weighted average of class probabilities."""
    total = float(sum(weights))
    out = np.zeros(probs[0].shape, dtype=np.float64)
    for p, w in zip(probs, weights, strict=True):
        out += (w / total) * p.astype(np.float64)
    return out


@dataclass(frozen=True)
class Selection:
    """Members (indices into the candidates) with their weights, which sum to 1."""

    members: tuple[int, ...]
    weights: tuple[float, ...]

    @property
    def size(self) -> int:
        return len(self.members)


def select_ensemble(
    probs: Sequence[np.ndarray],
    labels: np.ndarray,
    first: int,
    max_members: int,
    rounds: int = ROUNDS,
    metric: str = "accuracy",
) -> Selection:
    """Greedy ensemble selection with replacement over ``probs`` (one array per candidate, the
    same images), starting from candidate ``first``, with at most ``max_members`` distinct
    members; the best prefix of ``rounds`` steps by :func:`score` on ``labels``."""
    bag = [first]
    total = probs[first].astype(np.float64)
    best_bag, best = list(bag), score(total, labels, metric)
    for _ in range(rounds - 1):
        allowed = range(len(probs)) if len(set(bag)) < max_members else sorted(set(bag))
        n = len(bag)
        step = max(allowed, key=lambda i: (score((total + probs[i]) / (n + 1), labels, metric), -i))
        bag.append(step)
        total = total + probs[step]
        now = score(total / len(bag), labels, metric)
        if now > best:
            best_bag, best = list(bag), now
    counts = Counter(best_bag)
    members = tuple(sorted(counts, key=lambda i: (-counts[i], best_bag.index(i))))
    return Selection(members, tuple(counts[i] / len(best_bag) for i in members))
