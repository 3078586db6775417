"""The search loop: Optuna proposes, the executor trains, results go back to the study and MLflow.

The driver asks the study for a trial whenever a worker is free, checks the candidate
statically (an impossible one is recorded as failed and never trained), and then steps the
trial one epoch at a time. After each epoch it reports the validation accuracy to the trial and
asks the pruner; a stopped trial is told to the study as PRUNED (its score is partial) and a
finished one as COMPLETE, so the sampler never mistakes a partial score for a final one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from automl_cnn.analysis import Limits, Profile, profile
from automl_cnn.architecture import Candidate
from automl_cnn.data.bundle import DataBundle
from automl_cnn.errors import InfeasibleArchitecture
from automl_cnn.executor import RayExecutor
from automl_cnn.progress import Progress
from automl_cnn.sampling import sample_candidate
from automl_cnn.space import SearchSpace
from automl_cnn.tracking import MlflowTracker
from automl_cnn.training import EpochResult

OUTCOME_STATE = {"completed": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}
RUN_STATUS = {"completed": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}


def trial_seed(seed: int, number: int) -> int:
    return (seed * 1_000_003 + number * 7919 + 17) % (2**31 - 1)


@dataclass
class TrialRecord:
    number: int
    seed: int
    run_id: str
    candidate: Candidate | None = None
    profile: Profile | None = None
    outcome: str = "running"
    reason: str = ""
    history: list[EpochResult] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    where: dict[str, Any] = field(default_factory=dict)

    @property
    def job(self) -> str:
        return f"trial-{self.number}"

    @property
    def val_acc(self) -> float | None:
        return self.history[-1].val_acc if self.history else None

    @property
    def train_seconds(self) -> float:
        return sum(e.seconds for e in self.history)


class SearchDriver:
    def __init__(
        self,
        *,
        space: SearchSpace,
        bundle: DataBundle,
        study: optuna.Study,
        executor: RayExecutor,
        tracker: MlflowTracker,
        parent_run: str,
        progress: Progress,
        data_ref: Any,
        seed: int,
        max_trials: int | None,
        search_deadline: Callable[[list[TrialRecord]], float],
        limits: Limits | None = None,
        pruner_name: str = "asha",
    ) -> None:
        self.space = space
        self.bundle = bundle
        self.study = study
        self.executor = executor
        self.tracker = tracker
        self.parent_run = parent_run
        self.progress = progress
        self.data_ref = data_ref
        self.seed = seed
        self.max_trials = max_trials
        self.search_deadline = search_deadline
        self.limits = limits or Limits()
        self.pruner_name = pruner_name
        self.records: list[TrialRecord] = []
        self._running: dict[str, tuple[TrialRecord, optuna.Trial]] = {}
        self._asked = 0

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> list[TrialRecord]:
        try:
            while True:
                self._launch()
                if not self._running:
                    break
                if time.monotonic() >= self.search_deadline(self.records):
                    self.stop_all("time budget reached")
                    break
                for result in self.executor.wait(timeout=0.5):
                    self._on_result(result)
                self.progress.refresh()
        except BaseException:
            self.stop_all("search interrupted", outcome="failed")
            raise
        return self.records

    def _may_launch(self) -> bool:
        if self.max_trials is not None and self._asked >= self.max_trials:
            return False
        return time.monotonic() < self.search_deadline(self.records)

    def _launch(self) -> None:
        while self.executor.free > 0 and self._may_launch():
            self._launch_one()

    def _launch_one(self) -> None:
        trial = self.study.ask()
        self._asked += 1
        number = trial.number
        seed = trial_seed(self.seed, number)
        trial.set_user_attr("seed", seed)
        candidate = sample_candidate(trial, self.space)
        run_id = self.tracker.start_run(
            f"trial-{number}",
            {**candidate.flat_params(), "seed": seed},
            {"automl_cnn.trial": str(number), "automl_cnn.outcome": "running"},
            parent=self.parent_run,
        )
        rec = TrialRecord(number=number, seed=seed, run_id=run_id, candidate=candidate)
        self.records.append(rec)
        trial.set_user_attr("mlflow_run_id", run_id)
        trial.set_user_attr("candidate", candidate.to_json())
        try:
            rec.profile = profile(candidate.architecture, self.bundle.input_shape, self.bundle.num_classes)
            problems = self.limits.violations(rec.profile)
            if problems:
                raise InfeasibleArchitecture("; ".join(problems))
        except InfeasibleArchitecture as exc:
            self._finish(rec, trial, "failed", f"not trained: {exc}")
            return
        self.tracker.log_metrics(run_id, {"params": rec.profile.params, "flops": rec.profile.flops})
        trial.set_user_attr("params", rec.profile.params)
        trial.set_user_attr("flops", rec.profile.flops)
        self._running[rec.job] = (rec, trial)
        self.executor.submit(rec.job, candidate.to_dict(), seed, self.data_ref)
        self.progress.trial_running(rec.job, f"starting: {candidate.architecture.describe()}")

    # -- results -------------------------------------------------------------------------------
    def _on_result(self, result: dict[str, Any]) -> None:
        job = result.get("job")
        if job not in self._running:
            return  # a late result of a job already stopped
        rec, trial = self._running[job]
        if not rec.where:
            rec.where = self.executor.where(job)
            if rec.where:
                self.tracker.set_tags(rec.run_id, {f"automl_cnn.worker.{k}": v for k, v in rec.where.items()})
        if "error" in result:
            self._finish(rec, trial, "failed", str(result["error"]))
            return
        epoch = EpochResult(**result["epoch"])
        rec.history.append(epoch)
        self.tracker.log_epoch(rec.run_id, epoch)
        trial.report(epoch.val_acc, epoch.epoch)
        total = rec.candidate.training.epochs if rec.candidate else epoch.epoch
        if result.get("done"):
            self._finish(rec, trial, "completed", "")
        elif trial.should_prune():
            self._finish(
                rec, trial, "pruned", f"stopped early at epoch {epoch.epoch}/{total} by the {self.pruner_name} pruner"
            )
        else:
            self.executor.advance(job)
            self.progress.trial_running(job, f"epoch {epoch.epoch}/{total}  val {epoch.val_acc:.4f}")

    def _finish(self, rec: TrialRecord, trial: optuna.Trial, outcome: str, reason: str) -> None:
        rec.outcome, rec.reason = outcome, reason
        rec.seconds = time.monotonic() - rec.started
        self._running.pop(rec.job, None)
        self.executor.release(rec.job)
        trial.set_user_attr("outcome", outcome)
        if reason:
            trial.set_user_attr("reason", reason[:1000])
        value = rec.val_acc
        if outcome == "completed" and value is not None and math.isfinite(value):
            self.study.tell(trial, value)
        else:
            self.study.tell(trial, state=OUTCOME_STATE[outcome] if outcome != "completed" else TrialState.FAIL)
        metrics = {"duration_seconds": rec.seconds, "epochs_run": len(rec.history)}
        if value is not None:
            metrics["final_val_accuracy"] = value
            metrics["best_val_accuracy"] = max(e.val_acc for e in rec.history)
        self.tracker.log_metrics(rec.run_id, metrics)
        self.tracker.set_tags(
            rec.run_id, {"automl_cnn.outcome": outcome, **({"automl_cnn.reason": reason} if reason else {})}
        )
        self.tracker.end_run(rec.run_id, RUN_STATUS[outcome])
        score = f"val {value:.4f}" if value is not None else ""
        arch = rec.candidate.architecture.describe() if rec.candidate else ""
        text = f"{outcome} {score} {rec.seconds:.0f}s  {reason or arch}".replace("  ", " ").strip()
        self.progress.trial_done(rec.job, outcome, text, value)

    def stop_all(self, why: str, outcome: str = "pruned") -> None:
        """Stop every running trial (time budget, interruption), recording why."""
        for rec, trial in list(self._running.values()):
            self._finish(rec, trial, outcome, f"{why} at epoch {len(rec.history)}")
