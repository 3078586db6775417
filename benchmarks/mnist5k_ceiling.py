"""How far the VGG-style preset gets on mnist5k's splits when trained without a search: single
fits over several initialisation seeds, their seed ensembles, test-time shifts, elastic
distortion, a wider network, and another network family (``--net kaggle``). It bounds what the
10-minute search can deliver on the same splits (the search's winner there is this preset in
every run).

    python benchmarks/mnist5k_ceiling.py                          # split seeds 1,2; 4 fits of 20 epochs
    python benchmarks/mnist5k_ceiling.py --splits 0,1,2 --fits 3 --epochs 30
    python benchmarks/mnist5k_ceiling.py --splits 2 --fits 1 --elastic 34   # Simard et al.'s alpha
    python benchmarks/mnist5k_ceiling.py --splits 2 --fits 1 --width 2      # twice the filters
    python benchmarks/mnist5k_ceiling.py --net kaggle --splits 0,1,2 --fits 3 --epochs 40

Each fit trains on the split's train + validation (4,250 images), as the final fit does, and is
scored once on its 750 test images. "shifts" averages the softmax over the image and its four
one-pixel shifts. Elastic distortion (Simard et al. 2003: a uniform random displacement field
smoothed by a Gaussian of ``--sigma`` pixels, scaled by ``--elastic``) is applied before the
preset's own affine augmentation.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from baselines import quiet

from automl_cnn.data.builtin import load_mnist5k
from automl_cnn.data.bundle import split_data
from automl_cnn.model.architecture import Architecture, Augmentation, Candidate, ConvBlock, Head
from automl_cnn.space.presets import PRESETS
from automl_cnn.training import trainer as trainer_module
from automl_cnn.training.augment import augment

SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def _elastic(x: torch.Tensor, alpha: float, sigma: float, gen: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    radius = math.ceil(3 * sigma)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    d = torch.rand(n, 2, h, w, generator=gen) * 2 - 1
    d = F.conv2d(F.pad(d, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(2, 1, 1, 1), groups=2)
    d = F.conv2d(F.pad(d, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1).repeat(2, 1, 1, 1), groups=2)
    d = d * alpha
    gy, gx = torch.meshgrid(
        torch.linspace(-1 + 1 / h, 1 - 1 / h, h), torch.linspace(-1 + 1 / w, 1 - 1 / w, w), indexing="ij"
    )
    grid = torch.stack([gx, gy], -1).unsqueeze(0) + torch.stack([d[:, 0] * 2 / w, d[:, 1] * 2 / h], -1)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)


def _with_elastic(alpha: float, sigma: float) -> None:
    def elastic_then_affine(x: torch.Tensor, aug: Augmentation, gen: torch.Generator) -> torch.Tensor:
        return augment(_elastic(x, alpha, sigma, gen), aug, gen)

    trainer_module.augment = elastic_then_affine  # type: ignore[assignment]


# The net of Deotte's Kaggle MNIST ensemble ("How to choose CNN architecture", 2018): 3x3 pairs,
# a strided 5x5 convolution in place of pooling, dropout 0.4, batch norm throughout; trained with
# the preset's own recipe (Adam, cosine, rotation/shift/zoom augmentation).
KAGGLE = Candidate(
    Architecture(
        (
            ConvBlock(convs=2, filters=32, kernel_size=3, pooling="none"),
            ConvBlock(filters=32, kernel_size=5, stride=2, pooling="none", dropout=0.4),
            ConvBlock(convs=2, filters=64, kernel_size=3, pooling="none"),
            ConvBlock(filters=64, kernel_size=5, stride=2, pooling="none", dropout=0.4),
            ConvBlock(filters=128, kernel_size=4, padding="valid", pooling="none", dropout=0.4),
        ),
        Head("flatten"),
    ),
    PRESETS["vgg_small"].value.training,
)


def _preset(epochs: int, width: int, net: str) -> Candidate:
    c = KAGGLE if net == "kaggle" else PRESETS["vgg_small"].value
    blocks = tuple(dataclasses.replace(b, filters=b.filters * width) for b in c.architecture.blocks)
    return dataclasses.replace(
        c,
        architecture=dataclasses.replace(c.architecture, blocks=blocks),
        training=dataclasses.replace(c.training, epochs=epochs),
    )


@torch.inference_mode()
def _probs(trainer: trainer_module.Trainer, x: torch.Tensor, shifts: Sequence[tuple[int, int]]) -> torch.Tensor:
    model = trainer.model.eval()
    xb = trainer._batch(x)
    out = [torch.softmax(model(torch.roll(xb, (dy, dx), (2, 3))).float(), 1) for dx, dy in shifts]
    return torch.stack(out).mean(0)


def _accuracy(probs: torch.Tensor, y: torch.Tensor) -> float:
    return float((probs.argmax(1) == y).float().mean())


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--splits", default="1,2", help="split seeds (the search's --seed)")
    p.add_argument("--fits", type=int, default=4, help="initialisation seeds per split")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--width", type=int, default=1, help="filter multiplier")
    p.add_argument("--net", choices=("vgg", "kaggle"), default="vgg", help="VGG preset or Deotte's Kaggle net")
    p.add_argument("--elastic", type=float, default=0.0, help="elastic distortion alpha in pixels (0: off)")
    p.add_argument("--sigma", type=float, default=4.0)
    args = p.parse_args(argv)
    quiet()
    torch.set_num_threads(2)
    if args.elastic:
        _with_elastic(args.elastic, args.sigma)
    candidate = _preset(args.epochs, args.width, args.net)
    images = load_mnist5k()
    print(f"{args.net} net x{args.width} filters, {args.epochs} epochs, elastic alpha {args.elastic}")
    print("| split | fits | single fits | single, shifts | seed ensemble | seed ensemble, shifts | seconds |")
    print("|---|---|---|---|---|---|---|")
    for split in (int(s) for s in args.splits.split(",")):
        bundle = split_data(images, seed=split)
        x_np, y_np = bundle.test_split()
        x, y = torch.as_tensor(x_np), torch.as_tensor(y_np)
        plain, shifted = [], []
        t0 = time.monotonic()
        for fit_seed in range(args.fits):
            trainer, _ = trainer_module.fit(candidate, bundle.final_data(), seed=fit_seed)
            plain.append(_probs(trainer, x, SHIFTS[:1]))
            shifted.append(_probs(trainer, x, SHIFTS))
        singles = ", ".join(f"{_accuracy(q, y):.4f}" for q in plain)
        singles_shifted = ", ".join(f"{_accuracy(q, y):.4f}" for q in shifted)
        ens = _accuracy(torch.stack(plain).mean(0), y)
        ens_shifted = _accuracy(torch.stack(shifted).mean(0), y)
        seconds = time.monotonic() - t0
        row = [split, args.fits, singles, singles_shifted, f"{ens:.4f}", f"{ens_shifted:.4f}", f"{seconds:.0f}"]
        print("| " + " | ".join(map(str, row)) + " |", flush=True)


if __name__ == "__main__":
    main()
