"""How a trial ends, in one type, and what each ending means to Optuna and to MLflow.

=================  ====================  =============  ==========================================
our outcome        Optuna state          MLflow status  when
=================  ====================  =============  ==========================================
``completed``      COMPLETE (values)     FINISHED       trained all its epochs
``pruned``         PRUNED                KILLED         stopped by the pruner, the budget or its
                                                        pace (partial scores stay intermediate)
``failed``         FAIL, or PRUNED with  FAILED         cannot be built, breaks a ``--max-*``
                   a constraint > 0                     limit (PRUNED + constraint), NaN loss,
                                                        out of memory, a crash
``interrupted``    RUNNING (kept)        KILLED         the driver stopped; ``resume`` continues
``running``        RUNNING               RUNNING        still training
=================  ====================  =============  ==========================================

A trial stores in Optuna (``user_attrs``) exactly the fields of :class:`TrialAttrs`; the driver
writes them and recovery and warm starts read them back through the same class. They are one
JSON attribute (:data:`ATTRS_KEY`), so that recording them is one storage write (a round trip on
PostgreSQL, an fsync on the journal), not one per field; studies written before kept one
attribute per field, and read back the same.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any

from optuna.trial import FrozenTrial, Trial, TrialState

from automl_cnn.model.architecture import Candidate
from automl_cnn.model.measures import EpochResult


class Outcome(enum.StrEnum):
    COMPLETED = "completed"
    PRUNED = "pruned"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    RUNNING = "running"

    @property
    def state(self) -> TrialState:
        """The Optuna state a trial with this outcome is told (a failed trial with a constraint
        is told PRUNED instead, so that samplers learn the region is infeasible)."""
        return _TABLE[self][0]

    @property
    def run_status(self) -> str:
        """The MLflow run status of a trial with this outcome."""
        return _TABLE[self][1]

    @property
    def finished(self) -> bool:
        return self in (Outcome.COMPLETED, Outcome.PRUNED, Outcome.FAILED)

    @classmethod
    def of_state(cls, state: TrialState) -> Outcome:
        """Our outcome for a trial Optuna holds in ``state``."""
        return _FROM_STATE[state]


_TABLE: dict[Outcome, tuple[TrialState, str]] = {
    Outcome.COMPLETED: (TrialState.COMPLETE, "FINISHED"),
    Outcome.PRUNED: (TrialState.PRUNED, "KILLED"),
    Outcome.FAILED: (TrialState.FAIL, "FAILED"),
    Outcome.INTERRUPTED: (TrialState.RUNNING, "KILLED"),
    Outcome.RUNNING: (TrialState.RUNNING, "RUNNING"),
}
_FROM_STATE = {
    TrialState.COMPLETE: Outcome.COMPLETED,
    TrialState.PRUNED: Outcome.PRUNED,
    TrialState.FAIL: Outcome.FAILED,
    TrialState.RUNNING: Outcome.RUNNING,
}


ATTRS_KEY = "automl_cnn"  # the user attribute that holds a trial's TrialAttrs


@dataclass(frozen=True)
class TrialAttrs:
    """What a trial stores in the Optuna study: ``trial.user_attrs[ATTRS_KEY]``, a dict of the
    fields that are set (older studies: one attribute per field; both are read)."""

    seed: int | None = None
    mlflow_run_id: str | None = None
    candidate: str | None = None  # Candidate.to_json()
    candidate_key: str | None = None
    preset: str | None = None  # the warm-start design it came from
    params: int | None = None
    flops: int | None = None
    latency_ms: float | None = None
    outcome: str | None = None
    reason: str | None = None
    warm_start_from: str | None = None  # for a trial copied from an earlier search
    continues: int | None = None  # resume --more: the trial whose checkpoint it continues

    REASON_LIMIT = 1000

    def write(self, trial: Trial) -> None:
        """Store the fields that are set on ``trial``, in one write. It replaces what an earlier
        write stored: write everything known of the trial (``RunningTrial.attrs``)."""
        stored = self.to_dict()
        if self.reason is not None:
            stored["reason"] = self.reason[: self.REASON_LIMIT]
        trial.set_user_attr(ATTRS_KEY, stored)

    @classmethod
    def read(cls, trial: FrozenTrial | Trial) -> TrialAttrs:
        """The trial's fields: the one attribute, over any set one per field (by older writers, and
        by ``enqueue_trial``/``add_trial`` calls: ``preset``, ``warm_start_from``)."""
        attrs = trial.user_attrs
        stored = attrs.get(ATTRS_KEY)
        merged = {**attrs, **stored} if isinstance(stored, dict) else attrs
        return cls(**{f.name: merged.get(f.name) for f in fields(cls)})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def get_candidate(self) -> Candidate | None:
        return Candidate.from_json(self.candidate) if self.candidate else None


@dataclass(frozen=True)
class Ending:
    """How one trial ended: our outcome, why, and what the study is told."""

    outcome: Outcome
    reason: str = ""
    state: TrialState | None = None  # default: the outcome's
    constraints: dict[str, float] = field(default_factory=dict)  # name -> relative excess > 0

    @property
    def study_state(self) -> TrialState:
        return self.state or self.outcome.state


def study_history(trial: FrozenTrial) -> tuple[EpochResult, ...]:
    """A trial's curve as far as the study holds it: the validation accuracy per epoch (the rest
    is unknown, NaN); a completed trial without intermediate values has its final value."""
    nan = float("nan")
    steps = dict(trial.intermediate_values)
    if trial.state == TrialState.COMPLETE and trial.values and not steps:
        steps = {1: float(trial.values[0])}
    return tuple(EpochResult(k, nan, nan, nan, float(v), 0.0, nan) for k, v in sorted(steps.items()))
