"""Building real datasets on disk for the tests: the built-in digits written as image files."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from automl_cnn.data.builtin import load_digits


def digits_subset(per_class: int = 30, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    picks = np.concatenate([np.flatnonzero(d.y == c)[:per_class] for c in range(classes)])
    return d.x[picks, 0], d.y[picks]


def write_folder(root: Path, per_class: int = 30, classes: int = 10, fmt: str = "png", scale: int = 2) -> Path:
    """digits as ``root/<digit>/<i>.<fmt>``, upscaled ``scale`` times (JPEG/PNG/BMP/...)."""
    x, y = digits_subset(per_class, classes)
    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        folder = root / f"digit{label}"
        folder.mkdir(parents=True, exist_ok=True)
        pil = Image.fromarray(img).resize((8 * scale, 8 * scale), Image.Resampling.NEAREST)
        pil.save(folder / f"{i}.{fmt}")
    return root


def write_manifest(root: Path, per_class: int = 30, classes: int = 10) -> Path:
    """digits as ``root/images/<i>.png`` plus ``root/labels.csv`` (path,label)."""
    x, y = digits_subset(per_class, classes)
    (root / "images").mkdir(parents=True, exist_ok=True)
    path = root / "labels.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for i, (img, label) in enumerate(zip(x, y, strict=True)):
            Image.fromarray(img).save(root / "images" / f"{i}.png")
            w.writerow([f"images/{i}.png", f"d{label}"])
    return path
