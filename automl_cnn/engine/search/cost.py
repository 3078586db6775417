"""How long a candidate will take to train, from its FLOPs and the epochs measured so far, and
whether it can reach its next rung in the time a trial may take.

The time guard judges a trial by its **next rung**, never by a fixed full schedule: a candidate
is refused before training only when its first rung (epoch 1 of the pruner's rungs 1, 3, 9, ...;
its last epoch without a pruner) cannot fit in a trial's share of the budget, and a running
trial is stopped only when the next rung it would have to reach cannot fit (its last epoch
past the top rung). Between rungs a trial that fitted when it passed its rung is not stopped
unless it runs far over (:data:`MID_RUNG_SLACK`): its time was judged at the rung.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.search.moasha import ETA, MIN_EPOCHS, rung_epochs
from automl_cnn.engine.session import SearchSession

GATE_SLACK = 1.5  # before training: refused when the first rung's lower bound is over this times the cap
FIRST_EPOCH_SLACK = 2.0  # after the first epoch alone (slowed by warm-up and start-up)
MID_RUNG_SLACK = 1.5  # between rungs: the trial was judged at its last rung
CHEAP_SHARE = 0.03  # with several objectives, a trial this close to done (share of the budget) is not stopped


@dataclass
class CostModel:
    n_train: int
    n_val: int
    rates: list[float] = field(default_factory=list)  # FLOPs of training work per second

    def work(self, flops: int) -> float:
        """FLOPs of one epoch: forward + backward (about 3x forward) on train, forward on val."""
        return float(flops) * (3 * self.n_train + self.n_val)

    def observe(self, flops: int, epoch_seconds: float, share: float = 1.0) -> None:
        """One epoch's time; ``share``: its work as a share of a full-data epoch's."""
        if flops > 0 and epoch_seconds > 0:
            self.rates.append(self.work(flops) * share / epoch_seconds)

    def lower_bound_seconds(self, flops: int, epochs: float) -> float | None:
        """A lower bound of the training time of ``epochs`` full-data epochs (a fraction where
        some train on a subset): at the fastest rate measured so far (large networks reach it;
        small ones are dominated by per-batch overhead)."""
        if len(self.rates) < 3:
            return None
        return self.work(flops) * epochs / max(self.rates)


def rungs(pruner: str, max_epochs: int) -> tuple[int, ...]:
    """The epochs at which ``--pruner`` judges a trial: 1, 3, 9, ... below ``max_epochs`` for
    ``asha`` and ``hyperband`` (Hyperband's first bracket: later brackets start at a later
    rung of the same ladder), every epoch for ``median``, none for ``none``."""
    if pruner in ("asha", "hyperband"):
        return rung_epochs(MIN_EPOCHS, ETA, 0, max_epochs)
    if pruner == "median":
        return tuple(range(MIN_EPOCHS, max_epochs))
    return ()


def trial_rungs(session: SearchSession, rec: TrialRecord) -> tuple[int, ...]:
    """The rungs below ``rec``'s last epoch (the pruner's rungs do not depend on the space)."""
    return rungs(session.config.search.pruner, rec.epochs)


def next_rung(ladder: Sequence[int], done: int, epochs: int) -> int:
    """The rung a trial with ``done`` of its ``epochs`` epochs trained must reach next: the first
    rung after ``done``, or its last epoch past the top rung."""
    return next((rung for rung in ladder if done < rung < epochs), epochs)


def rung_words(rung: int, epochs: int, which: str = "next") -> str:
    """The rung ``rung`` of a trial of ``epochs`` epochs, as a reason names it."""
    return f"its {which} rung, epoch {rung}," if rung < epochs else f"its last epoch, {epochs},"


def first_rung_floor(session: SearchSession, rec: TrialRecord, cost: CostModel) -> tuple[float, int] | None:
    """A lower bound of the seconds ``rec`` takes to reach its first rung (on the data ladder,
    every epoch at the ladder's smallest share: the cheapest way it may go), and that rung;
    None before the cost model has measured enough or without a profile."""
    if rec.profile is None:
        return None
    first = next_rung(trial_rungs(session, rec), 0, rec.epochs)
    ladder = session.data_ladder
    cheapest = ladder.plan(rec.epochs, ladder.shares[0]) if ladder is not None else [1.0] * rec.epochs
    floor = cost.lower_bound_seconds(rec.profile.flops, sum(rec.work(share) for share in cheapest[:first]))
    return None if floor is None else (floor, first)


def to_next_rung(session: SearchSession, rec: TrialRecord, plan: Sequence[float] | None) -> tuple[float, str, float]:
    """For a running trial: the seconds it will have trained when it reaches its next rung (its
    epochs so far, then the rest at the pace of the latest ones on ``plan``'s shares, default
    its own), that rung in words, and how far over a trial's cap that may go before the trial
    is stopped (:data:`FIRST_EPOCH_SLACK` after the first epoch, 1 at a rung or without rungs,
    :data:`MID_RUNG_SLACK` between rungs)."""
    ladder, done = trial_rungs(session, rec), len(rec.history)
    rung = next_rung(ladder, done, rec.epochs)
    pace = rec.full_epoch_seconds()
    shares = rec.fractions if plan is None else plan
    ahead = sum(rec.work(shares[i] if i < len(shares) else 1.0) for i in range(done, rung))
    seconds = rec.train_seconds + (pace or 0.0) * ahead
    if done <= 1:
        slack = FIRST_EPOCH_SLACK
    elif done in ladder or not ladder:
        slack = 1.0
    else:
        slack = MID_RUNG_SLACK
    return seconds, rung_words(rung, rec.epochs), slack


def cheap_to_finish(session: SearchSession, rec: TrialRecord) -> bool:
    """With several objectives, a trial whose remaining epochs would take less than
    :data:`CHEAP_SHARE` of the time budget is not stopped: stopping it saves next to nothing,
    and cheap trials are where the front's low-cost end comes from (measured on mnist5k:
    one-epoch MLPs stopped at the first rung that would have completed in 2 s)."""
    budget = session.budget.seconds
    projected = rec.projected_seconds()
    if budget is None or projected is None:
        return False
    return projected - rec.train_seconds < CHEAP_SHARE * budget
