"""Picking up what a killed driver left: finished trials are kept, running ones continue.

The study journal is the source of truth for which trials exist and how each ended; the run
folder's ``trials.jsonl`` adds what the study does not hold (per-epoch curves, timings). A
trial the study knows as finished but the folder does not (the driver died between the two
writes) is rebuilt from the study; a trial left RUNNING continues from its last checkpoint; one
asked for but never started is closed as failed.
"""

from __future__ import annotations

import contextlib

import optuna
from optuna.trial import TrialState

from automl_cnn.data import DataBundle
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.runstate import RunState
from automl_cnn.errors import InfeasibleArchitecture
from automl_cnn.model.architecture import Candidate
from automl_cnn.model.measures import EpochResult
from automl_cnn.model.profile import profile
from automl_cnn.services.tracking import MlflowTracker

_OUTCOMES = {TrialState.COMPLETE: "completed", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}
_STATUS = {"completed": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}


def _record(t: optuna.trial.FrozenTrial, bundle: DataBundle) -> TrialRecord:
    rec = TrialRecord(
        number=t.number,
        seed=int(t.user_attrs.get("seed", 0)),
        run_id=str(t.user_attrs.get("mlflow_run_id", "")),
        candidate=Candidate.from_json(t.user_attrs["candidate"]) if "candidate" in t.user_attrs else None,
        preset=t.user_attrs.get("preset"),
        latency_ms=t.user_attrs.get("latency_ms"),
    )
    if rec.candidate is not None:
        with contextlib.suppress(InfeasibleArchitecture):
            rec.profile = profile(rec.candidate.architecture, bundle.input_shape, bundle.num_classes)
    return rec


def recover(
    study: optuna.Study, state: RunState, bundle: DataBundle, tracker: MlflowTracker
) -> tuple[list[TrialRecord], list[tuple[TrialRecord, optuna.Trial]]]:
    """(finished trials, trials to continue) of the run in ``state``'s folder."""
    done = {r.number: r for r in state.finished_records()}
    left: list[tuple[TrialRecord, optuna.Trial]] = []
    nan = float("nan")
    for t in study.get_trials(deepcopy=False):
        if t.number in done:
            continue
        rec = _record(t, bundle)
        if t.state in _OUTCOMES:  # finished in the study, not yet in the folder
            rec.outcome = _OUTCOMES[t.state]
            rec.reason = str(t.user_attrs.get("reason", ""))
            rec.history = [
                EpochResult(k, nan, nan, nan, float(v), 0.0, nan) for k, v in sorted(t.intermediate_values.items())
            ]
            if rec.outcome == "completed" and not rec.history and t.values:
                rec.history = [EpochResult(1, nan, nan, nan, float(t.values[0]), 0.0, nan)]
            if rec.run_id:
                tracker.end_run(rec.run_id, _STATUS[rec.outcome])
            state.append_record(rec)
            done[rec.number] = rec
        elif t.state == TrialState.RUNNING and rec.candidate is not None and rec.run_id:
            left.append((rec, optuna.trial.Trial(study, t._trial_id)))
        elif t.state == TrialState.RUNNING:  # asked for, never started
            study.tell(t.number, state=TrialState.FAIL)
            rec.outcome, rec.reason = "failed", "interrupted before it started"
            if rec.run_id:
                tracker.end_run(rec.run_id, "FAILED")
            state.append_record(rec)
            done[rec.number] = rec
    return [done[k] for k in sorted(done)], left
