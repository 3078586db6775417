"""Transfer, offline: a ResNet-18 pretrained on one generated task, fine-tuned by the search on
another, against the default space from scratch at the same budget.

    python benchmarks/transfer.py --pretrain-seconds 600 --budget 600 --seeds 0,1,2
    python benchmarks/transfer.py --pretrain-seconds 60 --budget 60 --seeds 0     # a smoke run

1. Pretrain (``--pretrain-seconds`` of wall-clock time): torchvision's ``resnet18(weights=None)``
   with six outputs, on ``--source-images`` (30,000) 32x32 images of colour_shapes' six shapes
   (circle, square, triangle, star, cross, hexagon; ``--source-difficulty standard``), normalised with
   ImageNet's statistics as model/backbone.py normalises pretrained backbones (at 32x32 it does
   not resize). AdamW, batches of 128, the learning rate on a cosine of the time spent. Its
   state dict, less the classifier, is saved as ``resnet18-shapes.pth`` (``--weights-out``, or a
   temporary folder); with ``--weights FILE`` an earlier file is used instead.
2. The target: ``--target-images`` (1,000) 32x32 images of six *other* shapes (pentagon,
   octagon, ellipse, semicircle, arrow, L), drawn as colour_shapes draws its own (random
   colours, outline or filled, rotation, clutter lines, noise; ``--target-difficulty standard``,
   or ``hard``: smaller shapes, more clutter and noise, less contrast, at 32x32 close to
   unreadable): a small task the default space learns poorly from scratch (75-82% test
   accuracy at 10 minutes on 2 cores, seeds 0-2; docs/benchmarks.md).
3. Per seed, the same split of the same target is searched twice for ``--budget`` seconds:
   ``search_spaces/transfer.yaml`` with ``--backbone-weights resnet18=FILE,mobilenet_v3_small=none``
   (the search may still pick a CNN from scratch) and ``search_spaces/default.yaml``. The
   delivered model's test accuracy is the score.

Printed per seed and space: test accuracy, the winner's validation accuracy, what the winner is
(a backbone family, with weights from the file or from scratch, or blocks), the trials
(completed / pruned / failed: every trial is counted, failed ones too), the backbone trials
among them, seconds; then the mean per space and the difference (transfer minus default).
ImageNet weights are where the real gain lies; this measures that the machinery transfers.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import colour_shapes
import numpy as np
import torch
from baselines import markdown_table, quiet, search_in, trial_counts
from colour_shapes import make_shapes, set_difficulty

from automl_cnn.data import ImageSet
from automl_cnn.model.backbone import FAMILIES, IMAGENET_MEAN, IMAGENET_STD

SIZE = 32
TARGET_CLASSES = ("pentagon", "octagon", "ellipse", "semicircle", "arrow", "ell")
TARGET_SEED_OFFSET = 50_000  # the target's generator seed: the benchmark's seed plus this
SPACES = Path(__file__).resolve().parent.parent / "search_spaces"


# -- the target's shapes: corners as (radius, angle) around the centre, circumradius r ---------
def _target_polar(shape: str, r: float) -> list[tuple[float, float]]:
    if shape in ("pentagon", "octagon"):
        n = 5 if shape == "pentagon" else 8
        return [(r, 2 * math.pi * k / n) for k in range(n)]
    if shape == "ellipse":  # axes r and 0.5 r
        pts = [(r * math.cos(t), 0.5 * r * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 36, endpoint=False)]
    elif shape == "semicircle":  # the flat side through the centre
        pts = [(r * math.cos(t), r * math.sin(t)) for t in np.linspace(0, math.pi, 19)]
    elif shape == "arrow":  # a shaft and a head, pointing along +x
        pts = [(-r, 0.18 * r), (0.1 * r, 0.18 * r), (0.1 * r, 0.55 * r), (r, 0.0)]
        pts += [(0.1 * r, -0.55 * r), (0.1 * r, -0.18 * r), (-r, -0.18 * r)]
    elif shape == "ell":  # the letter L, arms 0.35 r wide
        a, w = 0.7 * r, 0.35 * r
        pts = [(-a, -a), (-a + w, -a), (-a + w, a - w), (a, a - w), (a, a), (-a, a)]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return [(math.hypot(x, y), math.atan2(y, x)) for x, y in pts]


_base_outline = colour_shapes._outline


def _outline(shape: str, r: float, angle: float, cx: float, cy: float) -> list[tuple[float, float]]:
    """colour_shapes' corners of a shape, the target's shapes added."""
    if shape not in TARGET_CLASSES:
        return _base_outline(shape, r, angle, cx, cy)
    return [(cx + d * math.cos(phi + angle), cy + d * math.sin(phi + angle)) for d, phi in _target_polar(shape, r)]


colour_shapes._outline = _outline  # draw_image draws the target's shapes too


def make_target(n_images: int, seed: int, difficulty: str = "standard") -> ImageSet:
    """``n_images`` 32x32 RGB images of the target's six shapes, balanced, deterministic in ``seed``."""
    set_difficulty(difficulty)
    rng = np.random.default_rng(seed + TARGET_SEED_OFFSET)
    labels = rng.permutation(np.arange(n_images) % len(TARGET_CLASSES)).astype(np.int64)
    x = np.empty((n_images, 3, SIZE, SIZE), dtype=np.uint8)
    for i, label in enumerate(labels.tolist()):
        x[i] = colour_shapes.draw_image(TARGET_CLASSES[label], SIZE, rng).transpose(2, 0, 1)
    return ImageSet(x, labels, TARGET_CLASSES, f"shapes-target-{difficulty}-{n_images}-{seed}")


# -- 1. pretraining -----------------------------------------------------------------------------
def _batches(x: torch.Tensor, y: torch.Tensor, size: int, gen: torch.Generator) -> list[tuple[torch.Tensor, ...]]:
    order = torch.randperm(len(x), generator=gen)
    return [(x[order[i : i + size]], y[order[i : i + size]]) for i in range(0, len(x), size)]


def pretrain(n_images: int, seconds: float, out: Path, difficulty: str, seed: int = 0) -> tuple[float, int]:
    """Train resnet18 on the source task for ``seconds``; save its state dict without the
    classifier to ``out``. Returns (held-out accuracy on 1,000 source images, epochs)."""
    import torchvision

    set_difficulty(difficulty)
    t0 = time.monotonic()
    x, y, names = make_shapes(n_images + 1_000, SIZE, seed)
    print(f"pretraining: {n_images} source images generated in {time.monotonic() - t0:.0f} s", flush=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    xs = (torch.from_numpy(x).float() / 255.0 - mean) / std
    ys = torch.from_numpy(y)
    train_x, train_y, held_x, held_y = xs[:n_images], ys[:n_images], xs[n_images:], ys[n_images:]
    torch.manual_seed(seed)
    net = torchvision.models.resnet18(weights=None, num_classes=len(names))
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(seed)
    start, epochs, done = time.monotonic(), 0, False
    while not done:
        net.train()
        for bx, by in _batches(train_x, train_y, 128, gen):
            spent = (time.monotonic() - start) / seconds
            if spent >= 1.0:
                done = True
                break
            for group in opt.param_groups:
                group["lr"] = 2e-3 * 0.5 * (1 + math.cos(math.pi * spent))
            flip = torch.rand(len(bx)) < 0.5
            bx = torch.where(flip.view(-1, 1, 1, 1), bx.flip(3), bx)
            loss = torch.nn.functional.cross_entropy(net(bx), by)
            opt.zero_grad()
            loss.backward()
            opt.step()
        epochs += 1
    net.eval()
    with torch.no_grad():
        accuracy = float((net(held_x).argmax(1) == held_y).float().mean())
    classifier = FAMILIES["resnet18"].classifier
    state = {k: v for k, v in net.state_dict().items() if not k.startswith(classifier + ".")}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    print(f"pretrained: {epochs} epochs (the last partial) in {seconds:.0f} s, source held-out "
          f"accuracy {accuracy:.4f}; saved {out}", flush=True)  # fmt: skip
    return accuracy, epochs


# -- 3. the searches ----------------------------------------------------------------------------
@dataclass
class Row:
    space: str
    seed: int
    test_acc: float
    val_acc: float
    winner: str
    trials: str
    backbone_trials: int
    seconds: float


def search_row(args: argparse.Namespace, space: str, seed: int, weights: Path, tmp: Path) -> Row:
    data = make_target(args.target_images, seed, args.target_difficulty)
    extra = {"backbone_weights": f"resnet18={weights},mobilenet_v3_small=none"} if space == "transfer" else {}
    t0 = time.monotonic()
    result = search_in(
        tmp, f"{space}-{seed}", data, SPACES / f"{space}.yaml",
        time_budget=args.budget, seed=seed, warm_start=args.warm_start, **extra,
    )  # fmt: skip
    backbone = result.candidate.architecture.backbone
    winner = (
        "blocks" if backbone is None else f"{backbone.family} ({'scratch' if backbone.weights == 'none' else 'file'})"
    )
    trials = trial_counts(result)
    n_backbone = sum(r.candidate.architecture.backbone is not None for r in result.trials)
    row = Row(space, seed, result.test_accuracy, result.val_accuracy, winner, trials, n_backbone,
              time.monotonic() - t0)  # fmt: skip
    print(f"  seed {seed} {space}: test acc {row.test_acc:.4f}, val {row.val_acc:.4f}, winner {winner}, "
          f"trials c/p/f {trials} ({n_backbone} backbone), {row.seconds:.0f} s", flush=True)  # fmt: skip
    return row


def report(rows: list[Row]) -> None:
    header = (
        "space",
        "seed",
        "test accuracy",
        "winner's val accuracy",
        "winner",
        "trials c/p/f",
        "backbone trials",
        "s",
    )
    table = [
        (r.space, r.seed, r.test_acc, r.val_acc, r.winner, r.trials, r.backbone_trials, f"{r.seconds:.0f}")
        for r in rows
    ]
    markdown_table(header, table)
    means = {}
    for space in dict.fromkeys(r.space for r in rows):
        means[space] = statistics.mean(r.test_acc for r in rows if r.space == space)
        print(f"mean test accuracy, {space}: {means[space]:.4f}")
    if {"transfer", "default"} <= means.keys():
        print(f"transfer - default: {means['transfer'] - means['default']:+.4f}")


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrain-seconds", type=float, default=600.0, help="wall-clock time of the pretraining")
    p.add_argument("--source-images", type=int, default=30_000, help="source task images (32x32)")
    p.add_argument("--target-images", type=int, default=1_000, help="target task images (32x32), split 70/15/15")
    p.add_argument("--source-difficulty", default="standard", choices=("standard", "hard"))
    p.add_argument("--target-difficulty", default="standard", choices=("standard", "hard"))
    p.add_argument("--budget", type=float, default=600.0, help="each search's time budget in seconds")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (target images, split and search)")
    p.add_argument("--spaces", default="transfer,default", help="the spaces to compare")
    p.add_argument("--warm-start", default="classics", help="both searches' --warm-start (default: the search's)")
    p.add_argument("--weights", type=Path, help="use this pretrained file instead of pretraining")
    p.add_argument("--weights-out", type=Path, help="where to save the pretrained file (default: a temporary one)")
    args = p.parse_args(argv)
    quiet()
    rows = []
    with tempfile.TemporaryDirectory(prefix="transfer-") as folder:
        weights = args.weights or args.weights_out or Path(folder) / "resnet18-shapes.pth"
        if args.weights is None:
            pretrain(args.source_images, args.pretrain_seconds, weights, args.source_difficulty)
        for seed in (int(s) for s in args.seeds.split(",")):
            for space in args.spaces.split(","):
                rows.append(search_row(args, space, seed, weights.resolve(), Path(folder)))
    report(rows)


if __name__ == "__main__":
    main()
