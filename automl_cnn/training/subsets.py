"""Nested, stratified subsets of a training split: the data-size fidelity of early epochs.

:func:`nested_order` orders the training images so that every prefix is a stratified sample
(each class in its share of the split) and a smaller fraction is always inside a larger one,
as Hyperband's and FABOLAS's data-subset experiments draw them. The order depends only on the
labels and a fixed seed, so every trial of a search trains its early epochs on the same images.
"""

from __future__ import annotations

import numpy as np

SUBSET_SEED = 0


def nested_order(y: np.ndarray, seed: int = SUBSET_SEED) -> np.ndarray:
    """Positions of ``y`` in an order whose every prefix is stratified: within each class a
    random permutation, the classes interleaved by within-class rank over class size."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    keys = np.empty(len(y), dtype=np.float64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        keys[idx] = (rng.permutation(len(idx)) + 0.5) / len(idx)
    return np.argsort(keys, kind="stable")


def subset_size(n: int, fraction: float) -> int:
    """Images in the ``fraction`` subset of ``n`` (at least one)."""
    return max(1, min(n, round(fraction * n)))
