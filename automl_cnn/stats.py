"""Paired comparison of two models on the same images: McNemar's exact test.

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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEVEL = 0.05  # the significance level every comparison uses unless told otherwise
EXACT_UP_TO = 16  # weighted test: every sign pattern of up to this many discordant images


@dataclass(frozen=True)
class McNemar:
    """Model a against model b on the same images."""

    only_a: int  # images only a gets right
    only_b: int  # images only b gets right
    p_value: float  # one-sided: that a is right more often than b by chance alone
    lead: float = 0.0  # a's weighted lead over b on the discordant images (equal weights: only_a - only_b)

    def a_better(self, level: float = LEVEL) -> bool:
        return self.lead > 0 and self.p_value < level


def mcnemar(a_right: np.ndarray, b_right: np.ndarray, weights: np.ndarray | None = None) -> McNemar:
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
        return McNemar(0, 0, 1.0)
    if weights is None:
        p_value = float(binomtest(only_a, only_a + only_b, 0.5, alternative="greater").pvalue)
        return McNemar(only_a, only_b, p_value, float(only_a - only_b))
    signed = np.asarray(weights, np.float64) * (a_right.astype(np.float64) - b_right)
    signed = signed[a_right != b_right]
    return McNemar(only_a, only_b, _sign_flip_p(signed), float(signed.sum()))


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


def significantly_better(
    a_right: np.ndarray, b_right: np.ndarray, level: float = LEVEL, weights: np.ndarray | None = None
) -> bool:
    """Whether model a is right significantly more often than model b on the same images
    (McNemar's exact one-sided test on the images only one of them gets right; weighted with
    ``weights``)."""
    return mcnemar(a_right, b_right, weights).a_better(level)


def mcnemar_p(a_right: np.ndarray, b_right: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The one-sided p-value that model a is right more often than model b on the same images;
    1.0 where a is not ahead (what a verdict prints beside "not significantly better")."""
    test = mcnemar(a_right, b_right, weights)
    return test.p_value if test.lead > 0 else 1.0
