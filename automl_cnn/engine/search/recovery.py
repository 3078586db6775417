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
from automl_cnn.engine.outcome import Outcome, TrialAttrs, study_history
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.session import SearchSession
from automl_cnn.errors import InfeasibleArchitecture
from automl_cnn.model.profile import profile

Running = tuple[TrialRecord, optuna.Trial]


def _record(t: optuna.trial.FrozenTrial, bundle: DataBundle) -> TrialRecord:
    attrs = TrialAttrs.read(t)
    rec = TrialRecord(
        number=t.number,
        seed=int(attrs.seed or 0),
        run_id=attrs.mlflow_run_id or "",
        candidate=attrs.get_candidate(),
        preset=attrs.preset,
        latency_ms=attrs.latency_ms,
    )
    if rec.candidate is not None:
        with contextlib.suppress(InfeasibleArchitecture):
            rec.profile = profile(rec.candidate.architecture, bundle.input_shape, bundle.num_classes)
    return rec


def recover(session: SearchSession) -> tuple[list[TrialRecord], list[Running]]:
    """(finished trials, trials to continue) of the run in the session's folder."""
    state, study = session.state, session.study
    done = {r.number: r for r in state.finished_records()}
    left: list[Running] = []
    for t in study.get_trials(deepcopy=False):
        if t.number in done or t.state == TrialState.WAITING:  # WAITING: enqueued, never asked for
            continue
        rec = _record(t, session.bundle)
        outcome = Outcome.of_state(t.state)
        if outcome.finished:  # finished in the study, not yet in the folder
            _close(session, rec, outcome, t)
        elif rec.candidate is not None and rec.run_id:
            left.append((rec, optuna.trial.Trial(study, t._trial_id)))
            continue
        else:  # asked for, never started
            study.tell(t.number, state=TrialState.FAIL)
            rec.outcome, rec.reason = Outcome.FAILED, "interrupted before it started"
            if rec.run_id:
                session.tracker.end_run(rec.run_id, Outcome.FAILED.run_status)
        state.append_record(rec)
        done[rec.number] = rec
    _close_orphan_runs(session, {rec.run_id for rec, _ in left})
    return [done[k] for k in sorted(done)], left


def _close_orphan_runs(session: SearchSession, keep: set[str]) -> None:
    """Close the trial runs a killed driver left RUNNING that no trial continues: a driver killed
    between opening a trial's MLflow run and recording it in the study leaves such a run."""
    tracker = session.tracker
    query = f"tags.`mlflow.parentRunId` = '{session.parent_run}' and attributes.status = 'RUNNING'"
    for run in tracker.client.search_runs([tracker.experiment_id], query):
        if run.info.run_id not in keep and "automl_cnn.trial" in run.data.tags:
            tracker.set_tags(
                run.info.run_id,
                {"automl_cnn.outcome": Outcome.FAILED.value, "automl_cnn.reason": "interrupted before it started"},
            )
            tracker.end_run(run.info.run_id, Outcome.FAILED.run_status)


def _close(session: SearchSession, rec: TrialRecord, outcome: Outcome, t: optuna.trial.FrozenTrial) -> None:
    """A trial the study holds as finished: its record rebuilt from the study, its run closed."""
    rec.outcome = outcome
    rec.reason = TrialAttrs.read(t).reason or ""
    rec.history = list(study_history(t))
    if rec.run_id:
        session.tracker.end_run(rec.run_id, outcome.run_status)
