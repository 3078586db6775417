"""The README's search on mnist5k with three seeds: mean test accuracy, and how often an ensemble
is delivered.

    python benchmarks/mnist5k_seeds.py                       # seeds 0,1,2; 10 minutes each
    python benchmarks/mnist5k_seeds.py --seeds 0 --budget 300

Each seed is a whole search with default settings (``automl_cnn.search("mnist5k", "default",
time_budget=..., seed=...)``): the seed draws the split (so each run has its own 750 test
images), the proposals and every trial's initialisation. For each run it prints the delivered
model's test accuracy with its 95% interval, the winning trial's validation accuracy, what was
delivered (the winner alone or an ensemble, and which weights) and the wall time; then the mean
test accuracy and the count of ensembles.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence

from baselines import quiet


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, default=600.0, help="seconds per search (default 600)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--data", default="mnist5k")
    p.add_argument("--space", default="default")
    args = p.parse_args(argv)
    quiet()
    import automl_cnn
    from automl_cnn.deliver.result import with_interval

    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.monotonic()
            r = automl_cnn.search(
                args.data,
                args.space,
                time_budget=args.budget,
                seed=seed,
                progress=False,
                out=f"{tmp}/out",
                tracking_uri=f"sqlite:///{tmp}/mlflow.db",
            )
            seconds = time.monotonic() - t0
        what = ", ".join(f"trial {d['trial']} x{d['weight']:.2f} ({d['weights']})" for d in r.delivered)
        kind = f"ensemble of {len(r.delivered)}" if r.is_ensemble else "single"
        completed = sum(1 for t in r.trials if t.outcome == "completed")
        rows.append(
            (seed, r.test_accuracy, r.test_images, r.val_accuracy, kind, what, completed, len(r.trials), seconds)
        )
        print(f"seed {seed}: test {r.test_accuracy:.4f}, {kind}: {what}; {seconds:.0f} s", flush=True)
        for note in r.notes:
            print(f"    {note}", flush=True)

    print(f"\n## {args.data}: space {args.space}, budget {args.budget:.0f} s per search\n")
    print("| seed | test accuracy | winning trial's val accuracy | delivered | trials (completed) | wall seconds |")
    print("|---|---|---|---|---|---|")
    for seed, test, n_test, val, kind, what, completed, trials, seconds in rows:
        print(
            f"| {seed} | {with_interval(test, n_test)} | {val:.4f} | {kind}: {what} | {trials} ({completed}) "
            f"| {seconds:.0f} |"
        )
    tests = [row[1] for row in rows]
    ensembles = sum(1 for row in rows if row[4] != "single")
    mean = statistics.mean(tests)
    print(f"\nmean test accuracy {mean:.4f} over {len(rows)} seeds; an ensemble in {ensembles} of {len(rows)}")


if __name__ == "__main__":
    main()
