"""Pixels: one image file decoded, and any batch resized, the same way for every source.

Arrays, folders, manifests and ``predict`` all go through these two functions, so serving
applies exactly the preprocessing training saw.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image


def resize_images(x: np.ndarray, size: tuple[int, int] | list[int]) -> np.ndarray:
    """NCHW images resized to ``size`` (H, W): bilinear, antialiased when shrinking, as torch
    does it. Every source goes through this one function (arrays when loaded, image files as
    they are read, ``predict``'s files too), so a model sees the same pixels at every stage."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(x.astype(np.float32))  # a writable copy
    out = F.interpolate(t, size=(int(size[0]), int(size[1])), mode="bilinear", antialias=True, align_corners=False)
    if x.dtype == np.uint8:
        return out.round().clamp(0, 255).to(torch.uint8).numpy()
    return out.numpy().astype(x.dtype, copy=False)


def read_image(path: str | Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    """One image as CHW uint8, converted to ``mode`` (L or RGB) and resized to ``size`` (H, W).

    The first frame of an animation; transparency composited on white.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as opened:
            opened.seek(0)
            img: Image.Image = opened
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            arr = np.asarray(img.convert(mode), dtype=np.uint8)
    chw = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    if chw.shape[1:] != tuple(size):  # the same resize arrays get: one preprocessing for all sources
        chw = resize_images(chw[None], size)[0]
    return chw
