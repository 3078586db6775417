"""The time budget: when the search must stop so that the final fits and the export still fit.

``--time-budget`` covers the whole run. The search phase ends early enough for the final fits
it will most likely need (each one's measured training time, scaled to the final fit's data and
to the threads it gets, packed onto the workers) and a fixed reserve for export, plots and
registration. Those final fits are the current leader's (``--final-repeats`` seeds, and
``--final-top-k`` runners-up), plus, where an ensemble may be delivered, the next best trials up
to :data:`RESERVED_MEMBERS` members: time that a single winner does not need then goes into
training it for longer (:mod:`automl_cnn.engine.final.plan`).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.session import SearchSession

EXPORT_RESERVE_SECONDS = 20.0  # model export, plots, logging and registration after the final fit
RESERVED_MEMBERS = 3  # an ensemble's members the search leaves time to fit (the leader included)


def makespan(seconds: Sequence[float], slots: int) -> float:
    """How long jobs of these durations take on ``slots`` parallel workers, each job going to
    the worker free first, longest jobs first."""
    if not seconds:
        return 0.0
    free = [0.0] * max(1, min(slots, len(seconds)))
    for s in sorted(seconds, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + s)
    return max(free)


def ranked(records: list[TrialRecord]) -> list[TrialRecord]:
    """Trials that may be fitted, best first: completed ones, else those that ran an epoch
    (none judged too slow, no repeats)."""
    scored = [r for r in records if r.history and not r.too_slow and r.duplicate_of is None]
    completed = [r for r in scored if r.outcome == "completed"]
    return sorted(completed or scored, key=lambda r: -(r.val_acc or 0.0))


def fit_estimate(session: SearchSession, rec: TrialRecord) -> float:
    """Seconds ``rec``'s epochs take on all of the training split, at most what a trial may take
    (0 before any epoch ran). A trial that trained on data subsets (the data-size fidelity) may
    take far longer on all of the data: its final fit is planned for at most that long, its
    epochs cut to fit (:func:`automl_cnn.engine.final.plan.plan_final`)."""
    seconds = rec.fit_seconds() or 0.0
    limit = session.max_trial_seconds
    return seconds if limit is None else min(seconds, limit)


def final_seconds_estimate(records: list[TrialRecord], ratio: float, rounds: int) -> float:
    """How long ``rounds`` rounds of the current leader's final fit take (0 before any epoch ran)."""
    leaders = ranked(records)
    return (leaders[0].fit_seconds() or 0.0) * ratio * rounds if leaders else 0.0


def refit_ratio(session: SearchSession) -> float:
    """The final fit's images per trial's training image (train + the selection half of validation)."""
    b = session.bundle
    n_train = len(b.train_idx)
    return (n_train + len(b.select_positions())) / n_train


def final_jobs_estimate(session: SearchSession, records: list[TrialRecord], members: int) -> float:
    """Seconds the final fits of the current best trials take: the leader's ``--final-repeats``
    seeds, the runners-up of ``--final-top-k``, and the other members of an ensemble of
    ``members``, packed onto the workers."""
    cfg = session.config
    leaders = ranked(records)
    if not leaders:
        return 0.0
    fitted = leaders[: max(cfg.final.final_top_k, members)]
    jobs = [r for r in fitted[: cfg.final.final_top_k] for _ in range(cfg.final.final_repeats)] + fitted[
        cfg.final.final_top_k :
    ]
    ratio = refit_ratio(session) / session.final_speedup(len(jobs))
    return makespan([fit_estimate(session, r) * ratio for r in jobs], session.resources.workers)


class SearchDeadline:
    """``deadline(records)``: the monotonic time at which the search phase must stop."""

    def __init__(self, session: SearchSession, t0: float) -> None:
        self.session = session
        self.t0, self.budget = t0, session.budget
        self.ratio = refit_ratio(session)
        self.members = min(RESERVED_MEMBERS, session.config.ensemble_size())

    def __call__(self, records: list[TrialRecord]) -> float:
        if self.budget is None:
            return math.inf
        final = final_jobs_estimate(self.session, records, self.members)
        return self.t0 + self.budget - final - EXPORT_RESERVE_SECONDS
