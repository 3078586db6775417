"""After the search: pick the winner, retrain it on train + validation, score it once on test.

The winner is chosen on validation scores only. ``--final-repeats N`` retrains it with N
seeds (the test score is then reported as mean ± std, as when comparing models in a paper);
``--final-top-k K`` retrains the next best trials the same way, for a table of how much the
ranking holds on data the search never saw. The model delivered is the first seed's winner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from automl_cnn.engine.objectives import OBJECTIVES, PickRule, pareto_front
from automl_cnn.engine.progress import Progress
from automl_cnn.engine.records import TrialRecord
from automl_cnn.errors import AutoMLError
from automl_cnn.model.architecture import Candidate
from automl_cnn.model.measures import EpochResult
from automl_cnn.services.ray_executor import RayExecutor
from automl_cnn.services.tracking import MlflowTracker


def _eligible(records: list[TrialRecord]) -> list[TrialRecord]:
    """Completed trials with a score; a repeat within this search stands behind its original."""
    return [
        r
        for r in records
        if r.outcome == "completed" and r.val_acc is not None and (r.duplicate_of is None or r.reused_from)
    ]


def front(records: list[TrialRecord], objectives: tuple[str, ...]) -> list[TrialRecord]:
    """The completed trials no other completed trial dominates on ``objectives``."""
    directions = [OBJECTIVES[o] for o in objectives]
    return pareto_front(_eligible(records), lambda r: [r.objective(o) for o in objectives], directions)


def pick_winner(
    records: list[TrialRecord], objectives: tuple[str, ...] = ("accuracy",), rule: PickRule | None = None
) -> TrialRecord:
    """The trial to deliver: by ``rule`` among the Pareto front (several objectives), or the best
    final validation accuracy (fewer parameters break ties). When no trial completed (a budget
    too short for one), the best partly trained trial wins."""
    rule = rule or PickRule()
    completed = _eligible(records)
    if completed:
        pool = front(records, objectives) if len(objectives) > 1 else completed
        if rule.objective == "accuracy":
            return max(pool, key=lambda r: (r.val_acc or 0.0, -(r.profile.params if r.profile else 0)))
        return rule.choose(pool, lambda r, o: r.objective(o))  # type: ignore[no-any-return]
    partial = [r for r in records if r.history and not r.too_slow] or [r for r in records if r.history]
    if partial:
        return max(partial, key=lambda r: (len(r.history), r.val_acc or 0.0))
    reasons = sorted({r.reason for r in records if r.reason})[:3]
    raise AutoMLError(
        f"no trial produced a result ({len(records)} tried; e.g. {'; '.join(reasons) or 'none started'}); "
        "widen the space or raise the budget"
    )


def runners_up(records: list[TrialRecord], winner: TrialRecord, k: int) -> list[TrialRecord]:
    """The next ``k`` completed trials by validation accuracy, after the winner."""
    others = [r for r in _eligible(records) if r is not winner]
    return sorted(others, key=lambda r: -(r.val_acc or 0.0))[:k]


def final_seconds_estimate(records: list[TrialRecord], ratio: float, rounds: int) -> float:
    """How long the final fit of the current leader will take (0 before any epoch ran)."""
    scored = [r for r in records if r.history and not r.too_slow and r.duplicate_of is None]
    completed = [r for r in scored if r.outcome == "completed"]
    if not completed and not scored:
        return 0.0
    leader = max(completed or scored, key=lambda r: r.val_acc or 0.0)
    return (leader.projected_seconds() or 0.0) * ratio * rounds


@dataclass
class FinalFit:
    trial: int
    seed: int
    weights: dict[str, Any]
    history: list[EpochResult]


def final_fit(
    executor: RayExecutor,
    jobs: list[tuple[TrialRecord, int]],
    data_ref: Any,
    progress: Progress,
    tracker: MlflowTracker,
    parent_run: str,
) -> list[FinalFit]:
    """Train each (trial's candidate, seed) on train + validation, in parallel where slots allow;
    results in the order of ``jobs``. On any failure or interruption no MLflow run stays RUNNING."""
    fits = _FinalFits(executor, jobs, data_ref, progress, tracker, parent_run)
    try:
        return fits.run()
    except BaseException:
        fits.close_runs("KILLED")
        raise


class _FinalFits:
    def __init__(
        self,
        executor: RayExecutor,
        jobs: list[tuple[TrialRecord, int]],
        data_ref: Any,
        progress: Progress,
        tracker: MlflowTracker,
        parent_run: str,
    ) -> None:
        self.executor, self.data_ref, self.progress = executor, data_ref, progress
        self.tracker, self.parent_run = tracker, parent_run
        self.todo = [(f"final-{k}", rec, seed) for k, (rec, seed) in enumerate(jobs)]
        self.threads = executor.threads_for(len(jobs))
        self.names = [name for name, _, _ in self.todo]
        self.info = {name: (rec, seed) for name, rec, seed in self.todo}
        self.histories: dict[str, list[EpochResult]] = {name: [] for name in self.names}
        self.runs: dict[str, str] = {}  # job -> MLflow run still open
        self.done: dict[str, FinalFit] = {}
        self.pending_weights: set[str] = set()

    def close_runs(self, status: str) -> None:
        for run_id in self.runs.values():
            self.tracker.end_run(run_id, status)
        self.runs.clear()

    def _start(self, job: str, rec: TrialRecord, seed: int) -> None:
        cand: Candidate = rec.candidate  # type: ignore[assignment]
        self.runs[job] = self.tracker.start_run(
            f"{job} (trial {rec.number})",
            {**cand.flat_params(), "seed": seed, "trial": rec.number},
            {"automl_cnn.final_fit": "true", "automl_cnn.trial_of_final": str(rec.number)},
            parent=self.parent_run,
        )
        self.executor.submit(job, cand.to_dict(), seed, self.data_ref, threads=self.threads)
        self.progress.trial_running(job, f"final fit of trial {rec.number}: starting")

    def run(self) -> list[FinalFit]:
        while self.todo or self.executor.jobs:
            while self.todo and self.executor.free > 0:
                self._start(*self.todo.pop(0))
            for result in self.executor.wait(timeout=0.5):
                self._on_result(result)
            self.progress.refresh()
        return [self.done[name] for name in self.names]

    def _on_result(self, result: dict[str, Any]) -> None:
        job = result["job"]
        rec, seed = self.info[job]
        if "error" in result:
            run_id = self.runs.pop(job)
            self.tracker.set_tags(run_id, {"automl_cnn.outcome": "failed", "automl_cnn.reason": result["error"]})
            self.tracker.end_run(run_id, "FAILED")
            for other in self.executor.jobs:
                self.executor.release(other)
            raise AutoMLError(f"the final fit of trial {rec.number} (seed {seed}) failed: {result['error']}")
        if job in self.pending_weights:
            self.pending_weights.discard(job)
            self.done[job] = FinalFit(rec.number, seed, result["weights"], self.histories[job])
            self.executor.release(job)
            self.tracker.end_run(self.runs.pop(job), "FINISHED")
            self.progress.running.pop(job, None)
            return
        epoch = EpochResult(**result["epoch"])
        self.histories[job].append(epoch)
        metrics = {k: v for k, v in epoch.to_dict().items() if k != "epoch" and not _nan(v)}
        self.tracker.log_metrics(self.runs[job], metrics, step=epoch.epoch)
        self.progress.trial_running(job, f"final fit of trial {rec.number}: epoch {epoch.epoch}/{rec.epochs}")
        if result.get("done"):
            self.pending_weights.add(job)
            self.executor.request_weights(job)
        else:
            self.executor.advance(job)


def _nan(v: float) -> bool:
    return isinstance(v, float) and math.isnan(v)
