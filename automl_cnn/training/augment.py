"""Training-time augmentation of a whole batch at once, each image with its own random draw.

torchvision's v2 transforms draw one set of random parameters per call, so applied to a batch
tensor every image gets the same flip and the same shift; looping over images instead costs more
than the training step for small CNNs. Here flips are a masked ``where``, and rotation,
translation, scale and crop-with-padding fold into one affine matrix per image applied with a
single ``affine_grid`` + ``grid_sample``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from automl_cnn.model.architecture import Augmentation


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def augment(x: torch.Tensor, aug: Augmentation, gen: torch.Generator) -> torch.Tensor:
    """Augment ``x`` (float NCHW in [0, 1]); random numbers come from the CPU generator ``gen``."""
    if not aug.enabled:
        return x
    n, _, h, w = x.shape
    dev = x.device
    if aug.hflip:
        flip = (torch.rand(n, generator=gen) < 0.5).to(dev).view(n, 1, 1, 1)
        x = torch.where(flip, x.flip(3), x)
    if aug.rotation or aug.translate or aug.scale or aug.crop_padding:
        angle = _uniform(n, -aug.rotation, aug.rotation, gen) * (math.pi / 180.0)
        scale = _uniform(n, 1.0 - aug.scale, 1.0 + aug.scale, gen)
        # translation in grid units (the image spans [-1, 1]): a fraction f of the size is 2f,
        # and p pixels of crop padding are 2p / size
        tx = _uniform(n, -1.0, 1.0, gen) * (2 * aug.translate + 2 * aug.crop_padding / w)
        ty = _uniform(n, -1.0, 1.0, gen) * (2 * aug.translate + 2 * aug.crop_padding / h)
        if aug.crop_padding:  # crops move by whole pixels
            tx = torch.round(tx * w / 2) * 2 / w
            ty = torch.round(ty * h / 2) * 2 / h
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(dev, x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if aug.color_jitter:
        j = aug.color_jitter
        brightness = _uniform(n, 1 - j, 1 + j, gen).to(dev, x.dtype).view(n, 1, 1, 1)
        contrast = _uniform(n, 1 - j, 1 + j, gen).to(dev, x.dtype).view(n, 1, 1, 1)
        x = x * brightness
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * contrast + mean).clamp_(0.0, 1.0)
    return x
