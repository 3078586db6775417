"""After the search: pick the winner, retrain it on train + validation, score it once on test."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from automl_cnn.architecture import Candidate
from automl_cnn.driver import TrialRecord
from automl_cnn.errors import AutoMLError
from automl_cnn.executor import RayExecutor
from automl_cnn.progress import Progress
from automl_cnn.tracking import MlflowTracker
from automl_cnn.training import EpochResult


def pick_winner(records: list[TrialRecord]) -> TrialRecord:
    """The completed trial with the best final validation accuracy (fewer parameters break ties).

    When no trial completed (a budget too short for one), the best partly trained trial wins.
    """

    def key(r: TrialRecord) -> tuple[float, float]:
        return (r.val_acc or 0.0, -(r.profile.params if r.profile else 0))

    completed = [r for r in records if r.outcome == "completed" and r.val_acc is not None]
    if completed:
        return max(completed, key=key)
    partial = [r for r in records if r.history and not r.too_slow] or [r for r in records if r.history]
    if partial:
        return max(partial, key=lambda r: (len(r.history), *key(r)))
    reasons = sorted({r.reason for r in records if r.reason})[:3]
    raise AutoMLError(
        f"no trial produced a result ({len(records)} tried; e.g. {'; '.join(reasons) or 'none started'}); "
        "widen the space or raise the budget"
    )


def final_seconds_estimate(records: list[TrialRecord], ratio: float, rounds: int) -> float:
    """How long the final fit of the current leader will take (0 before any epoch ran)."""
    scored = [r for r in records if r.history and not r.too_slow]
    completed = [r for r in scored if r.outcome == "completed"]
    if not completed and not scored:
        return 0.0
    leader = max(completed or scored, key=lambda r: r.val_acc or 0.0)
    return (leader.projected_seconds() or 0.0) * ratio * rounds


@dataclass
class FinalFit:
    seed: int
    weights: dict[str, Any]
    history: list[EpochResult]


def final_fit(
    executor: RayExecutor,
    candidate: Candidate,
    seeds: list[int],
    data_ref: Any,
    progress: Progress,
    tracker: MlflowTracker,
    parent_run: str,
) -> list[FinalFit]:
    """Train ``candidate`` once per seed on the workers (in parallel where slots allow)."""
    todo = list(enumerate(seeds))
    histories: dict[str, list[EpochResult]] = {}
    runs: dict[str, str] = {}
    done: dict[str, FinalFit] = {}
    pending_weights: set[str] = set()
    seed_of = {f"final-{k}": s for k, s in todo}
    epochs = candidate.training.epochs
    while todo or executor.jobs:
        while todo and executor.free > 0:
            k, seed = todo.pop(0)
            job = f"final-{k}"
            histories[job] = []
            runs[job] = tracker.start_run(
                job, {**candidate.flat_params(), "seed": seed}, {"automl_cnn.final_fit": "true"}, parent=parent_run
            )
            executor.submit(job, candidate.to_dict(), seed, data_ref)
            progress.trial_running(job, "final fit: starting")
        for result in executor.wait(timeout=0.5):
            job = result["job"]
            if "error" in result:
                tracker.set_tags(runs[job], {"automl_cnn.outcome": "failed", "automl_cnn.reason": result["error"]})
                tracker.end_run(runs[job], "FAILED")
                for other in executor.jobs:
                    executor.release(other)
                raise AutoMLError(f"the final fit ({job}, seed {seed_of[job]}) failed: {result['error']}")
            if job in pending_weights:
                pending_weights.discard(job)
                done[job] = FinalFit(seed_of[job], result["weights"], histories[job])
                executor.release(job)
                tracker.end_run(runs[job], "FINISHED")
                continue
            epoch = EpochResult(**result["epoch"])
            histories[job].append(epoch)
            tracker.log_metrics(
                runs[job],
                {k: v for k, v in epoch.to_dict().items() if k != "epoch" and not _nan(v)},
                step=epoch.epoch,
            )
            progress.trial_running(job, f"final fit: epoch {epoch.epoch}/{epochs}")
            if result.get("done"):
                pending_weights.add(job)
                executor.request_weights(job)
            else:
                executor.advance(job)
        progress.refresh()
    for job in done:
        progress.running.pop(job, None)
    return [done[f"final-{k}"] for k in range(len(seeds))]


def _nan(v: float) -> bool:
    return isinstance(v, float) and math.isnan(v)
