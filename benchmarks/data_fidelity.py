"""Bigger data on a budget: a generated CIFAR-sized folder (50,000 RGB images, 32x32), searched
for 10 minutes on this machine with today's behaviour (``--data-fidelity off``: every epoch on
all of the data) and with the data-size fidelity (``--data-fidelity auto``), in the same run.

    python benchmarks/data_fidelity.py --images 50000 --size 32 --budget 600 --seed 0

The images are :mod:`colour_shapes`' (six shapes, filled or outlined, random colours, clutter
lines, pixel noise), written once as a PNG folder per class that both searches read as
``automl-cnn search --data FOLDER`` would. For each setting it prints the trials by outcome
(completed, stopped early by the pruner, stopped or refused for time, failed), the epochs trained
on all of the data, the delivered model (architecture, validation and test accuracy with 95%
intervals, on the same 70/15/15 split) and the wall time, then both summaries.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from baselines import quiet
from colour_shapes import make_shapes, set_difficulty, write_folder

import automl_cnn
from automl_cnn.deliver.result import SearchResult, with_interval


def _counts(result: SearchResult) -> dict[str, int]:
    out = {"completed": 0, "pruned": 0, "too slow": 0, "refused for time": 0, "failed": 0}
    for rec in result.trials:
        if rec.outcome == "completed":
            out["completed"] += 1
        elif "not trained: at least" in rec.reason:
            out["refused for time"] += 1
        elif rec.too_slow or "time budget reached" in rec.reason:
            out["too slow"] += 1
        elif rec.outcome == "pruned":
            out["pruned"] += 1
        else:
            out["failed"] += 1
    return out


def _row(name: str, result: SearchResult, seconds: float) -> str:
    c = _counts(result)
    trained = [r for r in result.trials if r.history and r.duplicate_of is None]
    full = sum(1 for r in trained for e in r.history if e.fraction >= 1.0)
    subset = sum(1 for r in trained for e in r.history if e.fraction < 1.0)
    return (
        f"| {name} | {len(result.trials)} | {c['completed']} | {c['pruned']} | {c['too slow']} "
        f"| {c['refused for time']} | {c['failed']} | {full} / {subset} | {result.best_trial} "
        f"{result.candidate.architecture.describe()} | {with_interval(result.val_accuracy, result.val_images)} "
        f"| {with_interval(result.test_accuracy, result.test_images)} | {seconds:.0f} |"
    )


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=50_000, help="images to generate (split 70/15/15)")
    p.add_argument("--size", type=int, default=32, help="side of the square images in pixels")
    p.add_argument("--budget", type=float, default=600, help="each search's time budget in seconds")
    p.add_argument("--seed", type=int, default=0, help="seeds the generator, the split and the searches")
    p.add_argument("--space", default="default", help="a search space name or YAML file")
    p.add_argument("--settings", default="off,auto", help="--data-fidelity settings to run, in order")
    p.add_argument("--difficulty", default="hard", choices=("standard", "hard"), help="colour_shapes' difficulty")
    args = p.parse_args(argv)
    quiet()
    set_difficulty(args.difficulty)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        x, y, names = make_shapes(args.images, args.size, args.seed)
        folder = Path(tmp) / "shapes"
        write_folder(folder, x, y, names)
        del x
        print(
            f"generated and wrote {args.images} {args.size}x{args.size} RGB images ({args.difficulty}) "
            f"in {time.monotonic() - t0:.0f} s"
        )
        rows, summaries = [], []
        for setting in args.settings.split(","):
            t1 = time.monotonic()
            result = automl_cnn.search(
                str(folder),
                args.space,
                time_budget=args.budget,
                seed=args.seed,
                data_fidelity=setting,
                progress=False,
                out=f"{tmp}/out-{setting}",
                tracking_uri=f"sqlite:///{tmp}/mlflow.db",
            )
            seconds = time.monotonic() - t1
            rows.append(_row(f"--data-fidelity {setting}", result, seconds))
            summaries.append(f"### --data-fidelity {setting}\n\n{result.summary()}")
            print(rows[-1], flush=True)
    print(
        f"\n## {args.images} images {args.size}x{args.size} RGB ({args.difficulty}), space {args.space}, "
        f"budget {args.budget:.0f} s, seed {args.seed}\n"
    )
    print(
        "| setting | trials | completed | stopped by the pruner | stopped for time | refused for time | failed "
        "| epochs on all / on a subset | delivered | val accuracy | test accuracy | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    print("\n\n".join(summaries))


if __name__ == "__main__":
    main()
