"""A folder with one sub-folder per class, read with Pillow into an in-memory ImageSet."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from automl_cnn.data.images import ImageSet
from automl_cnn.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}
MAX_DEFAULT_SIDE = 64


def list_class_files(root: Path) -> tuple[list[tuple[Path, int]], tuple[str, ...]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class folders found; put each class's images in a sub-folder")
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        found = sorted(p for p in (root / name).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise DataError(f"{root / name}: class folder has no images; add images or remove it")
        files += [(p, label) for p in found]
    return files, tuple(classes)


def choose_size(sizes: list[tuple[int, int]]) -> tuple[int, int]:
    """The most common (height, width), scaled down so the longer side is at most 64."""
    h, w = Counter(sizes).most_common(1)[0][0]
    scale = min(1.0, MAX_DEFAULT_SIDE / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def read_image(path: Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    """One image as CHW uint8, converted to ``mode`` (L or RGB) and resized to ``size`` (H, W)."""
    with Image.open(path) as img:
        img.seek(0)
        if img.mode in ("RGBA", "LA", "P") and mode == "RGB":
            img = img.convert("RGBA")
            background = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, img)
        img = img.convert(mode)
        if img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def load_folder(root: Path, image_size: tuple[int, int] | None = None) -> ImageSet:
    files, classes = list_class_files(root)
    sizes, grey = [], True
    for path, _ in files:
        try:
            with Image.open(path) as img:
                sizes.append((img.height, img.width))
                grey = grey and img.mode in ("1", "L", "I", "I;16", "F")
        except Exception as exc:  # Pillow raises many types for a bad file
            raise DataError(f"{path}: cannot read this image ({exc.__class__.__name__}); fix or remove it") from None
    size = image_size or choose_size(sizes)
    mode = "L" if grey else "RGB"
    log.info("%s: %d images, %d classes, resized to %dx%d, %s", root, len(files), len(classes), size[0], size[1], mode)
    x = np.stack([read_image(p, mode, size) for p, _ in files])
    y = np.array([label for _, label in files], dtype=np.int64)
    return ImageSet(x=x, y=y, class_names=classes, name=root.name)
