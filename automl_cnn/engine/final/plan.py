"""What the final phase fits and delivers: the winner alone or an ensemble, and for how long.

Decided from what the trials left in the run folder (their validation probabilities), on the
two halves of the validation split (:meth:`DataBundle.check_positions`), so that no decision is
judged on the images it was made on:

* **Ensemble** (``--ensemble auto|K``, one objective): ensemble selection
  (:func:`~automl_cnn.engine.final.ensemble.select_ensemble`) from the winner over the best completed
  trials, on the selection half; the ensemble is delivered only when its accuracy on the check
  half beats the winner alone (a tie goes to the simpler model: the winner alone). With a time
  budget, members whose final fits do not fit the time left are dropped, the lightest first (the
  winner is never dropped), and the cut ensemble is scored again: it is delivered only if it
  still beats the winner alone.
* **Seeds**: a winner delivered alone is fitted with up to :data:`SEED_ENSEMBLE` seeds where the
  time left allows them (on workers that would idle otherwise); after the fits the check half
  decides between the seeds' average (a seed ensemble) and the first seed alone.
* **Epochs**: with a time budget, time left beyond what the fits need at the trials' epoch
  counts goes into longer fits (the schedule stretched), up to :data:`MAX_EPOCH_SCALE` times;
  fits of trials that trained on data subsets (whose final fit trains on all of the data) and
  need well over the time left (:data:`SHORTEN_BELOW`) are cut to the epochs that fit, their
  schedule compressed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from automl_cnn.engine.estimates import makespan, refit_ratio
from automl_cnn.engine.final.ensemble import blend, select_ensemble
from automl_cnn.engine.final.fits import eligible
from automl_cnn.engine.final.outcome import ENSEMBLE, HELD_OUT, TIE_SIMPLER, Decision
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.session import SearchSession

POOL = 20  # the best completed trials ensemble selection draws from
MAX_EPOCH_SCALE = 2.0  # a final fit trains at most this many times the trial's epochs
MIN_EPOCH_SCALE = 1.1  # less spare time than this is not worth changing the recipe for
SHORTEN_BELOW = 0.9  # fits of trials on data subsets that would take over 1/0.9 of the time left are cut
SEED_ENSEMBLE = 3  # a winner alone is fitted with up to this many seeds where the time left allows
FIT_MARGIN = 1.1  # a final fit's pace against its trial's, planned (measured on mnist5k: about 1.08x)


@dataclass(frozen=True)
class FinalPlan:
    members: tuple[tuple[int, float], ...]  # (trial, weight); a single member: no ensemble
    epochs: dict[int, int]  # trial -> epochs of its final fit (absent: the trial's own)
    decisions: tuple[Decision, ...]  # what was decided and why (the winner, second seeds, ensemble)
    check: dict[str, float]  # check-half accuracy of the winner alone and of the ensemble (if tried)
    seeds: int = 1  # fits of the winner (more than one: a seed ensemble, if the check half prefers it)

    @property
    def ensemble(self) -> bool:
        return len(self.members) > 1


Scored = list[tuple[TrialRecord, np.ndarray]]


def pool_of(session: SearchSession, records: list[TrialRecord], winner: TrialRecord) -> Scored:
    """The winner and the best other completed trials of this search, with their validation
    probabilities (trials whose probabilities were not kept are left out)."""
    mine = [r for r in eligible(records) if r.duplicate_of is None and not r.reused_from]
    ranked = sorted(mine, key=lambda r: (r is not winner, -(r.val_acc or 0.0)))[:POOL]
    out = []
    for rec in ranked:
        probs = session.state.load_val_probs(rec.number)
        if probs is not None and len(probs) == len(session.bundle.val_idx):
            out.append((rec, probs))
    return out if out and out[0][0] is winner else []


ENSEMBLE_QUESTION = "an ensemble of trials, or the winner alone?"
ENSEMBLE_RULE = f"the higher accuracy on {HELD_OUT}; {TIE_SIMPLER} (fewer members)"
Members = tuple[tuple[int, float], ...]


def _no_ensemble(reason: str) -> Decision:
    return Decision(ENSEMBLE, ENSEMBLE_QUESTION, rule=ENSEMBLE_RULE, answer="no", reason=reason)


def compare(together: float, alone: float, names: str, winner: int, images: int) -> Decision:
    """The ensemble ``names`` (accuracy ``together``) against trial ``winner`` alone (``alone``),
    on ``images`` held-out images: strictly higher wins, a tie goes to the winner alone."""
    candidates = (f"trials {names}", f"trial {winner} alone")
    versus = f"{together:.2%} against {alone:.2%} for trial {winner} alone on {images} held-out images"
    if together > alone:
        answer, reason = f"yes, trials {names}", f"higher accuracy: {versus}"
    elif together == alone:
        answer, reason = "no", f"{TIE_SIMPLER}: trials {names} together scored {versus}"
    else:
        answer, reason = "no", f"trials {names} together scored lower: {versus}"
    return Decision(ENSEMBLE, ENSEMBLE_QUESTION, candidates, (together, alone), images, ENSEMBLE_RULE, answer, reason)


def check_accuracy(pool: Scored, members: Members, session: SearchSession) -> float:
    """The accuracy on the check half of ``members`` (trial, weight) blended from ``pool``."""
    b = session.bundle
    chk = b.check_positions()
    y = b.images.y[b.val_idx][chk]
    probs = {rec.number: p for rec, p in pool}
    return session.yardstick(y)(blend([probs[n][chk] for n, _ in members], [w for _, w in members]))


def choose_members(
    session: SearchSession, records: list[TrialRecord], winner: TrialRecord
) -> tuple[Members, Decision, dict[str, float], Scored]:
    """The members to deliver, the decision saying why, the check-half accuracies compared, and
    the pool of scored trials they came from."""
    alone = ((winner.number, 1.0),)
    limit = session.config.ensemble_size()
    if limit <= 1:
        why = "several objectives: the pick rule decides" if session.multi_objective else "ensembles are off"
        return alone, _no_ensemble(why), {}, []
    pool = pool_of(session, records, winner)
    if len(pool) < 2:
        return alone, _no_ensemble("fewer than two completed trials to choose from"), {}, pool
    b = session.bundle
    y = b.images.y[b.val_idx]
    sel, chk = b.select_positions(), b.check_positions()
    picked = select_ensemble([p[sel] for _, p in pool], y[sel], 0, limit, metric=session.metric[0])
    single = session.yardstick(y[chk])(pool[0][1][chk])
    check = {"single": single}
    if picked.size == 1:
        return alone, _no_ensemble("ensemble selection on the selection half kept the winner alone"), check, pool
    members = tuple((pool[i][0].number, w) for i, w in zip(picked.members, picked.weights, strict=True))
    together = check_accuracy(pool, members, session)
    check["ensemble"] = together
    decision = compare(together, single, ", ".join(str(n) for n, _ in members), winner.number, len(chk))
    return (members if together > single else alone), decision, check, pool


def _fit_seconds(session: SearchSession, records: dict[int, TrialRecord], jobs: list[int], scale: float) -> float:
    """How long these fits take, from their trials' pace (with a margin: a final fit also keeps
    its weight average and scores the check half every epoch)."""
    ratio = FIT_MARGIN * refit_ratio(session) / session.final_speedup(len(jobs))
    seconds = [(records[n].fit_seconds() or 0.0) * ratio * scale for n in jobs]  # on all of the data
    return makespan(seconds, session.resources.workers)


def cut_to_fit(members: Members, winner: int, fits: Callable[[Members], bool]) -> Members:
    """Drop members, the lightest first but never the winner (a member may outweigh it), until
    ``fits(members)``; the weights renormalised."""
    while len(members) > 1 and not fits(members):
        kept = sorted(members, key=lambda m: (m[0] != winner, -m[1]))[:-1]
        total = sum(w for _, w in kept)
        members = tuple((n, w / total) for n, w in kept)
    return members


def rescored(
    winner: int, cut: Members, before: Decision, check: dict[str, float], score_of: Callable[[Members], float]
) -> tuple[Members, Decision]:
    """An ensemble accepted on the check half (``before``) and then ``cut`` to fit the time left,
    scored again there (``score_of``: members -> check-half accuracy): delivered only if it still
    beats trial ``winner`` alone (``check["single"]``); else the winner alone."""
    alone = ((winner, 1.0),)
    if len(cut) == 1:
        return alone, _no_ensemble(f"the time left fits the winner's final fit only; before the cut: {before.reason}")
    names = ", ".join(str(n) for n, _ in cut)
    together = score_of(cut)
    check["cut ensemble"] = together
    decision = compare(together, check["single"], names, winner, before.images)
    reason = f"cut to {len(cut)} members to fit the time left, then scored again: {decision.reason}"
    return (cut if together > check["single"] else alone), dataclasses.replace(decision, reason=reason)


def _seeds(
    session: SearchSession, winner: int, fits: list[int], fit_time: Callable[[list[int]], float], left: float
) -> int:
    """How many seeds of the winner alone the time left allows (on workers that would idle)."""
    limit = min(session.config.ensemble_size(), SEED_ENSEMBLE)
    seeds = 1
    while seeds < limit and fit_time([winner] * (seeds + 1 - fits.count(winner)) + fits) <= left:
        seeds += 1
    return seeds


def _epochs(
    by_number: dict[int, TrialRecord], fits: list[int], needed: float, time_left: float | None
) -> dict[int, int]:
    """Epochs of the final fits where the time left calls for longer (or shorter) fits."""
    if time_left is None or needed <= 0:
        return {}
    scale = min(MAX_EPOCH_SCALE, time_left / needed)
    if scale >= MIN_EPOCH_SCALE:
        return {n: max(by_number[n].epochs, round(by_number[n].epochs * scale)) for n in set(fits)}
    if scale < SHORTEN_BELOW:  # only fits of trials that trained on subsets, on all of the data now
        subset_trained = {n for n in fits if by_number[n].on_subsets}
        return {n: max(1, min(by_number[n].epochs, int(by_number[n].epochs * scale))) for n in subset_trained}
    return {}


def plan_final(
    session: SearchSession, records: list[TrialRecord], winner: TrialRecord, others: list[int], time_left: float | None
) -> FinalPlan:
    """The final plan for ``winner``; ``others``: the fits made besides one per member (the
    winner's further ``--final-repeats`` seeds, every seed of the ``--final-top-k`` runners-up),
    by trial number, which share the time; ``time_left``: seconds the fits may take (None: no
    time budget)."""
    members, decision, check, pool = choose_members(session, records, winner)
    by_number = {r.number: r for r in records}
    jobs = lambda ms: [n for n, _ in ms if n not in others] + others  # noqa: E731
    seconds = lambda js: _fit_seconds(session, by_number, js, 1.0)  # noqa: E731
    if time_left is not None and len(members) > 1:
        cut = cut_to_fit(members, winner.number, lambda ms: seconds(jobs(ms)) <= time_left)
        if cut != members:
            score_of = lambda ms: check_accuracy(pool, ms, session)  # noqa: E731
            members, decision = rescored(winner.number, cut, decision, check, score_of)
    fits = jobs(members)
    seeds = 1
    if len(members) == 1 and time_left is not None:  # spare time: more seeds of the winner, on idle workers
        seeds = _seeds(session, winner.number, fits, seconds, time_left)
        if seeds > max(1, fits.count(winner.number)):
            fits = [winner.number] * (seeds - fits.count(winner.number)) + fits
    epochs = _epochs(by_number, fits, seconds(fits), time_left)
    return FinalPlan(members, epochs, (decision,), check, max(seeds, 1))
