"""Selection that knows its noise: trials within noise of the winner get a second seed.

On a few hundred validation images, trials a few tenths of a point apart cannot be told apart
(one image is 0.13 points of mnist5k's 750). After the search, the completed trials that the
winner does not beat significantly on validation (McNemar's exact test on the two trials'
predictions, one-sided, 5%) are its contenders, at most :data:`MAX_CONTENDERS` with it. Where
the time budget left allows it beside the final fits, each is trained again, as in the search, with a
second seed; the one with the best mean validation accuracy over its two seeds wins, and means
within one validation image of each other are a tie, broken by cost (parameters, then FLOPs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from automl_cnn.engine.estimates import fit_estimate, makespan, refit_ratio
from automl_cnn.engine.final.ensemble import accuracy, significantly_better
from automl_cnn.engine.final.fits import SECOND_SEED, final_fit
from automl_cnn.engine.final.plan import pool_of
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.session import SearchSession
from automl_cnn.errors import AutoMLError

MAX_CONTENDERS = 3  # the winner and at most two others
SECOND_SEED_OFFSET = 20_000


@dataclass(frozen=True)
class TieBreak:
    winner: TrialRecord
    notes: tuple[str, ...]
    means: dict[int, float]  # trial -> mean validation accuracy over its two seeds


def contenders(session: SearchSession, records: list[TrialRecord], winner: TrialRecord) -> list[TrialRecord]:
    """The winner and the best trials it does not beat significantly on validation."""
    pool = pool_of(session, records, winner)
    if not pool:
        return []
    y = session.bundle.images.y[session.bundle.val_idx]
    best = pool[0][1].argmax(1) == y
    close = [rec for rec, probs in pool[1:] if not significantly_better(best, probs.argmax(1) == y)]
    return [winner, *close[: MAX_CONTENDERS - 1]] if close else []


def _cost(rec: TrialRecord) -> tuple[int, int]:
    return (rec.profile.params, rec.profile.flops) if rec.profile else (0, 0)


def break_ties(
    session: SearchSession, records: list[TrialRecord], winner: TrialRecord, time_left: float | None, reserve: float
) -> TieBreak:
    """The winner after second seeds of its contenders, where ``time_left`` holds their fits
    besides ``reserve`` seconds kept for the final fits (None, no time budget: nothing is left
    over to spend, and the winner stands)."""
    # second seeds train every epoch on all of the data: not comparable with trials on data subsets
    subsets = session.data_ladder is not None
    group = [] if session.multi_objective or time_left is None or subsets else contenders(session, records, winner)
    if not group:  # without a time budget there is no leftover budget to spend
        return TieBreak(winner, (), {})
    ratio = 1.0 / session.final_speedup(len(group))
    seconds = makespan([(r.projected_seconds() or 0.0) * ratio for r in group], session.resources.workers)
    names = ", ".join(str(r.number) for r in group)
    if time_left is not None and seconds + reserve > time_left:
        note = f"trials {names} are within noise on validation; no time left for second seeds to tell them apart"
        return TieBreak(winner, (note,), {})
    seed = session.config.search.seed + SECOND_SEED_OFFSET
    session.progress.set_phase(f"telling trials {names} apart: a second seed each")
    try:
        fits = final_fit(session, [(r, seed) for r in group], kind=SECOND_SEED)
    except AutoMLError as exc:
        return TieBreak(winner, (f"second seeds abandoned ({exc}); the winner stands",), {})
    y = session.bundle.images.y[session.bundle.val_idx]
    means = {}
    for rec, fit in zip(group, fits, strict=True):
        second = accuracy(fit.outputs.eval_probs, y) if fit.outputs is not None else float("nan")
        means[rec.number] = float(np.nanmean([rec.val_acc or 0.0, second]))
    top = max(means.values())
    tied = [r for r in group if means[r.number] >= top - 1.0 / len(y)]
    chosen = min(tied, key=lambda r: (_cost(r), r is not winner))
    scores = ", ".join(f"trial {r.number} {means[r.number]:.2%}" for r in group)
    why = "the best mean" if len(tied) == 1 else f"the cheapest of {len(tied)} within one image of the best"
    note = f"trials {names} were within noise on validation; over two seeds: {scores}: trial {chosen.number} ({why})"
    return TieBreak(chosen, (note,), means)


def reserve_seconds(session: SearchSession, winner: TrialRecord) -> float:
    """The final fit of the winner alone at its trial's epochs: what second seeds must leave."""
    return fit_estimate(session, winner) * refit_ratio(session) / session.final_speedup(1)
