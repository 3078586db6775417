"""Search efficiency: automl-cnn (default settings) against a plain sequential Optuna TPE loop
and random search, on mnist5k and digits, with the same wall-clock budget per system.

    python benchmarks/search_efficiency.py --budget 600

For each dataset it prints the best validation accuracy over time, the final test accuracy of
each system's delivered model, and how much sooner automl-cnn reaches the validation target
than the plain TPE loop (a ratio measured in the same run).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import optuna
from baselines import automl_cnn_run, plain_optuna, quiet, report

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"mnist5k": 0.975, "digits": 0.98}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--budget", type=float, default=600.0, help="seconds per system and dataset")
    p.add_argument("--datasets", default="mnist5k,digits")
    p.add_argument("--space", default=str(ROOT / "search_spaces" / "default.yaml"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    quiet()
    from automl_cnn.data import load_images, split_data
    from automl_cnn.space import load_space

    space = load_space(args.space)
    for data in args.datasets.split(","):
        bundle = split_data(load_images(data), seed=args.seed)
        with tempfile.TemporaryDirectory() as tmp:
            ours = automl_cnn_run(data, space, args.budget, args.seed, tmp)
        tpe = plain_optuna(
            "plain Optuna TPE loop", bundle, space, args.budget, optuna.samplers.TPESampler(seed=args.seed), args.seed
        )
        rnd = plain_optuna(
            "random search", bundle, space, args.budget, optuna.samplers.RandomSampler(seed=args.seed), args.seed
        )
        print(f"\n## {data}: space {space.name}, budget {args.budget:.0f} s per system, seed {args.seed}\n")
        report([ours, tpe, rnd], threshold=TARGETS.get(data, 0.975))


if __name__ == "__main__":
    main()
