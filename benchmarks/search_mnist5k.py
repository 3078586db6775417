"""automl-cnn against a plain sequential Optuna loop: same space, data and wall-clock budget.

    python benchmarks/search_mnist5k.py --budget 600

Prints, for each system, the held-out test accuracy it delivers and when (wall seconds from
start to a trained model), and the best validation accuracy over time.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--budget", type=float, default=600.0, help="seconds per system")
    p.add_argument("--data", default="mnist5k")
    p.add_argument("--space", default=str(ROOT / "search_spaces" / "default.yaml"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    warnings.filterwarnings("ignore")
    for name in ("mlflow", "alembic", "ray"):
        logging.getLogger(name).setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    from baselines import plain_optuna

    import automl_cnn
    from automl_cnn.data import load_images, split_data
    from automl_cnn.space import load_space

    space = load_space(args.space)
    bundle = split_data(load_images(args.data), seed=args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        ours = automl_cnn.search(
            args.data,
            space,
            time_budget=args.budget,
            seed=args.seed,
            out=Path(tmp) / "out",
            tracking_uri=f"sqlite:///{tmp}/mlflow.db",
            progress=False,
        )
        elapsed = time.monotonic() - t0
        timeline, best = [], 0.0
        for r in sorted(ours.trials, key=lambda r: r.started + r.seconds):
            if r.outcome == "completed" and (r.val_acc or 0) > best:
                best = r.val_acc or 0.0
                timeline.append((r.started + r.seconds - t0, best))
        rows.append(
            (
                "automl-cnn (default settings)",
                ours.test_accuracy,
                ours.val_accuracy,
                len(ours.trials),
                elapsed,
                timeline,
            )
        )
    base = plain_optuna(
        "plain Optuna TPE loop", bundle, space, args.budget, optuna.samplers.TPESampler(seed=args.seed), args.seed
    )
    rows.append((base.name, base.test_accuracy, base.val_accuracy, base.trials, base.seconds, base.timeline))

    print(f"\n{args.data}, space {space.name}, budget {args.budget:.0f} s per system, seed {args.seed}\n")
    print("| system | test accuracy | val accuracy | trials | seconds to a trained model |")
    print("|---|---|---|---|---|")
    for name, test, val, n, secs, _ in rows:
        print(f"| {name} | {test:.4f} | {val:.4f} | {n} | {secs:.0f} |")
    print("\nbest validation accuracy over time (seconds: accuracy)")
    for name, *_, timeline in rows:
        print(f"- {name}: " + ", ".join(f"{s:.0f}s: {a:.4f}" for s, a in timeline))
    ratio = rows[0][1] - rows[1][1]
    print(f"\ntest accuracy difference (automl-cnn minus plain loop): {ratio:+.4f}")


if __name__ == "__main__":
    main()
