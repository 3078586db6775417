"""Images as one common form: in memory (a uint8/float32 NCHW array) or as files to stream."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from automl_cnn.data.pixels import read_image, resize_images  # noqa: F401 (resize_images: re-exported)


@dataclass(frozen=True, eq=False)
class ImageFiles:
    """Images left on disk: read (converted to ``mode``, resized to ``size``) when needed."""

    paths: tuple[str, ...]
    mode: str  # "L" or "RGB"
    size: tuple[int, int]  # (height, width)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), 1 if self.mode == "L" else 3, self.size[0], self.size[1])

    @property
    def ndim(self) -> int:
        return 4

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx: np.ndarray | slice) -> ImageFiles:
        if isinstance(idx, slice):
            return ImageFiles(self.paths[idx], self.mode, self.size)
        return ImageFiles(tuple(self.paths[i] for i in np.asarray(idx).tolist()), self.mode, self.size)

    def read(self, indices: np.ndarray | list[int] | None = None) -> np.ndarray:
        chosen = range(len(self.paths)) if indices is None else np.asarray(indices).tolist()
        c, h, w = self.shape[1:]
        out = np.empty((len(chosen), c, h, w), dtype=np.uint8)
        for k, i in enumerate(chosen):
            out[k] = read_image(self.paths[i], self.mode, self.size)
        return out


Pixels = np.ndarray | ImageFiles


@dataclass(frozen=True, eq=False)
class ImageSet:
    """``x``: NCHW, uint8 (0-255) or float32 (0-1), or files; ``y``: int64 class indices."""

    x: Pixels
    y: np.ndarray
    class_names: tuple[str, ...]
    name: str
    paths: tuple[str, ...] = ()  # where each image came from, for file-based sources
    notes: tuple[str, ...] = ()  # what preparation did (sizes, channels, skipped files)
    source_fingerprint: str = ""  # set by file-based sources: files and labels
    extra: dict[str, str] = field(default_factory=dict)

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

    @property
    def streamed(self) -> bool:
        return isinstance(self.x, ImageFiles)

    def fingerprint(self) -> str:
        """Equal data, equal fingerprint: the files and labels, or the pixels and labels."""
        if self.source_fingerprint:
            return self.source_fingerprint
        assert isinstance(self.x, np.ndarray)
        h = hashlib.sha256()
        h.update(repr((self.x.shape, str(self.x.dtype), self.class_names)).encode())
        h.update(np.ascontiguousarray(self.x).tobytes())
        h.update(np.ascontiguousarray(self.y, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]


def to_float(x: np.ndarray) -> np.ndarray:
    """Pixels as float32 in [0, 1]."""
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32, copy=False)
