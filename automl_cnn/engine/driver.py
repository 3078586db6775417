"""The search loop: Optuna proposes, the executor trains, results go back to the study and MLflow.

The driver asks the study for a trial whenever a worker is free, checks the candidate
statically and then steps it one epoch at a time. After each epoch it reports the validation
accuracy to the trial and asks the pruner. What the study is told:

=================================  ============  =========================================
what happened                      our outcome   Optuna state
=================================  ============  =========================================
trained all its epochs             completed     COMPLETE, values = the objectives
stopped by the pruner / budget     pruned        PRUNED (partial scores stay intermediate)
too slow for the time budget       pruned        PRUNED + constraint ``trial_seconds`` > 0
breaks --max-params/flops/latency  failed        PRUNED + constraint > 0, never trained
cannot be built for the input      failed        FAIL, never trained
NaN loss, out of memory, crash     failed        FAIL
a repeat of an earlier candidate   (the same)    the same as the earlier one, not trained
=================================  ============  =========================================

so the sampler never mistakes a partial score for a final one, and it learns which regions are
infeasible (Optuna's samplers rank trials with a positive constraint below feasible ones).
With several objectives Optuna cannot prune (it refuses intermediate reports), so trials run to
the end unless the time budget stops them. Warm-start presets are not pruned either: they are
known-good designs whose full results calibrate the search (the time limit still applies).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from automl_cnn.data.bundle import DataBundle
from automl_cnn.engine.cost import CostModel
from automl_cnn.engine.dedupe import Known, Outcome
from automl_cnn.engine.progress import Progress
from automl_cnn.engine.records import TrialRecord, trial_seed
from automl_cnn.engine.runstate import RunState
from automl_cnn.errors import InfeasibleArchitecture
from automl_cnn.model.builder import build_model
from automl_cnn.model.measures import EpochResult
from automl_cnn.model.profile import Limits, measure_latency_ms, profile
from automl_cnn.services.ray_executor import RayExecutor
from automl_cnn.services.tracking import MlflowTracker
from automl_cnn.space.sampling import sample_candidate
from automl_cnn.space.schema import SearchSpace

RUN_STATUS = {"completed": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}
MAX_REPEATS_IN_A_ROW = 200  # the sampler keeps proposing known candidates: the space is exhausted


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
        objectives: tuple[str, ...] = ("accuracy",),
        known: Known | None = None,
        state: RunState | None = None,
        max_retries: int = 2,
        records: list[TrialRecord] | None = None,
        resumable: list[tuple[TrialRecord, optuna.Trial]] | None = None,
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
        self.objectives = objectives
        self.known = known or Known()
        self.state = state
        self.max_retries = max_retries
        self.cost = CostModel(len(bundle.train_idx), len(bundle.val_idx))
        self.records: list[TrialRecord] = list(records or [])
        self._running: dict[str, tuple[TrialRecord, optuna.Trial]] = {}
        self._checkpoints: dict[str, bytes] = {}  # job -> its last epoch's checkpoint
        self._resumable = list(resumable or [])
        self._asked = len(self.records) + len(self._resumable)
        self._exhausted = False
        for rec in self.records:  # results of an earlier driver of this run are known
            if rec.candidate is not None and rec.duplicate_of is None:
                self.known.finish(rec.candidate.key(), self._outcome_of(rec, None))

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> list[TrialRecord]:
        saved = time.monotonic()
        try:
            while True:
                if self.state is not None and time.monotonic() - saved > 5:
                    self.state.save()  # the time spent, for a resume after a crash
                    saved = time.monotonic()
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
            self.interrupt()
            raise
        return self.records

    def interrupt(self) -> None:
        """The search stops without deciding the running trials: their MLflow runs are closed as
        KILLED, while the study keeps them RUNNING with their checkpoints, so that
        ``automl-cnn resume`` continues them."""
        for rec, _trial in list(self._running.values()):
            self.executor.release(rec.job)
            self.tracker.set_tags(
                rec.run_id, {"automl_cnn.outcome": "interrupted", "automl_cnn.reason": "search interrupted"}
            )
            self.tracker.end_run(rec.run_id, "KILLED")
        self._running.clear()

    def _may_launch(self) -> bool:
        if self._exhausted or (self.max_trials is not None and self._asked >= self.max_trials):
            return False
        return time.monotonic() < self.search_deadline(self.records)

    def _launch(self) -> None:
        while self.executor.free > 0 and self._resumable:
            self._resume_one(*self._resumable.pop(0))
        while self.executor.free > 0 and self._may_launch():
            self._launch_one()

    def _resume_one(self, rec: TrialRecord, trial: optuna.Trial) -> None:
        """Continue a trial an earlier driver left running: from its checkpoint, if it has one."""
        assert rec.candidate is not None
        self.records.append(rec)
        earlier = self.known.lookup(rec.candidate.key())
        if isinstance(earlier, Outcome):
            self._finish_repeat(rec, trial, earlier)
            return
        if isinstance(earlier, str):
            self.known.wait_for(earlier, (rec, trial))
            return
        self.known.start(rec.candidate.key(), rec.job)
        saved = self.state.load_checkpoint(rec.number) if self.state else None
        blob = None
        if saved is not None:
            blob, rec.history = saved[0], list(saved[1])
        self._running[rec.job] = (rec, trial)
        self.tracker.client.update_run(rec.run_id, status="RUNNING")
        self.executor.submit(rec.job, rec.candidate.to_dict(), rec.seed, self.data_ref, blob, want_checkpoint=True)
        where = f"from epoch {len(rec.history)}" if blob else "from the start (no checkpoint)"
        self.progress.message(f"{rec.job}: resumed {where}")

    def _launch_one(self) -> None:
        trial = self.study.ask()
        self._asked += 1
        number = trial.number
        seed = trial_seed(self.seed, number)
        trial.set_user_attr("seed", seed)
        candidate = sample_candidate(trial, self.space)
        preset = trial.user_attrs.get("preset")
        tags = {"automl_cnn.trial": str(number), "automl_cnn.outcome": "running"}
        if preset:
            tags["automl_cnn.preset"] = str(preset)
        run_id = self.tracker.start_run(
            f"trial-{number}" + (f" ({preset})" if preset else ""),
            {**candidate.flat_params(), "seed": seed},
            tags,
            parent=self.parent_run,
        )
        rec = TrialRecord(number=number, seed=seed, run_id=run_id, candidate=candidate, preset=preset)
        self.records.append(rec)
        trial.set_user_attr("mlflow_run_id", run_id)
        trial.set_user_attr("candidate", candidate.to_json())
        key = candidate.key()
        trial.set_user_attr("candidate_key", key)
        earlier = self.known.lookup(key)
        if isinstance(earlier, Outcome):
            self.known.repeats += 1
            self._finish_repeat(rec, trial, earlier)
        elif isinstance(earlier, str):
            self.known.wait_for(earlier, (rec, trial))
            self.progress.message(f"trial-{number}: a repeat of running {earlier}; it will reuse that result")
        else:
            self.known.start(key, rec.job)
            ending = self._static_check(rec)
            if rec.profile is not None:  # what warm starts from this search need to rank it
                trial.set_user_attr("params", rec.profile.params)
                trial.set_user_attr("flops", rec.profile.flops)
                trial.set_user_attr("latency_ms", rec.latency_ms)
            if ending is not None:
                self._finish(rec, trial, ending)
            else:
                self._running[rec.job] = (rec, trial)
                self.executor.submit(rec.job, candidate.to_dict(), seed, self.data_ref, want_checkpoint=True)
                self.progress.trial_running(rec.job, f"starting: {candidate.architecture.describe()}")
        if self.known.repeats >= MAX_REPEATS_IN_A_ROW:
            self._exhausted = True
            self.progress.message(f"the last {MAX_REPEATS_IN_A_ROW} proposals were all repeats: the space is exhausted")

    def _static_check(self, rec: TrialRecord) -> _Ending | None:
        """Why ``rec`` must not be trained, or None."""
        assert rec.candidate is not None
        try:
            rec.profile = profile(rec.candidate.architecture, self.bundle.input_shape, self.bundle.num_classes)
        except InfeasibleArchitecture as exc:
            return _Ending("failed", f"not trained: {exc}", TrialState.FAIL)
        self.tracker.log_metrics(rec.run_id, {"params": rec.profile.params, "flops": rec.profile.flops})
        broken = self.limits.check(rec.profile)
        if not broken and self.max_trial_seconds is not None:
            floor = self.cost.lower_bound_seconds(rec.profile.flops, rec.epochs)
            if floor is not None and floor > 1.5 * self.max_trial_seconds:
                return _Ending(
                    "failed",
                    f"not trained: at least {floor:.0f} s to train on this machine, over the "
                    f"{self.max_trial_seconds:.0f} s a trial may take in this time budget",
                    TrialState.PRUNED,
                    {"trial_seconds": floor / self.max_trial_seconds - 1},
                )
        if not broken:  # worth timing: it may be trained
            model = build_model(rec.candidate.architecture, self.bundle.input_shape, self.bundle.num_classes)
            rec.latency_ms = measure_latency_ms(model, self.bundle.input_shape)
            self.tracker.log_metrics(rec.run_id, {"latency_ms": rec.latency_ms})
            broken = self.limits.check(rec.profile, rec.latency_ms)
        if broken:
            reason = "not trained: " + "; ".join(r for r, _ in broken.values())
            return _Ending("failed", reason, TrialState.PRUNED, {k: v for k, (_, v) in broken.items()})
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
            if result.get("lost") and self._retry(rec):
                return
            self._finish(rec, trial, _Ending("failed", str(result["error"])))
            return
        epoch = EpochResult(**result["epoch"])
        rec.history.append(epoch)
        if "checkpoint" in result:
            self._checkpoints[job] = result["checkpoint"]
            if self.state is not None:
                self.state.save_checkpoint(rec.number, result["checkpoint"], rec.history)
        if rec.profile is not None:
            self.cost.observe(rec.profile.flops, epoch.seconds)
        self.tracker.log_epoch(rec.run_id, epoch)
        if not self.multi_objective:
            trial.report(epoch.val_acc, epoch.epoch)
        projected = rec.projected_seconds() or 0.0
        # from the first epoch alone only when far over: it is slowed by warm-up and start-up
        limit = None if self.max_trial_seconds is None else self.max_trial_seconds * (2 if len(rec.history) == 1 else 1)
        if result.get("done"):
            self._finish(rec, trial, _Ending("completed"))
        elif limit is not None and projected > limit:
            reason = (
                f"stopped at epoch {epoch.epoch}/{rec.epochs}: would take {projected:.0f} s, over the "
                f"{self.max_trial_seconds:.0f} s a trial may take in this time budget"
            )
            excess = {"trial_seconds": projected / self.max_trial_seconds - 1}
            rec.too_slow = True
            self._finish(rec, trial, _Ending("pruned", reason, constraints=excess))
        elif not self.multi_objective and rec.preset is None and trial.should_prune():
            reason = f"stopped early at epoch {epoch.epoch}/{rec.epochs} by the {self.pruner_name} pruner"
            self._finish(rec, trial, _Ending("pruned", reason))
        else:
            self.executor.advance(job, want_checkpoint=True)
            self.progress.trial_running(job, f"epoch {epoch.epoch}/{rec.epochs}  val {epoch.val_acc:.4f}")

    def _retry(self, rec: TrialRecord) -> bool:
        """Restart a trial whose worker died, from its last checkpoint; False past the limit."""
        if rec.retries >= self.max_retries or rec.candidate is None:
            return False
        rec.retries += 1
        blob = self._checkpoints.get(rec.job)
        done = len(rec.history)
        if blob is None:
            rec.history = []
        self.tracker.set_tags(rec.run_id, {"automl_cnn.retries": rec.retries})
        self.executor.submit(rec.job, rec.candidate.to_dict(), rec.seed, self.data_ref, blob, want_checkpoint=True)
        start = f"epoch {done}" if blob is not None else "the start"
        self.progress.message(f"{rec.job}: its worker died; retry {rec.retries}/{self.max_retries} from {start}")
        return True

    def _values(self, rec: TrialRecord) -> tuple[float, ...] | None:
        value = rec.val_acc
        if value is None or not math.isfinite(value):
            return None
        return tuple(rec.objective(name) for name in self.objectives)

    def _finish(self, rec: TrialRecord, trial: optuna.Trial, end: _Ending) -> None:
        rec.outcome, rec.reason = end.outcome, end.reason
        rec.seconds = time.monotonic() - rec.started
        self._running.pop(rec.job, None)
        self.executor.release(rec.job)
        values = self._values(rec) if end.outcome == "completed" else None
        if end.outcome == "completed" and values is None:
            end = _Ending("failed", "no finite validation accuracy")
            rec.outcome, rec.reason = end.outcome, end.reason
        self._tell(trial, end, values)
        self._log_end(rec, end)
        self._checkpoints.pop(rec.job, None)
        if self.state is not None:
            self.state.append_record(rec)
            self.state.save()
        if rec.candidate is not None and rec.duplicate_of is None:
            outcome = self._outcome_of(rec, values, dict(end.constraints))
            for repeat, repeat_trial in self.known.finish(rec.candidate.key(), outcome):
                self._finish_repeat(repeat, repeat_trial, outcome)

    def _outcome_of(
        self, rec: TrialRecord, values: tuple[float, ...] | None, constraints: dict[str, float] | None = None
    ) -> Outcome:
        if values is None and rec.outcome == "completed":
            values = self._values(rec)
        return Outcome(
            number=rec.number,
            outcome=rec.outcome,
            reason=rec.reason,
            values=values,
            intermediate={e.epoch: e.val_acc for e in rec.history},
            constraints=constraints or {},
            history=tuple(rec.history),
            profile=rec.profile,
            latency_ms=rec.latency_ms,
        )

    def _tell(self, trial: optuna.Trial, end: _Ending, values: tuple[float, ...] | None) -> None:
        trial.set_user_attr("outcome", end.outcome)
        if end.reason:
            trial.set_user_attr("reason", end.reason[:1000])
        for name, excess in end.constraints.items():
            trial.set_constraint(name, max(excess, 1e-9))
        if end.outcome == "completed" and values is not None:
            self.study.tell(trial, values[0] if len(values) == 1 else list(values))
        else:
            state = end.state or (TrialState.PRUNED if end.outcome == "pruned" else TrialState.FAIL)
            self.study.tell(trial, state=state)

    def _log_end(self, rec: TrialRecord, end: _Ending) -> None:
        metrics: dict[str, float] = {"duration_seconds": rec.seconds, "epochs_run": len(rec.history)}
        value = rec.val_acc
        if value is not None:
            metrics["final_val_accuracy"] = value
            metrics["best_val_accuracy"] = max(e.val_acc for e in rec.history)
        self.tracker.log_metrics(rec.run_id, metrics)
        tags = {"automl_cnn.outcome": end.outcome, **({"automl_cnn.reason": end.reason} if end.reason else {})}
        if rec.duplicate_of is not None:
            tags["automl_cnn.duplicate_of"] = str(rec.duplicate_of)
        self.tracker.set_tags(rec.run_id, tags)
        self.tracker.end_run(rec.run_id, RUN_STATUS[end.outcome])
        score = f"val {value:.4f} " if value is not None else ""
        arch = rec.candidate.architecture.describe() if rec.candidate else ""
        text = f"{end.outcome} {score}{rec.seconds:.0f}s  {end.reason or arch}"
        self.progress.trial_done(rec.job, end.outcome, text, value if rec.duplicate_of is None else None)

    def _finish_repeat(self, rec: TrialRecord, trial: optuna.Trial, earlier: Outcome) -> None:
        """A candidate already seen: reuse the earlier result instead of training again."""
        rec.duplicate_of = earlier.number
        rec.reused_from = earlier.source
        rec.history = list(earlier.history)
        rec.profile, rec.latency_ms = earlier.profile, earlier.latency_ms
        if rec.profile is None and rec.candidate is not None and earlier.outcome != "failed":
            rec.profile = profile(rec.candidate.architecture, self.bundle.input_shape, self.bundle.num_classes)
        rec.outcome = earlier.outcome
        rec.seconds = time.monotonic() - rec.started
        where = f"trial {earlier.number}" + (f" of {earlier.source}" if earlier.source else "")
        rec.reason = f"a repeat of {where} (the same network and training): its result is reused, not retrained"
        for e in rec.history:
            self.tracker.log_epoch(rec.run_id, e)
        if earlier.outcome == "pruned" and not self.multi_objective:
            for step, value in sorted(earlier.intermediate.items()):
                trial.report(value, step)
        state = None if earlier.outcome != "failed" or not earlier.constraints else TrialState.PRUNED
        end = _Ending(earlier.outcome, rec.reason, state, dict(earlier.constraints))
        self._tell(trial, end, earlier.values)
        self._log_end(rec, end)
        if self.state is not None:
            self.state.append_record(rec)

    def stop_all(self, why: str, outcome: str = "pruned") -> None:
        """Stop every running trial (time budget, interruption), recording why."""
        for rec, trial in list(self._running.values()):
            self._finish(rec, trial, _Ending(outcome, f"{why} at epoch {len(rec.history)}"))
