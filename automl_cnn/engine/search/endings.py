"""A trial's end, told everywhere once: the study, its MLflow run, the live panel, the run folder,
and the repeats that waited for its result.

What each outcome becomes in Optuna and MLflow is the table in :mod:`automl_cnn.engine.outcome`.
A completed trial without a finite validation accuracy is recorded as failed.
"""

from __future__ import annotations

import math

import optuna
from optuna.trial import TrialState

from automl_cnn.engine.outcome import Ending, Outcome
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.search.dedupe import Known, KnownResult
from automl_cnn.engine.search.gate import time_latency
from automl_cnn.engine.search.running import RunningTrial
from automl_cnn.engine.session import SearchSession
from automl_cnn.model.profile import profile


class Endings:
    def __init__(self, session: SearchSession, known: Known) -> None:
        self.session = session
        self.known = known

    def values(self, rec: TrialRecord) -> tuple[float, ...] | None:
        """The study values of a trial (its objectives), or None without a finite score."""
        value = rec.val_acc
        if value is None or not math.isfinite(value):
            return None
        return tuple(rec.objective(name) for name in self.session.objectives)

    def known_result(self, rec: TrialRecord, ending: Ending | None = None) -> KnownResult:
        """What a repeat of ``rec``'s candidate reuses."""
        values = self.values(rec) if rec.outcome == Outcome.COMPLETED else None
        return KnownResult(
            number=rec.number,
            outcome=Outcome(rec.outcome),
            reason=rec.reason,
            values=values,
            intermediate={e.epoch: e.val_acc for e in rec.history},
            constraints=dict(ending.constraints) if ending else {},
            history=tuple(rec.history),
            profile=rec.profile,
            latency_ms=rec.latency_ms,
        )

    def finish(self, run: RunningTrial, trial: optuna.Trial, ending: Ending) -> TrialRecord:
        """Record how a trained (or refused) trial ended, and settle the repeats waiting for it;
        its final record."""
        if ending.outcome == Outcome.COMPLETED and run.record.latency_ms is None and run.record.profile is not None:
            time_latency(self.session, run)  # not timed before training (gate.py)
        values = self.values(run.record) if ending.outcome == Outcome.COMPLETED else None
        if ending.outcome == Outcome.COMPLETED and values is None:
            ending = Ending(Outcome.FAILED, "no finite validation accuracy")
        rec = run.ended(ending.outcome, ending.reason)
        self._tell(trial, run, ending, values)
        self._log_end(rec, ending)
        self.session.state.append_record(rec)
        self.session.state.save()
        if rec.duplicate_of is None:
            result = self.known_result(rec, ending)
            for repeat, repeat_trial in self.known.finish(rec.candidate.key(), result):
                self.finish_repeat(repeat, repeat_trial, result)
        return rec

    def finish_repeat(self, run: RunningTrial, trial: optuna.Trial, earlier: KnownResult) -> TrialRecord:
        """A candidate already seen: reuse the earlier result instead of training again."""
        measured = earlier.profile
        if measured is None and earlier.outcome != Outcome.FAILED:
            bundle = self.session.bundle
            measured = profile(run.record.candidate.architecture, bundle.input_shape, bundle.num_classes)
        where = f"trial {earlier.number}" + (f" of {earlier.source}" if earlier.source else "")
        reason = f"a repeat of {where} (the same network and training): its result is reused, not retrained"
        rec = run.ended(
            earlier.outcome,
            reason,
            duplicate_of=earlier.number,
            reused_from=earlier.source,
            history=tuple(earlier.history),
            profile=measured,
            latency_ms=earlier.latency_ms,
        )
        for e in rec.history:
            self.session.tracker.log_epoch(rec.run_id, e)
        if earlier.outcome == Outcome.PRUNED and not self.session.multi_objective:
            for step, value in sorted(earlier.intermediate.items()):
                trial.report(value, step)
        infeasible = earlier.outcome == Outcome.FAILED and earlier.constraints
        ending = Ending(earlier.outcome, rec.reason, TrialState.PRUNED if infeasible else None, earlier.constraints)
        self._tell(trial, run, ending, earlier.values)
        self._log_end(rec, ending)
        self.session.state.append_record(rec)
        return rec

    def _tell(self, trial: optuna.Trial, run: RunningTrial, ending: Ending, values: tuple[float, ...] | None) -> None:
        run.attrs().write(trial)  # everything, with how it ended: one write
        for name, excess in ending.constraints.items():
            trial.set_constraint(name, max(excess, 1e-9))
        study = self.session.study
        if ending.outcome == Outcome.COMPLETED and values is not None:
            study.tell(trial, values[0] if len(values) == 1 else list(values))
        else:
            study.tell(trial, state=ending.study_state)

    def _log_end(self, rec: TrialRecord, ending: Ending) -> None:
        tracker = self.session.tracker
        metrics: dict[str, float] = {"duration_seconds": rec.seconds, "epochs_run": len(rec.history)}
        value = rec.val_acc
        if value is not None:
            metrics["final_val_accuracy"] = value
            metrics["best_val_accuracy"] = max(e.val_acc for e in rec.history)
        tracker.log_metrics(rec.run_id, metrics)
        tags = {"automl_cnn.outcome": ending.outcome.value}
        if ending.reason:
            tags["automl_cnn.reason"] = ending.reason
        if rec.duplicate_of is not None:
            tags["automl_cnn.duplicate_of"] = str(rec.duplicate_of)
        tracker.set_tags(rec.run_id, tags)
        tracker.end_run(rec.run_id, ending.outcome.run_status)
        score = f"val {value:.4f} " if value is not None else ""
        said = ending.reason or rec.candidate.architecture.describe()
        best = value if rec.duplicate_of is None else None
        self.session.progress.trial_done(
            rec.job, ending.outcome.value, f"{ending.outcome.value} {score}{rec.seconds:.0f}s  {said}", best
        )
