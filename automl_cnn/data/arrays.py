"""A ``.npz`` file with arrays ``x`` (images) and ``y`` (integer labels)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from automl_cnn.data.images import ImageSet
from automl_cnn.errors import DataError


def _layout(x: np.ndarray, path: Path) -> np.ndarray:
    """Images as NCHW: NHW (greyscale) and NHWC are accepted as well; RGBA keeps its 4 channels."""
    if x.ndim == 3:
        return x[:, None, :, :]
    if x.ndim != 4:
        raise DataError(
            f"{path}: x has {x.ndim} dimension(s) {x.shape}; expected images as N,H,W or N,H,W,C or N,C,H,W"
        )
    channels_last = x.shape[3] in (1, 3, 4)
    channels_first = x.shape[1] in (1, 3, 4)
    if channels_last and not (channels_first and x.shape[3] > x.shape[1]):
        x = x.transpose(0, 3, 1, 2)
    elif not channels_first:
        raise DataError(f"{path}: cannot tell the channel axis of x {x.shape}; use 1, 3 or 4 channels")
    return np.ascontiguousarray(x)


def _on_white(x: np.ndarray) -> np.ndarray:
    """RGBA composited on white; ``x`` is already uint8 0-255 or float 0-1 (from ``_pixels``)."""
    if x.shape[1] != 4:
        return x
    white = 255.0 if x.dtype == np.uint8 else 1.0
    alpha = x[:, 3:4].astype(np.float32) / white
    rgb = x[:, :3].astype(np.float32) * alpha + white * (1 - alpha)
    if x.dtype == np.uint8:
        return np.ascontiguousarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8))
    return np.ascontiguousarray(rgb)


def _pixels(x: np.ndarray, path: Path) -> tuple[np.ndarray, str]:
    if x.dtype == np.uint8:
        return x, ""
    if x.dtype == np.bool_ or np.issubdtype(x.dtype, np.integer):
        if x.min() < 0 or x.max() > 255:
            raise DataError(f"{path}: integer pixels must lie in 0-255, found {x.min()}..{x.max()}")
        return x.astype(np.uint8), ""
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{path}: x has dtype {x.dtype}; give uint8 (0-255) or float pixels")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{path}: x contains NaN or infinite values; clean the array")
    lo, hi = float(x.min()), float(x.max())
    if lo >= 0 and hi <= 1:
        return x, ""
    if lo >= 0 and hi <= 255:
        return x / 255.0, "float pixels in 0-255 scaled to 0-1"
    # any other range would need a rescale that predict and the exported model cannot know
    raise DataError(
        f"{path}: x holds float values in {lo:g}..{hi:g}, not pixels; give uint8 0-255 or floats in 0-1 or 0-255"
    )


def _labels(y: np.ndarray, path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    y = np.asarray(y).reshape(-1) if np.asarray(y).ndim == 2 and np.asarray(y).shape[1] == 1 else np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{path}: y has shape {y.shape}; give one integer label per image (not one-hot)")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataError(f"{path}: y holds non-integer labels; give integer class indices 0, 1, 2, ...")
        y = y.astype(np.int64)
    elif not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: y has dtype {y.dtype}; give integer class indices 0, 1, 2, ...")
    if len(y) and y.min() < 0:
        raise DataError(f"{path}: y holds negative labels (e.g. {int(y.min())}); give class indices 0, 1, 2, ...")
    values = np.unique(y)
    remap = {int(v): i for i, v in enumerate(values)}
    return np.array([remap[int(v)] for v in y], dtype=np.int64), tuple(str(int(v)) for v in values)


def load_npz(path: Path) -> ImageSet:
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            if not {"x", "y"} <= keys:
                raise DataError(f"{path}: needs arrays named x and y, found {sorted(keys) or 'none'}")
            x, y = f["x"], f["y"]
            names = tuple(str(n) for n in f["class_names"]) if "class_names" in keys else None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"{path}: not a readable .npz file ({exc.__class__.__name__}); save it with numpy.savez"
        ) from None
    if len(x) != len(y):
        raise DataError(f"{path}: x has {len(x)} images but y has {len(y)} labels; give one label per image")
    labels, classes = _labels(y, path)
    pixels, note = _pixels(_layout(x, path), path)  # the range checked and scaled first,
    pixels = _on_white(pixels)  # then RGBA composited, whatever dtype the array came in
    if names is not None:
        if len(names) < len(classes):
            raise DataError(f"{path}: class_names has {len(names)} names for {len(classes)} classes")
        classes = tuple(names[int(c)] for c in classes)
    if len(classes) < 2:
        raise DataError(f"{path}: y holds a single class; a classifier needs at least two")
    return ImageSet(x=pixels, y=labels, class_names=classes, name=path.stem, notes=(note,) if note else ())
