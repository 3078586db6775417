"""Selection that knows its noise: trials within noise of the winner get a second seed.

On a few hundred validation images, trials a few tenths of a point apart cannot be told apart
(one image is 0.13 points of mnist5k's 750). After the search, the completed trials that the
winner does not beat significantly on validation (McNemar's exact test on the two trials'
predictions, one-sided, 5%) are its contenders, at most :data:`MAX_CONTENDERS` with it. Where
the time budget left allows it beside the final fits, each is trained again, as in the search, with a
second seed; the one with the best mean validation accuracy over its two seeds wins, and means
within one validation image of each other are a tie, which goes to the simpler model (fewer FLOPs,
then fewer parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from automl_cnn.engine.estimates import fit_estimate, makespan, refit_ratio
from automl_cnn.engine.final.fits import SECOND_SEED, final_fit
from automl_cnn.engine.final.outcome import SECOND_SEEDS, TIE_SIMPLER, WINNER, Decision
from automl_cnn.engine.final.plan import pool_of
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.session import SearchSession
from automl_cnn.errors import AutoMLError
from automl_cnn.metrics import paired_test

MAX_CONTENDERS = 3  # the winner and at most two others
SECOND_SEED_OFFSET = 20_000

SEEDS_QUESTION = "which of the trials within noise of the winner on validation wins over two seeds?"
SEEDS_RULE = f"the best mean validation accuracy over two seeds; within one image, {TIE_SIMPLER} (fewer FLOPs)"


@dataclass(frozen=True)
class TieBreak:
    winner: TrialRecord
    decisions: tuple[Decision, ...]  # the winner, and second seeds
    means: dict[int, float]  # trial -> mean validation accuracy over its two seeds


def contenders(session: SearchSession, records: list[TrialRecord], winner: TrialRecord) -> list[TrialRecord]:
    """The winner and the best trials it does not beat significantly on validation."""
    pool = pool_of(session, records, winner)
    if not pool:
        return []
    y = session.bundle.images.y[session.bundle.val_idx]
    stick = session.yardstick(y)
    close = [rec for rec, probs in pool[1:] if not stick.better(pool[0][1], probs)]
    return [winner, *close[: MAX_CONTENDERS - 1]] if close else []


def winner_decision(session: SearchSession, records: list[TrialRecord], winner: TrialRecord) -> Decision:
    """Why the search's winner won: against the runner-up, on the same validation images."""
    question = "which trial did the search find best on validation?"
    if session.multi_objective:
        rule = session.config.pick_rule().describe()
        return Decision(WINNER, question, rule=rule, answer=f"trial {winner.number}", reason=f"picked by {rule}")
    rule = "the highest validation accuracy (fewer parameters break ties)"
    answer, n = f"trial {winner.number}", len(session.bundle.val_idx)
    pool = pool_of(session, records, winner)
    if len(pool) < 2:
        reason = f"the best validation accuracy, {winner.val_acc or 0.0:.2%} on {n} images"
        return Decision(WINNER, question, (answer,), (winner.val_acc or 0.0,), n, rule, answer, reason)
    y = session.bundle.images.y[session.bundle.val_idx]
    (_, best), (second, probs) = pool[0], pool[1]
    stick = session.yardstick(y)
    p, mine, theirs = stick.p_value(best, probs), stick(best), stick(probs)
    lead = "significantly better" if p < 0.05 else "better, but not significantly"
    versus = f"{mine:.2%} on {n} validation images against {theirs:.2%} for the runner-up, trial {second.number}"
    reason = f"{versus}: {lead} ({stick.test_name} p={p:.2g})"
    candidates = (answer, f"trial {second.number}")
    return Decision(WINNER, question, candidates, (mine, theirs), n, rule, answer, reason)


def _cost(rec: TrialRecord) -> tuple[int, int]:
    return (rec.profile.flops, rec.profile.params) if rec.profile else (0, 0)


def _no_seeds(reason: str) -> Decision:
    return Decision(SECOND_SEEDS, SEEDS_QUESTION, rule=SEEDS_RULE, answer="none", reason=reason)


def _skipped(session: SearchSession, time_left: float | None) -> str | None:
    """Why no second seeds are tried at all (None: they may be)."""
    if session.multi_objective:
        return "several objectives: the pick rule decides"
    if time_left is None:
        return "no time budget, so no leftover time to spend on them"
    if session.data_ladder is not None:  # second seeds train every epoch on all of the data
        return "the trials trained on data subsets: a second seed on all of the data would not compare"
    return None


def break_ties(
    session: SearchSession, records: list[TrialRecord], winner: TrialRecord, time_left: float | None, reserve: float
) -> TieBreak:
    """The winner after second seeds of its contenders, where ``time_left`` holds their fits
    besides ``reserve`` seconds kept for the final fits (None, no time budget: nothing is left
    over to spend, and the winner stands)."""
    first = winner_decision(session, records, winner)
    skipped = _skipped(session, time_left)
    group = [] if skipped else contenders(session, records, winner)
    if not group:
        test = paired_test(session.metric[0])
        why = skipped or f"every other trial is significantly worse than the winner on validation ({test}, 5%)"
        return TieBreak(winner, (first, _no_seeds(why)), {})
    ratio = 1.0 / session.final_speedup(len(group))
    seconds = makespan([(r.projected_seconds() or 0.0) * ratio for r in group], session.resources.workers)
    names = ", ".join(str(r.number) for r in group)
    if time_left is not None and seconds + reserve > time_left:
        why = f"trials {names} are within noise on validation, but no time is left for second seeds"
        return TieBreak(winner, (first, _no_seeds(why)), {})
    seed = session.config.search.seed + SECOND_SEED_OFFSET
    session.progress.set_phase(f"telling trials {names} apart: a second seed each")
    try:
        fits = final_fit(session, [(r, seed) for r in group], kind=SECOND_SEED)
    except AutoMLError as exc:
        return TieBreak(winner, (first, _no_seeds(f"abandoned ({exc}); the winner stands")), {})
    y = session.bundle.images.y[session.bundle.val_idx]
    means = {}
    for rec, fit in zip(group, fits, strict=True):
        second = session.yardstick(y)(fit.outputs.eval_probs) if fit.outputs is not None else float("nan")
        means[rec.number] = float(np.nanmean([rec.val_acc or 0.0, second]))
    chosen, decision = _seeds_decision(group, means, winner, len(y))
    return TieBreak(chosen, (first, decision), means)


def _seeds_decision(
    group: list[TrialRecord], means: dict[int, float], winner: TrialRecord, images: int
) -> tuple[TrialRecord, Decision]:
    top = max(means.values())
    tied = [r for r in group if means[r.number] >= top - 1.0 / images]
    chosen = min(tied, key=lambda r: (_cost(r), r is not winner))
    best = max(group, key=lambda r: means[r.number])
    scores = ", ".join(f"trial {r.number} {means[r.number]:.2%}" for r in group)
    if len(tied) == 1:
        reason = f"the best mean over two seeds ({scores})"
    elif best is chosen:
        reason = f"{TIE_SIMPLER}: the simplest of {len(tied)} within one image ({scores})"
    else:
        reason = (
            f"trial {best.number}'s higher mean is within one image: {TIE_SIMPLER}, "
            f"and trial {chosen.number} has fewer FLOPs ({scores})"
        )
    candidates = tuple(f"trial {r.number}" for r in group)
    values = tuple(means[r.number] for r in group)
    answer = f"trial {chosen.number}"
    return chosen, Decision(SECOND_SEEDS, SEEDS_QUESTION, candidates, values, images, SEEDS_RULE, answer, reason)


def reserve_seconds(session: SearchSession, winner: TrialRecord) -> float:
    """The final fit of the winner alone at its trial's epochs: what second seeds must leave."""
    return fit_estimate(session, winner) * refit_ratio(session) / session.final_speedup(1)
