"""Paired comparison of two models on the same images: McNemar's exact test.

Two models scored on the same images differ only on the images one gets right and the other
wrong (the discordant pairs). Under "neither is better" each such image is a fair coin's throw,
so the exact test is a one-sided binomial test on those images alone. Used to keep a model whose
edge is noise from replacing another: the final fit's tie-break and check, and the registry's
promotion of a new champion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEVEL = 0.05  # the significance level every comparison uses unless told otherwise


@dataclass(frozen=True)
class McNemar:
    """Model a against model b on the same images."""

    only_a: int  # images only a gets right
    only_b: int  # images only b gets right
    p_value: float  # one-sided: that a is right more often than b by chance alone

    def a_better(self, level: float = LEVEL) -> bool:
        return self.only_a > self.only_b and self.p_value < level


def mcnemar(a_right: np.ndarray, b_right: np.ndarray) -> McNemar:
    """McNemar's exact one-sided test of "a is right more often than b" on the same images
    (``a_right``, ``b_right``: per image, whether each model got it right)."""
    from scipy.stats import binomtest

    a_right, b_right = np.asarray(a_right, bool), np.asarray(b_right, bool)
    if a_right.shape != b_right.shape:
        raise ValueError(f"paired test on different images: {a_right.shape} vs {b_right.shape}")
    only_a = int(np.sum(a_right & ~b_right))
    only_b = int(np.sum(b_right & ~a_right))
    if only_a + only_b == 0:
        return McNemar(0, 0, 1.0)
    p_value = float(binomtest(only_a, only_a + only_b, 0.5, alternative="greater").pvalue)
    return McNemar(only_a, only_b, p_value)


def significantly_better(a_right: np.ndarray, b_right: np.ndarray, level: float = LEVEL) -> bool:
    """Whether model a is right significantly more often than model b on the same images
    (McNemar's exact one-sided test on the images only one of them gets right)."""
    return mcnemar(a_right, b_right).a_better(level)


def mcnemar_p(a_right: np.ndarray, b_right: np.ndarray) -> float:
    """The one-sided p-value that model a is right more often than model b on the same images;
    1.0 where a is not ahead (what a verdict prints beside "not significantly better")."""
    test = mcnemar(a_right, b_right)
    return test.p_value if test.only_a > test.only_b else 1.0
