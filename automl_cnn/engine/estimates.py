"""How long final fits will take, estimated from the trials' records: what the search deadline
leaves room for, and what the final plan and the tie-break count with.

Each final fit takes its trial's measured training time, scaled to the final fit's data (train +
the selection half of validation) and to the threads it gets, packed onto the workers. The
search leaves room for the current leader's fits (``--final-repeats`` seeds, and
``--final-top-k`` runners-up), plus, where an ensemble may be delivered, the next best trials
up to :data:`RESERVED_MEMBERS` members: time that a single winner does not need then goes into
training it for longer (:mod:`automl_cnn.engine.final.plan`). The budget itself (the clock, the
deadline, the reserve) is :class:`automl_cnn.engine.budget.Budget`.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.session import SearchSession

RESERVED_MEMBERS = 3  # an ensemble's members the search leaves time to fit (the leader included)


def makespan(seconds: Sequence[float], slots: int) -> float:
    """How long jobs of these durations take on ``slots`` parallel workers, each job going to
    the worker free first, longest jobs first."""
    if not seconds:
        return 0.0
    free = [0.0] * max(1, min(slots, len(seconds)))
    for job_seconds in sorted(seconds, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + job_seconds)
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
    cap = session.budget.trial_cap
    return seconds if cap is None else min(seconds, cap)


def refit_ratio(session: SearchSession) -> float:
    """The final fit's images per trial's training image (train + the selection half of validation)."""
    bundle = session.bundle
    n_train = len(bundle.train_idx)
    return (n_train + len(bundle.select_positions())) / n_train


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
    """``deadline(records)``: the elapsed time on the session's budget clock
    (:meth:`~automl_cnn.engine.budget.Budget.elapsed`) at which the search phase must stop, given
    what the final fits of the records' leaders will take."""

    def __init__(self, session: SearchSession) -> None:
        self.session = session
        self.members = min(RESERVED_MEMBERS, session.config.ensemble_size())

    def __call__(self, records: list[TrialRecord]) -> float:
        budget = self.session.budget
        if budget.seconds is None:
            return budget.search_deadline(0.0)  # no time budget: never (no estimate needed)
        return budget.search_deadline(final_jobs_estimate(self.session, records, self.members))
