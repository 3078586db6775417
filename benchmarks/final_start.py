"""``--final-start restart`` against ``continue`` (issue 25, item 3): does a final fit that continues
from the winning trial's weights deliver a better model than one trained again from random weights?

    python benchmarks/final_start.py                                       # mnist5k, seeds 0,1,2, 10 min
    python benchmarks/final_start.py --data mnist5k,DIR1,DIR2 --seeds 0,1,2 --budget 600
    python benchmarks/final_start.py --data mnist5k --space tiny --trials 8 --seeds 0   # paired, quick

Per task and seed, one whole search per setting (``automl_cnn.search(data, space, seed=...,
final_start=...)``): the seed draws the split, so both settings of one seed are scored on the
same check half and the same test images.

* With ``--budget`` (the default: 600 s) each setting runs its own search with that time budget,
  as a user's would: the final fits get their planned epochs (up to twice the trial's where time
  is left). The two searches of a seed may end with different trials (timing differs), so the
  comparison is paired on the data, not on the winner.
* With ``--trials N`` and no ``--budget`` the search runs on the in-process executor with no time
  budget: its trials are the same under both settings (proposals, training and pruning are all
  seeded, and nothing depends on the clock), so the two runs differ only in their final fits,
  which train the trial's own epochs. The table's ``paired`` column says whether the winners and
  their validation scores matched.

Printed per run: the winner, the final fit against the trial's own weights on the check half
(the verdict's scores, for a winner fitted alone), which weights were delivered, the delivered
model's check-half and test accuracy; then per setting the mean test accuracy, and the paired
differences (continue minus restart) in test accuracy.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from baselines import quiet, search_in

SETTINGS = ("restart", "continue")


def _run(data: str, space: str, seed: int, start: str, args: argparse.Namespace) -> dict[str, Any]:
    from automl_cnn.engine.final.outcome import FINAL_FIT

    budget: dict[str, Any] = {"time_budget": args.budget} if args.budget else {}
    if args.trials:
        budget["trials"] = args.trials
        if not args.budget:
            budget["executor"] = "inprocess"  # nothing depends on the clock: the same trials for both
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        r = search_in(Path(tmp), "out", data, space, **budget, seed=seed, final_start=start, ensemble=args.ensemble)
        seconds = time.monotonic() - t0
    verdict = next((d for d in r.decisions if d.topic == FINAL_FIT), None)
    # the verdict's scores: one fit's (a winner alone); an ensemble's members are in its reason
    fit, own = verdict.scores[:2] if verdict and len(verdict.scores) >= 2 else (float("nan"), float("nan"))
    return {
        "data": data,
        "seed": seed,
        "start": start,
        "winner": r.best_trial,
        "winner_val": r.val_accuracy,
        "fit_check": fit,
        "own_check": own,
        "delivered": ", ".join(f"trial {d['trial']} ({d['weights']})" for d in r.delivered),
        "check": r.check_accuracy if r.check_accuracy is not None else float("nan"),
        "check_images": r.check_images,
        "test": r.test_accuracy,
        "test_images": r.test_images,
        "seconds": seconds,
        "verdict": verdict.line() if verdict else "",
    }


def _table(rows: list[dict[str, Any]]) -> None:
    print("\n| task | seed | final start | winner (val) | final fit / trial's own, check half | delivered |", end="")
    print(" delivered check half | test | paired | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    by_key = {(r["data"], r["seed"], r["start"]): r for r in rows}
    for r in rows:
        other = by_key.get((r["data"], r["seed"], "restart" if r["start"] == "continue" else "continue"))
        paired = other is not None and (other["winner"], other["winner_val"]) == (r["winner"], r["winner_val"])
        print(
            f"| {r['data']} | {r['seed']} | {r['start']} | trial {r['winner']} ({r['winner_val']:.4f}) "
            f"| {_pair(r['fit_check'], r['own_check'])} | {r['delivered']} "
            f"| {r['check']:.4f} ({r['check_images']}) | {r['test']:.4f} ({r['test_images']}) "
            f"| {'yes' if paired else 'no'} | {r['seconds']:.0f} |"
        )


def _pair(fit: float, own: float) -> str:
    return "several fits: see the verdict" if math.isnan(fit) else f"{fit:.4f} / {own:.4f}"


def _summary(rows: list[dict[str, Any]]) -> None:
    for data in dict.fromkeys(r["data"] for r in rows):
        mine = [r for r in rows if r["data"] == data]
        means = {s: statistics.mean(r["test"] for r in mine if r["start"] == s) for s in SETTINGS}
        diffs = []
        for seed in dict.fromkeys(r["seed"] for r in mine):
            tests = {r["start"]: r["test"] for r in mine if r["seed"] == seed}
            if len(tests) == 2:
                diffs.append(tests["continue"] - tests["restart"])
        text = ", ".join(f"{d:+.4f}" for d in diffs)
        print(f"\n{data}: mean test restart {means['restart']:.4f}, continue {means['continue']:.4f}; ", end="")
        print(f"continue minus restart per seed: {text}")


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="mnist5k", help="comma-separated data specs (default mnist5k)")
    p.add_argument("--space", default="default")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--budget", type=float, default=None, help="seconds per search (default 600 without --trials)")
    p.add_argument("--trials", type=int, default=None, help="trials per search (alone: paired, no time budget)")
    p.add_argument("--ensemble", default="auto", help="--ensemble of each search (off: the winner's fit alone)")
    args = p.parse_args(argv)
    if args.budget is None and args.trials is None:
        args.budget = 600.0
    quiet()
    rows = []
    for data in args.data.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            for start in SETTINGS:
                row = _run(data, args.space, seed, start, args)
                rows.append(row)
                print(f"{data} seed {seed} {start}: test {row['test']:.4f}; {row['verdict']}", flush=True)
    _table(rows)
    _summary(rows)


if __name__ == "__main__":
    main()
