"""One trial's record: what was trained, how it went, where it ran; it writes and reads itself as JSON.

A record is frozen: a trial still training is a :class:`automl_cnn.engine.search.running.RunningTrial`,
which holds its record so far and replaces it (``dataclasses.replace``) as epochs come in; the
record of an ended trial never changes. Every record has a candidate: a trial asked of the study
but never sampled (its driver died first) is no trial here (:mod:`automl_cnn.engine.search.recovery`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from automl_cnn.codec import from_jsonable, to_jsonable
from automl_cnn.engine.outcome import Outcome
from automl_cnn.model.architecture import Candidate
from automl_cnn.model.measures import EpochResult, Profile


def trial_seed(seed: int, number: int) -> int:
    return (seed * 1_000_003 + number * 7919 + 17) % (2**31 - 1)


@dataclass(frozen=True)
class TrialRecord:
    number: int
    seed: int
    run_id: str
    candidate: Candidate
    profile: Profile | None = None
    outcome: Outcome = Outcome.RUNNING
    reason: str = ""
    history: tuple[EpochResult, ...] = ()
    started: float = field(default_factory=time.monotonic)  # this process's clock: when it started here
    seconds: float = 0.0
    where: dict[str, Any] = field(default_factory=dict)
    too_slow: bool = False  # stopped because it could not finish inside its share of the budget
    latency_ms: float | None = None  # one image, one CPU thread, median
    duplicate_of: int | None = None  # the trial whose result this one reuses
    preset: str | None = None  # the warm-start design it came from
    continues: int | None = None  # resume --more: the trial whose checkpoint it continues (engine/search/extension.py)
    retries: int = 0  # restarts from a checkpoint after its worker died
    reused_from: str = ""  # for a repeat of an earlier search's trial: that search's folder
    # the data-size fidelity (engine/fidelity.py): the share of the training split each epoch
    # trains on (empty: all of it), and the cost of scoring validation as a share of a full epoch
    fractions: tuple[float, ...] = ()
    eval_share: float = 0.0

    # the clock is this process's own; ``where`` (the worker's host and devices) is this run's
    __json_skip__: ClassVar[tuple[str, ...]] = ("started", "where")

    def to_json(self) -> dict[str, Any]:
        """The record as one ``trials.jsonl`` line's object."""
        # the candidate by its own writer, as it is read: settings added later stay out at their defaults
        return {**to_jsonable(self), "candidate": json.loads(self.candidate.to_json())}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> TrialRecord:
        """A record from :meth:`to_json`'s object; keys it lacks take their defaults, unknown keys are
        ignored. A line without a candidate (written by an older driver for a trial that never
        started) is no record: :class:`KeyError`."""
        if not record.get("candidate"):
            raise KeyError(f"trial {record.get('number')} has no candidate: it never started")
        # the candidate is read by its own reader, as everywhere else (Optuna's user attrs): the codec
        # would turn an int in a float field into a float, which changes ``Candidate.key()``
        rec = from_jsonable(cls, {**record, "candidate": None})
        return dataclasses.replace(rec, candidate=Candidate.from_dict(record["candidate"]))

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
        return self.candidate.training.epochs

    def fraction(self, epoch: int) -> float:
        """The share of the training split epoch ``epoch`` (1-based) trains on."""
        return self.fractions[epoch - 1] if 0 < epoch <= len(self.fractions) else 1.0

    def work(self, fraction: float) -> float:
        """An epoch's cost on ``fraction`` of the data, as a share of a full-data epoch's."""
        return fraction * (1.0 - self.eval_share) + self.eval_share

    def full_epoch_seconds(self) -> float | None:
        """The pace of a full-data epoch, from the latest epochs (the first also pays for warm-up
        and for a busy start of the search), those on a subset scaled to all of the data."""
        if not self.history:
            return None
        paces = [e.seconds / self.work(e.fraction) for e in self.history]
        recent = sorted(paces[1:][-3:]) or paces[:1]
        return recent[(len(recent) - 1) // 2]

    def projected_seconds(self, plan: Sequence[float] | None = None) -> float | None:
        """Training time for all epochs: the epochs run so far plus the rest at the pace of the
        latest ones, each on the share of the data it is planned to train on (``plan``: those
        shares instead of :attr:`fractions`)."""
        pace = self.full_epoch_seconds()
        if pace is None:
            return None
        shares = self.fractions if plan is None else plan
        rest = range(len(self.history), self.epochs)
        return self.train_seconds + pace * sum(self.work(shares[i] if i < len(shares) else 1.0) for i in rest)

    @property
    def on_subsets(self) -> bool:
        """Some of its epochs train on a subset of the data (the data-size fidelity)."""
        return any(share < 1.0 for share in self.fractions)

    def fit_seconds(self) -> float | None:
        """How long all of its epochs take on all of the training split: its own time when it
        trained on all of it, else its full-data pace times its epochs."""
        if all(self.fraction(e) >= 1.0 for e in range(1, self.epochs + 1)):
            return self.projected_seconds()
        pace = self.full_epoch_seconds()
        return None if pace is None else pace * self.epochs

    def objective(self, name: str) -> float:
        if name == "accuracy":
            return float(self.val_acc or 0.0)
        if name == "latency":
            return float(self.latency_ms or 0.0)
        assert self.profile is not None
        return float(getattr(self.profile, name))
