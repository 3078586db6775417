"""Early stopping with several objectives: the same ``--objective accuracy,params`` search with
multi-objective ASHA (``--pruner asha``, the default) and without early stopping (``--pruner
none``), one after the other in one process, each with the same data, split, space, seed and
wall-clock budget.

    python benchmarks/moasha_hypervolume.py                      # mnist5k, default space, 10 minutes each
    python benchmarks/moasha_hypervolume.py --budget 2m --data digits --space search_spaces/tiny.yaml

For each run it prints the hypervolume of the Pareto front of the completed trials (validation
accuracy against parameters) as it stood at 50% and at 100% of the budget, counting a trial
from when it ended (seconds from the run's start, Ray and MLflow start-up included), the
trials completed, stopped early and failed, and the ratios with/without. Repeats of a trained
candidate add nothing to the front and are left out.

The hypervolume is measured in the plane (validation error = 1 - accuracy, log10 parameters),
both minimised, against the reference point ``--reference ACCURACY,PARAMETERS`` (default
0.8,1e7: 80% accuracy and ten million parameters, i.e. the point (0.2, 7.0)); trials beyond it
add nothing.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from baselines import quiet

from automl_cnn.engine.config import parse_duration
from automl_cnn.engine.records import TrialRecord

ROOT = Path(__file__).resolve().parent.parent
RUNS = (("asha", "with early stopping (multi-objective ASHA)"), ("none", "without early stopping"))


def hypervolume_2d(points: Sequence[tuple[float, float]], reference: tuple[float, float]) -> float:
    """The area dominated by ``points`` (both coordinates minimised) and bounded by ``reference``."""
    inside = sorted(p for p in points if p[0] < reference[0] and p[1] < reference[1])
    area, floor = 0.0, reference[1]
    for x, y in inside:  # ascending x: each point adds the strip below the lowest y so far
        if y < floor:
            area += (reference[0] - x) * (floor - y)
            floor = y
    return area


@dataclass
class Run:
    label: str
    trials: list[tuple[float, float, int]]  # (seconds from the start when it ended, val accuracy, params)
    counts: dict[str, int]
    seconds: float
    stopped_by_rule: int

    def hypervolume(self, at: float, reference: tuple[float, float]) -> float:
        points = [(1.0 - acc, math.log10(params)) for end, acc, params in self.trials if end <= at]
        return hypervolume_2d(points, (1.0 - reference[0], math.log10(reference[1])))

    def completed_by(self, at: float) -> int:
        return sum(1 for end, _acc, _params in self.trials if end <= at)


def run_search(pruner: str, label: str, args: argparse.Namespace, workdir: str) -> Run:
    import automl_cnn

    settings = {"executor": args.executor} if args.executor else {}
    t0 = time.monotonic()
    result = automl_cnn.search(
        args.data,
        args.space,
        time_budget=args.budget,
        seed=args.seed,
        objectives=("accuracy", "params"),
        pruner=pruner,
        out=f"{workdir}/out-{pruner}",
        progress=False,
        tracking_uri=f"sqlite:///{workdir}/mlflow.db",
        **settings,
    )
    seconds = time.monotonic() - t0
    trained = [r for r in result.trials if r.duplicate_of is None]
    done = [r for r in trained if _completed(r)]
    counts = {o: sum(1 for r in trained if r.outcome == o) for o in ("completed", "pruned", "failed")}
    by_rule = sum(1 for r in trained if r.outcome == "pruned" and "multi-objective" in r.reason)
    ends = [(r.started + r.seconds - t0, float(r.val_acc or 0.0), r.profile.params) for r in done if r.profile]
    return Run(label, ends, counts, seconds, by_rule)


def _completed(r: TrialRecord) -> bool:
    return r.outcome == "completed" and r.val_acc is not None and math.isfinite(r.val_acc)


def report(runs: list[Run], budget: float, reference: tuple[float, float]) -> None:
    half = budget / 2
    print(
        f"| run | HV at {half:.0f} s (50%) | HV at {budget:.0f} s (100%) | completed by 50% / 100% "
        "| trials completed / stopped early (by the rule) / failed | wall s |"
    )
    print("|---|---|---|---|---|---|")
    for r in runs:
        c = r.counts
        print(
            f"| {r.label} | {r.hypervolume(half, reference):.4f} | {r.hypervolume(budget, reference):.4f} "
            f"| {r.completed_by(half)} / {r.completed_by(budget)} "
            f"| {c['completed']} / {c['pruned']} ({r.stopped_by_rule}) / {c['failed']} | {r.seconds:.0f} |"
        )
    if len(runs) == 2:
        hv = {(k, at): run.hypervolume(at, reference) for k, run in enumerate(runs) for at in (half, budget)}
        print()
        for name, a, b in (  # runs[0] is with early stopping, runs[1] without
            ("with / without at 50%", hv[0, half], hv[1, half]),
            ("with / without at 100%", hv[0, budget], hv[1, budget]),
            ("with at 50% / without at 100%", hv[0, half], hv[1, budget]),
        ):
            print(f"- {name}: {a / b:.3f}" if b > 0 else f"- {name}: undefined (no volume without)")


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", default="10m", help="wall-clock budget per run, e.g. 10m, 2m, 300 (default 10m)")
    p.add_argument("--data", default="mnist5k")
    p.add_argument("--space", default=str(ROOT / "search_spaces" / "default.yaml"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference", default="0.8,1e7", help="ACCURACY,PARAMETERS of the reference point")
    p.add_argument("--executor", default=None, help="ray (the search's default) or inprocess")
    p.add_argument("--only", choices=("asha", "none"), help="run just one of the two")
    args = p.parse_args(argv)
    args.budget = parse_duration(args.budget)
    acc, params = (float(v) for v in args.reference.split(","))
    quiet()
    runs = []
    for pruner, label in RUNS:
        if args.only in (None, pruner):
            with tempfile.TemporaryDirectory() as tmp:
                runs.append(run_search(pruner, label, args, tmp))
    print(
        f"\n## {args.data}: --objective accuracy,params, space {Path(args.space).stem}, "
        f"budget {args.budget:.0f} s per run, seed {args.seed}\n"
    )
    print(
        f"Hypervolume of the completed trials' front in (1 - val accuracy, log10 params), "
        f"reference point accuracy {acc:g}, {params:g} parameters = ({1 - acc:g}, {math.log10(params):g}).\n"
    )
    report(runs, args.budget, (acc, params))


if __name__ == "__main__":
    main()
