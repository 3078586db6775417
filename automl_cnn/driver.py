"""The search loop: Optuna proposes, the executor trains, results go back to the study and MLflow.

The driver asks the study for a trial whenever a worker is free, checks the candidate
statically and then steps it one epoch at a time. After each epoch it reports the validation
accuracy to the trial and asks the pruner. What the study is told:

=================================  ============  =========================================
what happened                      our outcome   Optuna state
=================================  ============  =========================================
trained all its epochs             completed     COMPLETE, value = last val accuracy
stopped by the pruner / budget     pruned        PRUNED (partial scores stay intermediate)
too slow for the time budget       pruned        PRUNED + constraint ``trial_seconds`` > 0
breaks --max-params / --max-flops  failed        PRUNED + constraint > 0, never trained
cannot be built for the input      failed        FAIL, never trained
NaN loss, out of memory, crash     failed        FAIL
=================================  ============  =========================================

so the sampler never mistakes a partial score for a final one, and it learns which regions are
infeasible (Optuna's samplers rank trials with a positive constraint below feasible ones).
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
from automl_cnn.builder import build_model
from automl_cnn.cost import CostModel
from automl_cnn.data.bundle import DataBundle
from automl_cnn.errors import InfeasibleArchitecture
from automl_cnn.executor import RayExecutor
from automl_cnn.progress import Progress
from automl_cnn.sampling import sample_candidate
from automl_cnn.space import SearchSpace
from automl_cnn.tracking import MlflowTracker
from automl_cnn.training import EpochResult
from automl_cnn.viz import measure_latency_ms

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
    too_slow: bool = False  # stopped because it could not finish inside its share of the budget
    latency_ms: float | None = None  # one image, one CPU thread, median

    @property
    def job(self) -> str:
        return f"trial-{self.number}"

    @property
    def val_acc(self) -> float | None:
        return self.history[-1].val_acc if self.history else None

    @property
    def train_seconds(self) -> float:
        return sum(e.seconds for e in self.history)

    @property
    def epochs(self) -> int:
        return self.candidate.training.epochs if self.candidate else 0

    def projected_seconds(self) -> float | None:
        """Training time for all epochs, from the epochs run so far."""
        if not self.history:
            return None
        return self.train_seconds / len(self.history) * self.epochs


@dataclass(frozen=True)
class _Ending:
    outcome: str
    reason: str = ""
    state: TrialState | None = None  # default: from the outcome
    constraints: dict[str, float] = field(default_factory=dict)


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
        max_trial_seconds: float | None = None,
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
        self.max_trial_seconds = max_trial_seconds
        self.limits = limits or Limits()
        self.pruner_name = pruner_name
        self.cost = CostModel(len(bundle.train_idx), len(bundle.val_idx))
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
        tags = {"automl_cnn.trial": str(number), "automl_cnn.outcome": "running"}
        preset = trial.user_attrs.get("preset")
        if preset:
            tags["automl_cnn.preset"] = str(preset)
        run_id = self.tracker.start_run(
            f"trial-{number}" + (f" ({preset})" if preset else ""),
            {**candidate.flat_params(), "seed": seed},
            tags,
            parent=self.parent_run,
        )
        rec = TrialRecord(number=number, seed=seed, run_id=run_id, candidate=candidate)
        self.records.append(rec)
        trial.set_user_attr("mlflow_run_id", run_id)
        trial.set_user_attr("candidate", candidate.to_json())
        ending = self._static_check(rec)
        if ending is not None:
            self._finish(rec, trial, ending)
            return
        self._running[rec.job] = (rec, trial)
        self.executor.submit(rec.job, candidate.to_dict(), seed, self.data_ref)
        self.progress.trial_running(rec.job, f"starting: {candidate.architecture.describe()}")

    def _static_check(self, rec: TrialRecord) -> _Ending | None:
        """Why ``rec`` must not be trained, or None."""
        assert rec.candidate is not None
        try:
            rec.profile = profile(rec.candidate.architecture, self.bundle.input_shape, self.bundle.num_classes)
        except InfeasibleArchitecture as exc:
            return _Ending("failed", f"not trained: {exc}", TrialState.FAIL)
        rec.latency_ms = measure_latency_ms(
            build_model(rec.candidate.architecture, self.bundle.input_shape, self.bundle.num_classes),
            self.bundle.input_shape,
        )
        self.tracker.log_metrics(
            rec.run_id, {"params": rec.profile.params, "flops": rec.profile.flops, "latency_ms": rec.latency_ms}
        )
        broken = self.limits.check(rec.profile)
        if broken:
            reason = "not trained: " + "; ".join(r for r, _ in broken.values())
            return _Ending("failed", reason, TrialState.PRUNED, {k: v for k, (_, v) in broken.items()})
        if self.max_trial_seconds is not None:
            floor = self.cost.lower_bound_seconds(rec.profile.flops, rec.epochs)
            if floor is not None and floor > 1.5 * self.max_trial_seconds:
                return _Ending(
                    "failed",
                    f"not trained: at least {floor:.0f} s to train on this machine, over the "
                    f"{self.max_trial_seconds:.0f} s a trial may take in this time budget",
                    TrialState.PRUNED,
                    {"trial_seconds": floor / self.max_trial_seconds - 1},
                )
        return None

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
            self._finish(rec, trial, _Ending("failed", str(result["error"])))
            return
        epoch = EpochResult(**result["epoch"])
        rec.history.append(epoch)
        if rec.profile is not None:
            self.cost.observe(rec.profile.flops, epoch.seconds)
        self.tracker.log_epoch(rec.run_id, epoch)
        trial.report(epoch.val_acc, epoch.epoch)
        projected = rec.projected_seconds() or 0.0
        if result.get("done"):
            self._finish(rec, trial, _Ending("completed"))
        elif self.max_trial_seconds is not None and projected > self.max_trial_seconds:
            reason = (
                f"stopped at epoch {epoch.epoch}/{rec.epochs}: would take {projected:.0f} s, over the "
                f"{self.max_trial_seconds:.0f} s a trial may take in this time budget"
            )
            excess = {"trial_seconds": projected / self.max_trial_seconds - 1}
            rec.too_slow = True
            self._finish(rec, trial, _Ending("pruned", reason, constraints=excess))
        elif trial.should_prune():
            reason = f"stopped early at epoch {epoch.epoch}/{rec.epochs} by the {self.pruner_name} pruner"
            self._finish(rec, trial, _Ending("pruned", reason))
        else:
            self.executor.advance(job)
            self.progress.trial_running(job, f"epoch {epoch.epoch}/{rec.epochs}  val {epoch.val_acc:.4f}")

    def _finish(self, rec: TrialRecord, trial: optuna.Trial, end: _Ending) -> None:
        rec.outcome, rec.reason = end.outcome, end.reason
        rec.seconds = time.monotonic() - rec.started
        self._running.pop(rec.job, None)
        self.executor.release(rec.job)
        trial.set_user_attr("outcome", end.outcome)
        if end.reason:
            trial.set_user_attr("reason", end.reason[:1000])
        for name, excess in end.constraints.items():
            trial.set_constraint(name, max(excess, 1e-9))
        value = rec.val_acc
        if end.outcome == "completed" and value is not None and math.isfinite(value):
            self.study.tell(trial, value)
        else:
            state = end.state or (TrialState.PRUNED if end.outcome == "pruned" else TrialState.FAIL)
            self.study.tell(trial, state=state)
        metrics = {"duration_seconds": rec.seconds, "epochs_run": len(rec.history)}
        if value is not None:
            metrics["final_val_accuracy"] = value
            metrics["best_val_accuracy"] = max(e.val_acc for e in rec.history)
        self.tracker.log_metrics(rec.run_id, metrics)
        tags = {"automl_cnn.outcome": end.outcome, **({"automl_cnn.reason": end.reason} if end.reason else {})}
        self.tracker.set_tags(rec.run_id, tags)
        self.tracker.end_run(rec.run_id, RUN_STATUS[end.outcome])
        score = f"val {value:.4f} " if value is not None else ""
        arch = rec.candidate.architecture.describe() if rec.candidate else ""
        text = f"{end.outcome} {score}{rec.seconds:.0f}s  {end.reason or arch}"
        self.progress.trial_done(rec.job, end.outcome, text, value)

    def stop_all(self, why: str, outcome: str = "pruned") -> None:
        """Stop every running trial (time budget, interruption), recording why."""
        for rec, trial in list(self._running.values()):
            self._finish(rec, trial, _Ending(outcome, f"{why} at epoch {len(rec.history)}"))
