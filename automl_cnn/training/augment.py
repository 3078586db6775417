"""Training-time augmentation of a whole batch at once, each image with its own random draw.

torchvision's v2 transforms draw one set of random parameters per call, so applied to a batch
tensor every image gets the same flip and the same shift; looping over images instead costs more
than the training step for small CNNs. Here flips are a masked ``where``, and rotation,
translation, scale and crop-with-padding fold into one affine matrix per image applied with a
single ``affine_grid`` + ``grid_sample``.

TrivialAugmentWide (torchvision's v2 transform, a policy a space may search) picks one op and
magnitude per call; it is called once per group of :data:`TRIVIAL_GROUPS` images, on uint8, with
torch's random state forked and seeded from the trial's generator (so a resumed trial draws the
same ops, and dropout's random stream is untouched). Random erasing is per image: with its
probability, a box of 2-33% of the image with aspect ratio 0.3-3.3 is set to zero (after
normalisation's input, i.e. black), as torchvision's ``RandomErasing`` does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from automl_cnn.model.architecture import Augmentation

TRIVIAL_GROUPS = 8  # TrivialAugmentWide: one op per this many images


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
    if aug.trivial:
        x = _trivial(x, gen)
    if aug.erasing:
        x = _erase(x, aug.erasing, gen)
    if aug.color_jitter:
        j = aug.color_jitter
        brightness = _uniform(n, 1 - j, 1 + j, gen).to(dev, x.dtype).view(n, 1, 1, 1)
        contrast = _uniform(n, 1 - j, 1 + j, gen).to(dev, x.dtype).view(n, 1, 1, 1)
        x = x * brightness
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * contrast + mean).clamp_(0.0, 1.0)
    return x


def _trivial(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """TrivialAugmentWide on groups of :data:`TRIVIAL_GROUPS` images (float in [0, 1] in and out)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    policy = v2.TrivialAugmentWide()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        as_bytes = (x.clamp(0, 1) * 255).round().to(torch.uint8)
        groups = [policy(group) for group in as_bytes.split(TRIVIAL_GROUPS)]
    return torch.cat(groups).to(x.dtype) / 255.0


def _erase(x: torch.Tensor, probability: float, gen: torch.Generator) -> torch.Tensor:
    """Random erasing per image: with ``probability``, one box zeroed."""
    n, _, h, w = x.shape
    area = _uniform(n, 0.02, 0.33, gen) * h * w
    ratio = torch.exp(_uniform(n, math.log(0.3), math.log(3.3), gen))
    bh = (area * ratio).sqrt().clamp(1, h).round()
    bw = (area / ratio).sqrt().clamp(1, w).round()
    top = (torch.rand(n, generator=gen) * (h - bh + 1)).floor()
    left = (torch.rand(n, generator=gen) * (w - bw + 1)).floor()
    erase = torch.rand(n, generator=gen) < probability
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    inside = (rows >= top.view(n, 1, 1)) & (rows < (top + bh).view(n, 1, 1))
    inside = inside & (cols >= left.view(n, 1, 1)) & (cols < (left + bw).view(n, 1, 1))
    mask = (inside & erase.view(n, 1, 1)).unsqueeze(1).to(x.device)
    return x.masked_fill(mask, 0.0)
