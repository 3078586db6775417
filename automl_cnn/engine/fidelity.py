"""The data-size fidelity: early rungs train on stratified subsets, survivors on all the data.

Hyperband's and FABOLAS's data-subset experiments use the training-set size as a fidelity: a
candidate is judged first on a small subset and sees all of the data only once it has
survived. Here the rungs of ``--pruner`` (epochs 1, 3, 9, ... at reduction factor 3) carry it:
with ``--data-fidelity auto`` the first epoch trains on 1/9 of the training split, epochs 2 and
3 on 1/3, and later epochs on all of it, so a trial stopped at its first rung costs a ninth of
an epoch. Every trial follows the same ladder, so trials are compared at a rung on the same
images. A stage whose subset would hold fewer than :data:`MIN_SUBSET` images is skipped, and a
training split under :data:`MIN_IMAGES` images trains every epoch on all of it (small data is
cheap, and a subset of it says little).

A trial's *cap* is the largest share it goes on to train on: with a time budget, a trial that
could not afford the next stage of the ladder within its share of the budget stays at the
share it has reached (:meth:`DataLadder.plan` with ``cap``) rather than being stopped, and all
of the data is seen by its final fit, whose epochs are fitted to the time left.
"""

from __future__ import annotations

from dataclasses import dataclass

from automl_cnn.engine.records import TrialRecord

MIN_IMAGES = 10_000  # smaller training splits train every epoch on all of them
MIN_SUBSET = 2_000  # a stage of fewer images is skipped
REDUCTION = 3  # the rungs' reduction factor (services.study.make_pruner)
LEVELS = 2  # stages below all of the data: 1/9 and 1/3


@dataclass(frozen=True)
class DataLadder:
    """``stages``: (last epoch of the stage, share of the training split), by epoch; epochs
    after the last stage train on all of it."""

    stages: tuple[tuple[int, float], ...]

    def fraction(self, epoch: int, cap: float = 1.0) -> float:
        """The share epoch ``epoch`` (1-based) trains on."""
        for last, share in self.stages:
            if epoch <= last:
                return min(share, cap)
        return min(1.0, cap)

    def plan(self, epochs: int, cap: float = 1.0) -> list[float]:
        """The share of every epoch of an ``epochs``-epoch trial."""
        return [self.fraction(e, cap) for e in range(1, epochs + 1)]

    @property
    def shares(self) -> list[float]:
        """The shares of the ladder, smallest first, all of the data last."""
        return sorted({share for _, share in self.stages} | {1.0})

    def describe(self) -> str:
        steps, first = [], 1
        for last, share in self.stages:
            span = f"epochs {first}-{last}" if last > first else f"epoch {first}"
            steps.append(f"{span} on {share:.0%}")
            first = last + 1
        return ", ".join([*steps, "then all of the training split"])


def ladder_for(setting: str, pruner: str, n_train: int) -> DataLadder | None:
    """The ladder ``--data-fidelity SETTING`` gives a search with ``--pruner PRUNER`` on
    ``n_train`` training images (None: every epoch trains on all of them)."""
    if setting == "off" or pruner == "none" or n_train < MIN_IMAGES:
        return None
    stages = []
    for level in range(LEVELS):
        share = 1.0 / REDUCTION ** (LEVELS - level)
        if share * n_train >= MIN_SUBSET:
            stages.append((REDUCTION**level, share))
    # a skipped stage's epochs train on the next one: 1/9 too small gives epochs 1-3 on 1/3
    return DataLadder(tuple(stages)) if stages else None


def restored_plan(ladder: DataLadder, rec: TrialRecord) -> list[float]:
    """``rec``'s shares: the ladder's, below the share it was held to. A trial continued after a
    resume has no plan in the study: the shares its epochs trained on say where it was held."""
    trained = [e.fraction for e in rec.history]
    held = any(e.fraction < ladder.fraction(e.epoch) - 1e-9 for e in rec.history)
    cap = max(trained) if held else 1.0
    return trained + ladder.plan(rec.epochs, cap)[len(trained) :]


def held_plan(ladder: DataLadder, rec: TrialRecord) -> list[float]:
    """``rec``'s shares if it held the share it trains on now for the rest: the cheapest way the
    ladder leaves it to finish (what the too-slow rule judges it by)."""
    done = len(rec.history)
    return [*rec.fractions[:done], *ladder.plan(rec.epochs, rec.fraction(done))[done:]]


def fitted_plan(ladder: DataLadder, rec: TrialRecord, limit: float) -> tuple[list[float], float] | None:
    """Before ``rec``'s next stage: the plan with the largest share it may go on to and still
    finish in ``limit`` seconds (from the first epoch alone judged leniently, as the too-slow rule
    does), and that share; None where nothing changes (not the start of a stage, or the
    ladder's plan fits). A trial that cannot afford even its current share keeps it, for the
    too-slow rule to stop."""
    done = len(rec.history)
    if not rec.fractions or done == 0 or done >= rec.epochs:
        return None
    now, top = rec.fraction(done), max(rec.fractions)
    if rec.fraction(done + 1) <= now:
        return None  # not the start of a stage
    slack = 2.0 if done == 1 else 1.0
    current = list(rec.fractions)
    plan, cap = current, top
    for cap in [share for share in reversed(ladder.shares) if now <= share <= top]:
        plan = current[:done] + ladder.plan(rec.epochs, cap)[done:]
        if (rec.projected_seconds(plan) or 0.0) <= limit * slack:
            break
    return None if plan == current else (plan, cap)
