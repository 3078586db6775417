"""Picking up what a killed driver left: finished trials are kept, running ones continue.

The study journal is the source of truth for which trials exist and how each ended; the run
folder's ``trials.jsonl`` adds what the study does not hold (per-epoch curves, timings). A
trial the study knows as finished but the folder does not (the driver died between the two
writes) is rebuilt from the study; a trial left RUNNING continues from its last checkpoint; one
asked for but never started is closed as failed. A trial whose candidate was never sampled is
no trial of the run (it has no record), but it counts against ``--trials``
(:func:`never_started`).
"""

from __future__ import annotations

import contextlib
import dataclasses

import optuna
from optuna.trial import TrialState

from automl_cnn.data import DataBundle
from automl_cnn.engine.outcome import Outcome, TrialAttrs, study_history
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.search.running import Running, RunningTrial
from automl_cnn.engine.session import SearchSession
from automl_cnn.errors import InfeasibleArchitecture
from automl_cnn.model.architecture import Candidate
from automl_cnn.model.profile import profile
from automl_cnn.services.run_pool import RESERVED

UNSTARTED = "interrupted before it started"


def _record(frozen: optuna.trial.FrozenTrial, candidate: Candidate, bundle: DataBundle) -> TrialRecord:
    attrs = TrialAttrs.read(frozen)
    measured = None
    with contextlib.suppress(InfeasibleArchitecture):
        measured = profile(candidate.architecture, bundle.input_shape, bundle.num_classes)
    return TrialRecord(
        number=frozen.number,
        seed=int(attrs.seed or 0),
        run_id=attrs.mlflow_run_id or "",
        candidate=candidate,
        profile=measured,
        preset=attrs.preset,
        latency_ms=attrs.latency_ms,
        continues=attrs.continues,
    )


def never_started(study: optuna.Study) -> int:
    """Trials asked of the study whose candidate was never sampled (their driver died first)."""
    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.state == TrialState.FAIL and TrialAttrs.read(t).candidate is None
    )


def recover(session: SearchSession) -> tuple[list[TrialRecord], list[Running]]:
    """(finished trials, trials to continue) of the run in the session's folder."""
    state, study = session.state, session.study
    done = {r.number: r for r in state.finished_records()}
    left: list[Running] = []
    for t in study.get_trials(deepcopy=False):
        if t.number in done or t.state == TrialState.WAITING:  # WAITING: enqueued, never asked for
            continue
        outcome, attrs = Outcome.of_state(t.state), TrialAttrs.read(t)
        candidate = attrs.get_candidate()
        if candidate is None:  # asked for, never sampled: no trial, closed as failed
            if not outcome.finished:
                _close_unstarted(session, t.number, attrs.mlflow_run_id or "")
            continue
        rec = _record(t, candidate, session.bundle)
        if outcome.finished:  # finished in the study, not yet in the folder
            rec = _close(session, rec, outcome, t)
        elif rec.run_id:
            left.append((RunningTrial(rec), optuna.trial.Trial(study, t._trial_id)))
            continue
        else:  # sampled, never started
            _close_unstarted(session, t.number, rec.run_id)
            rec = dataclasses.replace(rec, outcome=Outcome.FAILED, reason=UNSTARTED)
        state.append_record(rec)
        done[rec.number] = rec
    _close_orphan_runs(session, {run.record.run_id for run, _ in left})
    return [done[k] for k in sorted(done)], left


def _close_unstarted(session: SearchSession, number: int, run_id: str) -> None:
    session.study.tell(number, state=TrialState.FAIL)
    if run_id:
        session.tracker.end_run(run_id, Outcome.FAILED.run_status)


def _close_orphan_runs(session: SearchSession, keep: set[str]) -> None:
    """Close the trial runs a killed driver left RUNNING that no trial continues: a driver killed
    between opening a trial's MLflow run and recording it in the study leaves such a run."""
    tracker = session.tracker
    query = f"tags.`mlflow.parentRunId` = '{session.parent_run}' and attributes.status = 'RUNNING'"
    for run in tracker.client.search_runs([tracker.experiment_id], query):
        if run.info.run_name == RESERVED:  # opened ahead for a trial the killed driver never launched
            tracker.client.delete_run(run.info.run_id)
        elif run.info.run_id not in keep and "automl_cnn.trial" in run.data.tags:
            tracker.set_tags(
                run.info.run_id,
                {"automl_cnn.outcome": Outcome.FAILED.value, "automl_cnn.reason": UNSTARTED},
            )
            tracker.end_run(run.info.run_id, Outcome.FAILED.run_status)


def _close(session: SearchSession, rec: TrialRecord, outcome: Outcome, frozen: optuna.trial.FrozenTrial) -> TrialRecord:
    """A trial the study holds as finished: its record rebuilt from the study, its run closed."""
    if rec.run_id:
        session.tracker.end_run(rec.run_id, outcome.run_status)
    return dataclasses.replace(
        rec, outcome=outcome, reason=TrialAttrs.read(frozen).reason or "", history=tuple(study_history(frozen))
    )
