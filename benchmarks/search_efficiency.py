"""Search efficiency: automl-cnn (default settings) against a plain sequential Optuna TPE loop
and random search, on mnist5k and digits, with the same wall-clock budget per system.

    python benchmarks/search_efficiency.py --budget 600
    python benchmarks/search_efficiency.py --budget mnist5k=600,digits=300

For each dataset it prints the best validation accuracy over time, the final test accuracy of
each system's delivered model, and how much sooner automl-cnn reaches the validation target
than the plain TPE loop (a ratio measured in the same run).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

import optuna
from baselines import BaselineResult, automl_cnn_run, plain_optuna, quiet, report

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"mnist5k": 0.975, "digits": 0.98}
SYSTEMS = ("automl-cnn", "tpe", "random")


def budgets(text: str, datasets: list[str]) -> dict[str, float]:
    """``600`` (every dataset) or ``mnist5k=600,digits=300``."""
    if "=" not in text:
        return dict.fromkeys(datasets, float(text))
    given = {k: float(v) for k, v in (part.split("=") for part in text.split(","))}
    return {d: given[d] for d in datasets}


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", default="600", help="seconds per system: one number, or DATA=SECONDS,...")
    p.add_argument("--datasets", default="mnist5k,digits")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="the first is compared with the second")
    p.add_argument("--space", default=str(ROOT / "search_spaces" / "default.yaml"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    quiet()
    from automl_cnn.data import load_images, split_data
    from automl_cnn.space.schema import load_space

    space = load_space(args.space)
    datasets = args.datasets.split(",")
    seconds = budgets(args.budget, datasets)
    for data in datasets:
        budget, rows = seconds[data], []
        bundle = split_data(load_images(data), seed=args.seed)
        for system in args.systems.split(","):
            rows.append(_run(system, data, bundle, space, budget, args.seed))
        print(f"\n## {data}: space {space.name}, budget {budget:.0f} s per system, seed {args.seed}\n", flush=True)
        report(rows, threshold=TARGETS.get(data, 0.975))


def _run(system: str, data: str, bundle, space, budget: float, seed: int) -> BaselineResult:  # type: ignore[no-untyped-def]
    if system == "automl-cnn":
        with tempfile.TemporaryDirectory() as tmp:
            return automl_cnn_run(data, space, budget, seed, tmp)
    if system == "tpe":
        sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(seed=seed)
        return plain_optuna("plain Optuna TPE loop", bundle, space, budget, sampler, seed)
    if system == "random":
        return plain_optuna("random search", bundle, space, budget, optuna.samplers.RandomSampler(seed=seed), seed)
    raise SystemExit(f"unknown system {system!r}; choose from {', '.join(SYSTEMS)}")


if __name__ == "__main__":
    main()
