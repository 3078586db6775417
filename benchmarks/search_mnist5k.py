"""automl-cnn against a plain sequential Optuna loop: same space, data and wall-clock budget.

    python benchmarks/search_mnist5k.py --budget 600

Prints, for each system, the held-out test accuracy it delivers and when (wall seconds from
start to a trained model), and the best validation accuracy over time.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import optuna
from baselines import automl_cnn_run, plain_optuna, quiet, report

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--budget", type=float, default=600.0, help="seconds per system")
    p.add_argument("--data", default="mnist5k")
    p.add_argument("--space", default=str(ROOT / "search_spaces" / "default.yaml"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    quiet()
    from automl_cnn.data import load_images, split_data
    from automl_cnn.space import load_space

    space = load_space(args.space)
    bundle = split_data(load_images(args.data), seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        ours = automl_cnn_run(args.data, space, args.budget, args.seed, tmp)
    plain = plain_optuna(
        "plain Optuna TPE loop", bundle, space, args.budget, optuna.samplers.TPESampler(seed=args.seed), args.seed
    )
    print(f"\n{args.data}, space {space.name}, budget {args.budget:.0f} s per system, seed {args.seed}\n")
    report([ours, plain], threshold=0.975)


if __name__ == "__main__":
    main()
