"""Paired comparison of two models on the same images: McNemar's exact test, and a paired
permutation test for a metric that does not decompose per image (macro F1).

Two models scored on the same images differ only on the images one gets right and the other
wrong (the discordant pairs). Under "neither is better" each such image is a fair coin's throw,
so the exact test is a one-sided binomial test on those images alone. Used to keep a model whose
edge is noise from replacing another: the final fit's tie-break and check, and the registry's
promotion of a new champion.

Under a weighted score (balanced accuracy: :mod:`automl_cnn.metrics`) the same idea holds with
each discordant image carrying its weight: the statistic is the weighted lead of a over b, and
under "neither is better" each discordant image's sign is a fair coin. The p-value is exact (all
sign patterns) on up to :data:`EXACT_UP_TO` discordant images, else the normal approximation of
that sign-flip distribution (continuity-corrected). With equal weights it is McNemar's test.

Macro F1 is not a sum over images, so its test (:func:`permutation_test`) permutes predictions
instead: under "neither is better" the two models' predictions of each image are exchangeable,
so each image's pair is swapped with probability 1/2 and the difference of the two macro F1s is
recomputed; the p-value is the share of swaps whose difference is at least the observed one
(every swap pattern on up to :data:`EXACT_UP_TO` images where the predictions differ, else
:data:`PERMUTATIONS` random ones from a fixed seed, so the same models always get the same p).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

LEVEL = 0.05  # the significance level every comparison uses unless told otherwise
EXACT_UP_TO = 16  # weighted test: every sign pattern of up to this many discordant images
PERMUTATIONS = 4_000  # permutation test: random swap patterns beyond EXACT_UP_TO differing images
CHUNK = 64  # swap patterns scored at once


@dataclass(frozen=True)
class PairedTest:
    """Model a against model b on the same images."""

    only_a: int  # images only a gets right
    only_b: int  # images only b gets right
    p_value: float  # one-sided: that a scores higher than b by chance alone
    # a's lead over b: weighted, on the discordant images (equal weights: only_a - only_b); or
    # the difference of the two scores (macro F1)
    lead: float = 0.0
    name: str = "McNemar"  # the test, as a reason names it

    def a_better(self, level: float = LEVEL) -> bool:
        return self.lead > 0 and self.p_value < level


def mcnemar(a_right: np.ndarray, b_right: np.ndarray, weights: np.ndarray | None = None) -> PairedTest:
    """McNemar's exact one-sided test of "a is right more often than b" on the same images
    (``a_right``, ``b_right``: per image, whether each model got it right); with ``weights``
    (per image, e.g. balanced accuracy's), the weighted sign-flip test described above."""
    from scipy.stats import binomtest

    a_right, b_right = np.asarray(a_right, bool), np.asarray(b_right, bool)
    if a_right.shape != b_right.shape:
        raise ValueError(f"paired test on different images: {a_right.shape} vs {b_right.shape}")
    only_a = int(np.sum(a_right & ~b_right))
    only_b = int(np.sum(b_right & ~a_right))
    if only_a + only_b == 0:
        return PairedTest(0, 0, 1.0)
    if weights is None:
        p_value = float(binomtest(only_a, only_a + only_b, 0.5, alternative="greater").pvalue)
        return PairedTest(only_a, only_b, p_value, float(only_a - only_b))
    signed = np.asarray(weights, np.float64) * (a_right.astype(np.float64) - b_right)
    signed = signed[a_right != b_right]
    return PairedTest(only_a, only_b, _sign_flip_p(signed), float(signed.sum()))


def _sign_flip_p(signed: np.ndarray) -> float:
    """P(a random sign pattern of ``|signed|`` sums to at least ``signed.sum()``)."""
    from scipy.stats import norm

    observed = float(signed.sum())
    size = np.abs(signed)
    if len(size) <= EXACT_UP_TO:
        patterns = (np.arange(2 ** len(size))[:, None] >> np.arange(len(size))) & 1
        sums = ((2 * patterns - 1) * size).sum(axis=1)
        return float(np.mean(sums >= observed - 1e-12))
    # half the smallest step as continuity correction (equal weights: the binomial's, to ~1e-3)
    return float(norm.sf((observed - size.min()) / np.sqrt(np.sum(size**2))))


def permutation_test(a_predicted: np.ndarray, b_predicted: np.ndarray, labels: np.ndarray) -> PairedTest:
    """The paired permutation test of "a's macro F1 is higher than b's" on the same images
    (class predictions of each model and the labels; see the module's text)."""
    a, b, y = (np.asarray(v, np.int64) for v in (a_predicted, b_predicted, labels))
    only_a, only_b = int(np.sum((a == y) & (b != y))), int(np.sum((b == y) & (a != y)))
    differ = a != b
    if not differ.any():
        return PairedTest(only_a, only_b, 1.0, 0.0, "paired permutation")
    f1 = _SwappedF1(a, b, y, differ)
    diffs = np.concatenate([f1.difference(chunk) for chunk in _swap_patterns(int(differ.sum()))])
    observed = float(diffs[0])  # the first pattern swaps nothing
    return PairedTest(only_a, only_b, float(np.mean(diffs >= observed - 1e-12)), observed, "paired permutation")


def _swap_patterns(n: int) -> Iterator[np.ndarray]:
    """Swap patterns over ``n`` differing images, :data:`CHUNK` at a time (bounded memory), the
    first swapping nothing: every pattern up to :data:`EXACT_UP_TO` images, else
    :data:`PERMUTATIONS` random ones from a fixed seed."""
    if n <= EXACT_UP_TO:
        yield ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(bool)
        return
    rng = np.random.default_rng(0)
    yield np.vstack([np.zeros((1, n), bool), rng.random((CHUNK - 1, n)) < 0.5])
    for start in range(CHUNK - 1, PERMUTATIONS, CHUNK):
        yield rng.random((min(CHUNK, PERMUTATIONS - start), n)) < 0.5


class _SwappedF1:
    """Macro F1 of a and of b after swapping their predictions on some of the images where they
    differ, for a chunk of swap patterns at once (F1 of a class: 2 hits / (predicted + support)),
    counted with one ``bincount`` per chunk: memory grows with the images, not the classes."""

    def __init__(self, a: np.ndarray, b: np.ndarray, y: np.ndarray, differ: np.ndarray) -> None:
        self.size = int(max(a.max(), b.max(), y.max())) + 1
        support = np.bincount(y, minlength=self.size).astype(np.float64)
        self.present = support > 0
        self.support = support[self.present]
        same = ~differ  # a and b agree there
        self.guessed = np.bincount(a[same], minlength=self.size).astype(np.float64)
        self.hits = np.bincount(a[same & (a == y)], minlength=self.size).astype(np.float64)
        self.a, self.b, self.y = a[differ], b[differ], y[differ]

    def difference(self, swapped: np.ndarray) -> np.ndarray:
        """Per swap pattern (a row of booleans over the differing images): a's macro F1 minus b's."""
        return self._macro(np.where(swapped, self.b, self.a)) - self._macro(np.where(swapped, self.a, self.b))

    def _macro(self, predicted: np.ndarray) -> np.ndarray:
        rows = len(predicted)
        cells = (np.arange(rows)[:, None] * self.size + predicted).ravel()
        guessed = np.bincount(cells, minlength=rows * self.size).reshape(rows, self.size)
        hits = np.bincount(cells[(predicted == self.y).ravel()], minlength=rows * self.size).reshape(rows, self.size)
        all_guessed, all_hits = (self.guessed + guessed)[:, self.present], (self.hits + hits)[:, self.present]
        return np.asarray((2 * all_hits / (all_guessed + self.support)).mean(axis=1))
