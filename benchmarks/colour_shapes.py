"""A harder generated colour task: six shapes on coloured backgrounds with clutter and noise, and
how automl-cnn does on it against an RBF SVC on raw pixels trained on the same split.

    python benchmarks/colour_shapes.py --images 3000 --budget 600 --seed 0

Each image (RGB, 48x48 by default) holds one shape (circle, square, triangle, star, cross,
hexagon), filled or as an outline, at a random position, size and rotation, in a random colour
that stands out from a random background; a few clutter lines in other colours run behind and
across it, and Gaussian pixel noise covers everything. Classes are balanced and the generator is
deterministic in its seed (``make_shapes``).

The benchmark searches the images with ``automl_cnn.search`` (a fresh MLflow store in a
temporary folder), fits ``sklearn.svm.SVC()`` on the flattened pixels (scaled to [0, 1]) of the
search's own train+val split and scores it on its test split, and scores the delivered model on
a second set generated from another seed (``--holdout`` images, 3,000 by default: a tighter
interval than the 450 test images of 3,000). It prints one Markdown table (the winning trial's
validation accuracy, the delivered model's test accuracy, their gap, the held-out accuracy, the
SVC's test accuracy, seconds), whether the test accuracy is within 3 points of the validation
accuracy (with the spread that the two splits' sizes alone put on that gap: about +-6 points
for 450 + 450 images at 65%; the winner's validation score is also the best of many, so biased
upwards), whether it is above the SVC's (on the same test images, McNemar's exact test at 5%),
and the search's summary.

    python benchmarks/colour_shapes.py --preview shapes.png       # 36 labelled samples, then exit
    python benchmarks/colour_shapes.py --write-folder shapes/     # one PNG folder per class, then exit
    python benchmarks/colour_shapes.py --check                    # the SVC and a small CNN, no search
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from baselines import quiet
from PIL import Image, ImageDraw

from automl_cnn.data import DataBundle, ImageSet
from automl_cnn.model.architecture import Candidate

CLASSES = ("circle", "square", "triangle", "star", "cross", "hexagon")
SUPERSAMPLE = 4  # shapes are drawn this many times larger, then reduced with a box filter
HOLDOUT_SEED_OFFSET = 1_000  # the held-out set's generator seed is the benchmark's seed plus this
# how hard the images are
RADIUS = (0.28, 0.45)  # the shape's circumradius, as a fraction of the side
SHIFT = 0.5  # how far its centre may sit from the image's, as a fraction of the room it has
LINES = (1, 3)  # clutter lines per image, at least and at most
NOISE = (4.0, 16.0)  # standard deviation of the pixel noise (0-255), drawn per image
CONTRAST = 160.0  # least RGB distance (0-255 a channel) of the shape's colour from the background's
LUMA_CONTRAST = 100.0  # and least difference of their luma (0-255): lighter or darker, at random

Colour = tuple[int, int, int]

# ``--difficulty hard``: smaller shapes in heavier clutter and noise, nearer the background's
# colour (for data large enough that the standard task is solved by any small CNN)
HARD = {"RADIUS": (0.16, 0.32), "LINES": (4, 8), "NOISE": (24.0, 56.0), "CONTRAST": 80.0, "LUMA_CONTRAST": 30.0}


def set_difficulty(name: str) -> None:
    """``standard`` (the constants above) or ``hard`` (:data:`HARD`), for the images made next."""
    if name not in ("standard", "hard"):
        raise ValueError(f"unknown difficulty {name!r}: standard or hard")
    values = HARD if name == "hard" else _STANDARD
    globals().update(values)


_STANDARD = {k: globals()[k] for k in HARD}


def make_shapes(n_images: int, size: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``n_images`` RGB images (uint8, NCHW), their labels (int64, balanced over the classes in a
    random order) and the class names; the same arguments give the same images."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n_images) % len(CLASSES)).astype(np.int64)
    x = np.empty((n_images, 3, size, size), dtype=np.uint8)
    for i, label in enumerate(labels.tolist()):
        x[i] = draw_image(CLASSES[label], size, rng).transpose(2, 0, 1)
    return x, labels, CLASSES


def draw_image(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One image (HWC uint8): background, clutter behind, the shape, clutter across, noise."""
    big = size * SUPERSAMPLE
    background, foreground = _colour(rng), _colour(rng)
    while np.linalg.norm(np.subtract(foreground, background)) < CONTRAST or (
        abs(_luma(foreground) - _luma(background)) < LUMA_CONTRAST
    ):
        background, foreground = _colour(rng), _colour(rng)
    img = Image.new("RGB", (big, big), background)
    draw = ImageDraw.Draw(img)
    n_lines = int(rng.integers(LINES[0], LINES[1] + 1))
    behind = int(rng.integers(0, n_lines + 1))
    for k in range(n_lines):
        if k == behind:
            _draw_shape(draw, shape, foreground, size, rng)
        _draw_line(draw, _colour(rng, far_from=(background, foreground), distance=90), big, rng)
    if behind == n_lines:
        _draw_shape(draw, shape, foreground, size, rng)
    small = np.asarray(img.resize((size, size), Image.Resampling.BOX), dtype=np.float32)
    sigma = float(rng.uniform(*NOISE))
    noisy = small + rng.normal(0.0, sigma, small.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _luma(c: Colour) -> float:
    """Brightness as the eye sees it (ITU-R BT.601 weights), 0-255."""
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _colour(rng: np.random.Generator, far_from: Sequence[Colour] = (), distance: float = 0.0) -> Colour:
    """A random colour at least ``distance`` (Euclidean, RGB 0-255) from each of ``far_from``."""
    while True:
        c = rng.integers(0, 256, 3)
        if all(np.linalg.norm(c - np.asarray(o)) >= distance for o in far_from):
            return (int(c[0]), int(c[1]), int(c[2]))


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, colour: Colour, size: int, rng: np.random.Generator) -> None:
    """The shape, filled or as an outline 1.5-3 px wide, its circumradius a random fraction of the
    side in ``RADIUS``, rotated at random, its centre shifted at random (``SHIFT``), wholly inside
    the image."""
    s = SUPERSAMPLE
    radius = float(rng.uniform(*RADIUS)) * size
    cx, cy = (size / 2 + SHIFT * float(rng.uniform(-1, 1)) * (size / 2 - radius - 1) for _ in range(2))
    angle = float(rng.uniform(0.0, 2 * math.pi))
    filled = bool(rng.random() < 0.5)
    width = round(float(rng.uniform(1.5, 3.0)) * s)  # outline width in big pixels
    r, cx, cy = radius * s, cx * s, cy * s
    if shape == "circle":
        box = (cx - r, cy - r, cx + r, cy + r)
        draw.ellipse(box, fill=colour if filled else None, outline=colour, width=width)
        return
    points = _outline(shape, r, angle, cx, cy)
    if filled:
        draw.polygon(points, fill=colour)
    else:
        draw.line([*points, points[0], points[1]], fill=colour, width=width, joint="curve")


def _outline(shape: str, r: float, angle: float, cx: float, cy: float) -> list[tuple[float, float]]:
    """The corners of a polygonal shape of circumradius ``r``, rotated by ``angle``, centred."""
    polar: list[tuple[float, float]]  # (radius, angle)
    if shape in ("square", "triangle", "hexagon"):
        n = {"square": 4, "triangle": 3, "hexagon": 6}[shape]
        polar = [(r, 2 * math.pi * k / n) for k in range(n)]
    elif shape == "star":  # five points, inner radius 0.42 of the outer
        polar = [(r if k % 2 == 0 else 0.42 * r, math.pi * k / 5) for k in range(10)]
    elif shape == "cross":  # a plus sign whose arms are a third of its span wide
        a = r / math.sqrt(1 + 1 / 9)  # half the span, so the arm ends' corners lie on the circle
        t = a / 3
        arm = [(t, a), (t, t), (a, t)]  # one arm's end and the inner corner after it; four turns
        polar = [(math.hypot(px, py), math.atan2(py, px) - k * math.pi / 2) for k in range(4) for px, py in arm]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return [(cx + d * math.cos(phi + angle), cy + d * math.sin(phi + angle)) for d, phi in polar]


def _draw_line(draw: ImageDraw.ImageDraw, colour: Colour, big: int, rng: np.random.Generator) -> None:
    """A clutter line between two random points of the image (beyond its edges allowed), 1-2 px wide."""
    x0, y0, x1, y1 = (float(v) for v in rng.uniform(-0.1 * big, 1.1 * big, 4))
    draw.line([(x0, y0), (x1, y1)], fill=colour, width=int(rng.integers(1, 3)) * SUPERSAMPLE)


def write_folder(folder: Path, x: np.ndarray, y: np.ndarray, class_names: Sequence[str]) -> None:
    """One sub-folder of PNGs per class, the layout ``automl-cnn search --data FOLDER`` reads."""
    for name in class_names:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for i, (img, label) in enumerate(zip(x, y.tolist(), strict=True)):
        Image.fromarray(img.transpose(1, 2, 0)).save(folder / class_names[label] / f"{i:05d}.png")


def preview(path: Path, x: np.ndarray, y: np.ndarray, class_names: Sequence[str], scale: int = 3) -> None:
    """A 6x6 grid of the first 36 images, each enlarged ``scale`` times, its class written below."""
    n, side, label_h, cols = min(36, len(x)), x.shape[2] * scale, 14, 6
    rows = math.ceil(n / cols)
    sheet = Image.new("RGB", (cols * (side + 4), rows * (side + label_h + 4)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        left, top = (i % cols) * (side + 4) + 2, (i // cols) * (side + label_h + 4) + 2
        tile = Image.fromarray(x[i].transpose(1, 2, 0)).resize((side, side), Image.Resampling.NEAREST)
        sheet.paste(tile, (left, top))
        draw.text((left + 2, top + side + 1), class_names[int(y[i])], fill=(0, 0, 0))
    sheet.save(path)


def svc_accuracy(bundle: DataBundle) -> float:
    """``SVC()`` (RBF kernel, sklearn's defaults) on the flattened pixels in [0, 1] of train+val,
    scored on the test split; returns the test accuracy."""
    return float((svc_predictions(bundle) == bundle.test_split()[1]).mean())


def svc_predictions(bundle: DataBundle) -> np.ndarray:
    from sklearn.svm import SVC

    x, y = _flat(bundle.images.x), bundle.images.y
    fit_idx = np.concatenate([bundle.train_idx, bundle.val_idx])
    return np.asarray(SVC().fit(x[fit_idx], y[fit_idx]).predict(x[bundle.test_idx]))


def _flat(x: object) -> np.ndarray:
    assert isinstance(x, np.ndarray)
    return x.reshape(len(x), -1).astype(np.float32) / 255.0


def small_cnn(epochs: int) -> Candidate:
    """A fixed small CNN for the difficulty check: three conv-BN-ReLU-maxpool blocks (16, 32, 64
    filters), global average pooling, Adam with a cosine schedule."""
    from automl_cnn.model.architecture import Architecture, Candidate, ConvBlock, Head, TrainConfig

    blocks = tuple(ConvBlock(filters=f) for f in (16, 32, 64))
    training = TrainConfig(learning_rate=3e-3, batch_size=64, epochs=epochs, lr_schedule="cosine")
    return Candidate(Architecture(blocks, Head(type="global_avg")), training)


def mcnemar_p(ours: np.ndarray, theirs: np.ndarray, y: np.ndarray) -> float:
    """Exact two-sided McNemar p-value of two classifiers' predictions on the same images."""
    from scipy.stats import binomtest

    only_ours = int(((ours == y) & (theirs != y)).sum())
    only_theirs = int(((ours != y) & (theirs == y)).sum())
    if only_ours + only_theirs == 0:
        return 1.0
    return float(binomtest(only_ours, only_ours + only_theirs, 0.5).pvalue)


def _variance(acc: float, n: int) -> float:
    """The variance of an accuracy measured on ``n`` images."""
    return acc * (1 - acc) / max(n, 1)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=3000, help="images to generate and split 70/15/15")
    p.add_argument("--size", type=int, default=48, help="side of the square images in pixels")
    p.add_argument("--budget", type=float, default=600, help="search time budget in seconds")
    p.add_argument("--seed", type=int, default=0, help="seeds the generator, the split and the search")
    p.add_argument("--space", default="default", help="a search space name or YAML file")
    p.add_argument("--holdout", type=int, default=3000, help="images in the second, independently generated set")
    p.add_argument("--preview", type=Path, metavar="FILE.png", help="save 36 labelled samples and exit")
    p.add_argument("--write-folder", type=Path, metavar="DIR", help="write one PNG folder per class and exit")
    p.add_argument("--check", action="store_true", help="only the SVC and a small fixed CNN, no search")
    p.add_argument("--check-epochs", type=int, default=10, help="epochs of the small CNN of --check")
    p.add_argument("--difficulty", default="standard", choices=("standard", "hard"), help="how hard the images are")
    args = p.parse_args(argv)
    quiet()
    set_difficulty(args.difficulty)
    x, y, names = make_shapes(args.images, args.size, args.seed)
    if args.preview or args.write_folder:
        if args.preview:
            preview(args.preview, x, y, names)
            print(f"wrote 36 samples to {args.preview}")
        if args.write_folder:
            write_folder(args.write_folder, x, y, names)
            print(f"wrote {len(x)} images in {len(names)} class folders under {args.write_folder}")
        return
    from automl_cnn.data import split_data

    images = ImageSet(x, y, names, name="colour-shapes")
    bundle = split_data(images, seed=args.seed)  # the split search() makes: its seed is the search seed
    sizes = f"{len(bundle.train_idx)}/{len(bundle.val_idx)}/{len(bundle.test_idx)}"
    print(
        f"colour-shapes: {args.images} images {args.size}x{args.size} RGB, {len(names)} classes, "
        f"split {sizes}, seed {args.seed}",
        flush=True,
    )
    if args.check:
        _check(bundle, args.check_epochs, args.seed)
        return
    _benchmark(images, bundle, args)


def _check(bundle: DataBundle, epochs: int, seed: int) -> None:
    import torch

    from automl_cnn.model.trained import TrainedModel
    from automl_cnn.training.trainer import fit

    t0 = time.monotonic()
    svc = svc_accuracy(bundle)
    print(
        f"SVC (RBF, raw pixels) test accuracy {svc:.4f} (chance {1 / bundle.num_classes:.4f}), "
        f"{time.monotonic() - t0:.0f} s",
        flush=True,
    )
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0, cand = time.monotonic(), small_cnn(epochs)
    trainer, history = fit(cand, bundle.search_data(), seed=seed, device="cpu")
    for h in history:
        print(f"  small CNN epoch {h.epoch}: train {h.train_acc:.4f}  val {h.val_acc:.4f}", flush=True)
    model = TrainedModel(trainer.model.eval(), cand, bundle.input_shape, bundle.class_names, bundle.mean, bundle.std)
    x_test, y_test = bundle.test_split()
    print(
        f"small CNN ({cand.architecture.describe()}, {epochs} epochs on train): "
        f"test accuracy {model.accuracy(x_test, y_test):.4f}, {time.monotonic() - t0:.0f} s"
    )


def _benchmark(images: ImageSet, bundle: DataBundle, args: argparse.Namespace) -> None:
    import automl_cnn
    from automl_cnn.deliver.result import with_interval

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        result = automl_cnn.search(
            images,
            args.space,
            time_budget=args.budget,
            seed=args.seed,
            progress=False,
            out=f"{tmp}/out",
            tracking_uri=f"sqlite:///{tmp}/mlflow.db",
        )
        search_seconds = time.monotonic() - t0
        summary = result.summary()
    if result.data is not None:  # the search split the images as we did, or the SVC comparison is moot
        assert np.array_equal(result.data.test_idx, bundle.test_idx), "the search used another split"
    x_test, y_test = bundle.test_split()
    ours = result.model.predict(x_test)
    recomputed = float((ours == y_test).mean())
    x_held, y_held, _ = make_shapes(args.holdout, args.size, args.seed + HOLDOUT_SEED_OFFSET)
    held = float((result.model.predict(x_held) == y_held).mean())
    t1 = time.monotonic()
    svc_pred = svc_predictions(bundle)
    svc_seconds = time.monotonic() - t1
    svc = float((svc_pred == y_test).mean())
    gap = 100 * (result.val_accuracy - result.test_accuracy)
    p_value = mcnemar_p(ours, svc_pred, y_test)

    print(
        f"\n## colour-shapes: {len(images.y)} images, space {args.space}, budget {args.budget:.0f} s, "
        f"seed {args.seed}\n"
    )
    print(
        "| winning trial val accuracy | delivered test accuracy | gap (points, val - test) "
        f"| held-out accuracy ({args.holdout} images, seed {args.seed + HOLDOUT_SEED_OFFSET}) "
        "| SVC test accuracy | search seconds | SVC seconds |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {with_interval(result.val_accuracy, len(bundle.val_idx))} "
        f"| {with_interval(result.test_accuracy, len(y_test))} | {gap:+.1f} "
        f"| {with_interval(held, len(y_held))} | {with_interval(svc, len(y_test))} "
        f"| {search_seconds:.0f} | {svc_seconds:.0f} |"
    )
    noise = (
        100
        * 1.96
        * math.sqrt(_variance(result.val_accuracy, len(bundle.val_idx)) + _variance(result.test_accuracy, len(y_test)))
    )
    print(
        f"\nwithin 3 points: {'yes' if abs(gap) <= 3 else 'no'} (|{gap:.1f}|; sampling error of the two splits' "
        f"sizes alone puts a 95% spread of +-{noise:.1f} points on this gap)"
    )
    above = result.test_accuracy > svc and p_value < 0.05
    print(
        f"above SVC: {'yes' if above else 'no'} ({100 * (result.test_accuracy - svc):+.1f} points on the same "
        f"{len(y_test)} test images, McNemar exact p = {p_value:.2g})"
    )
    print(
        f"trials: {len(result.trials)} ({', '.join(f'{v} {k}' for k, v in result.counts.items())}); "
        f"delivered trial {result.best_trial}, promotion {result.promotion or '-'}"
    )
    if abs(recomputed - result.test_accuracy) > 1e-9:
        print(
            f"note: the delivered model scores {recomputed:.4f} on the test split here, not {result.test_accuracy:.4f}"
        )
    if result.pick_rule:
        print(f"pick rule: {result.pick_rule}")
    print(f"\n```\n{summary}\n```")


if __name__ == "__main__":
    main()
