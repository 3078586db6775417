"""Images in memory, the common form every data source is read into."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class ImageSet:
    """``x``: NCHW, uint8 (0-255) or float32 (0-1); ``y``: int64 class indices."""

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    name: str

    def __post_init__(self) -> None:
        assert self.x.ndim == 4, self.x.shape
        assert self.x.dtype in (np.uint8, np.float32), self.x.dtype
        assert len(self.x) == len(self.y)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (int(self.x.shape[1]), int(self.x.shape[2]), int(self.x.shape[3]))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def fingerprint(self) -> str:
        """A hash of the pixels, labels and class names: equal data, equal fingerprint."""
        h = hashlib.sha256()
        h.update(repr((self.x.shape, str(self.x.dtype), self.class_names)).encode())
        h.update(np.ascontiguousarray(self.x).tobytes())
        h.update(np.ascontiguousarray(self.y, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]


def to_float(x: np.ndarray) -> np.ndarray:
    """Pixels as float32 in [0, 1]."""
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32, copy=False)
