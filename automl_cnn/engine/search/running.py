"""A trial while it trains: its record so far, replaced as it changes.

A :class:`~automl_cnn.engine.records.TrialRecord` is frozen. The driver holds each trial it runs
as a :class:`RunningTrial`: the record so far (outcome ``running``), swapped for a new one with
``dataclasses.replace`` as epochs come in, as the gate profiles it, as the data ladder changes its
shares, as its worker is found or lost, as it is retried. When the trial ends,
:meth:`RunningTrial.ended` gives its final record, which never changes again.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import optuna

from automl_cnn.engine.outcome import Outcome, TrialAttrs
from automl_cnn.engine.records import TrialRecord
from automl_cnn.model.measures import EpochResult


@dataclass
class RunningTrial:
    record: TrialRecord  # what is known of the trial so far

    @property
    def number(self) -> int:
        return self.record.number

    @property
    def job(self) -> str:
        return self.record.job

    def update(self, **changes: Any) -> TrialRecord:
        """The record with ``changes``, from now on."""
        self.record = dataclasses.replace(self.record, **changes)
        return self.record

    def add_epoch(self, epoch: EpochResult) -> TrialRecord:
        return self.update(history=(*self.record.history, epoch))

    def attrs(self) -> TrialAttrs:
        """What the study keeps of the trial so far (written at once by ``TrialAttrs.write``)."""
        rec = self.record
        finished = rec.outcome != Outcome.RUNNING
        return TrialAttrs(
            seed=rec.seed,
            mlflow_run_id=rec.run_id or None,
            candidate=rec.candidate.to_json(),
            candidate_key=rec.candidate.key(),
            preset=rec.preset,
            continues=rec.continues,
            params=rec.profile.params if rec.profile is not None else None,
            flops=rec.profile.flops if rec.profile is not None else None,
            latency_ms=rec.latency_ms,
            outcome=Outcome(rec.outcome).value if finished else None,
            reason=(rec.reason or None) if finished else None,
        )

    def ended(self, outcome: Outcome, reason: str, **changes: Any) -> TrialRecord:
        """The trial's final record: how it ended, and how long it took."""
        return self.update(outcome=outcome, reason=reason, seconds=time.monotonic() - self.record.started, **changes)


Running = tuple[RunningTrial, optuna.Trial]  # a trial the driver runs, and the study's handle on it
