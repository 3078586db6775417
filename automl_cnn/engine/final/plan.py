"""What the final phase fits and delivers: the winner alone or an ensemble, and for how long.

Decided from what the trials left in the run folder (their validation probabilities), on the
two halves of the validation split (:meth:`DataBundle.check_positions`), so that no decision is
judged on the images it was made on:

* **Ensemble** (``--ensemble auto|K``, one objective): ensemble selection
  (:func:`~automl_cnn.engine.final.ensemble.select_ensemble`) from the winner over the best completed
  trials, on the selection half; the ensemble is delivered only when it beats the winner alone
  on the check half (accuracy, then log loss). With a time budget, members whose final fits do
  not fit the time left are dropped, the lightest first; the winner is never dropped.
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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from automl_cnn.engine.estimates import makespan, refit_ratio
from automl_cnn.engine.final.ensemble import blend, score, select_ensemble
from automl_cnn.engine.final.fits import eligible
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
    notes: tuple[str, ...]  # what was decided and why (panel, summary, report)
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


def choose_members(
    session: SearchSession, records: list[TrialRecord], winner: TrialRecord
) -> tuple[tuple[tuple[int, float], ...], list[str], dict[str, float]]:
    """The members to deliver, notes saying why, and the check-half accuracies compared."""
    alone = ((winner.number, 1.0),)
    limit = session.config.ensemble_size()
    if limit <= 1:
        return alone, [], {}
    pool = pool_of(session, records, winner)
    if len(pool) < 2:
        return alone, ["no ensemble: fewer than two completed trials to choose from"], {}
    b = session.bundle
    y = b.images.y[b.val_idx]
    sel, chk = b.select_positions(), b.check_positions()
    picked = select_ensemble([p[sel] for _, p in pool], y[sel], 0, limit)
    single = score(pool[0][1][chk], y[chk])
    check = {"single": single[0]}
    if picked.size == 1:
        return alone, ["no ensemble: ensemble selection kept the winner alone"], check
    blended = blend([pool[i][1][chk] for i in picked.members], picked.weights)
    together = score(blended, y[chk])
    check["ensemble"] = together[0]
    numbers = [pool[i][0].number for i in picked.members]
    versus = f"{together[0]:.2%} against {single[0]:.2%} for trial {winner.number} alone on the check half"
    if together <= single:
        return alone, [f"no ensemble: trials {', '.join(map(str, numbers))} together scored {versus}"], check
    members = tuple(zip(numbers, picked.weights, strict=True))
    return members, [f"ensemble of {len(members)} trials ({', '.join(map(str, numbers))}): {versus}"], check


def _fit_seconds(session: SearchSession, records: dict[int, TrialRecord], jobs: list[int], scale: float) -> float:
    """How long these fits take, from their trials' pace (with a margin: a final fit also keeps
    its weight average and scores the check half every epoch)."""
    ratio = FIT_MARGIN * refit_ratio(session) / session.final_speedup(len(jobs))
    seconds = [(records[n].fit_seconds() or 0.0) * ratio * scale for n in jobs]  # on all of the data
    return makespan(seconds, session.resources.workers)


Members = tuple[tuple[int, float], ...]


def cut_to_fit(members: Members, winner: int, fits: Callable[[Members], bool]) -> tuple[Members, list[str]]:
    """Drop members, the lightest first but never the winner (a member may outweigh it), until
    ``fits(members)``; the weights renormalised, and notes saying so."""
    notes = []
    while len(members) > 1 and not fits(members):
        kept = sorted(members, key=lambda m: (m[0] != winner, -m[1]))[:-1]
        total = sum(w for _, w in kept)
        members = tuple((n, w / total) for n, w in kept)
        if len(members) == 1:
            notes.append("no ensemble: the time left fits the winner's final fit only")
        else:
            notes.append(f"ensemble cut to {len(members)} members to fit the time left")
    return members, notes


def plan_final(
    session: SearchSession, records: list[TrialRecord], winner: TrialRecord, others: list[int], time_left: float | None
) -> FinalPlan:
    """The final plan for ``winner``; ``others``: the fits made besides one per member (the
    winner's further ``--final-repeats`` seeds, every seed of the ``--final-top-k`` runners-up),
    by trial number, which share the time; ``time_left``: seconds the fits may take (None: no
    time budget)."""
    members, notes, check = choose_members(session, records, winner)
    by_number = {r.number: r for r in records}
    jobs = lambda ms: [n for n, _ in ms if n not in others] + others  # noqa: E731
    seconds = lambda js, scale=1.0: _fit_seconds(session, by_number, js, scale)  # noqa: E731
    if time_left is not None:
        members, cuts = cut_to_fit(members, winner.number, lambda ms: seconds(jobs(ms)) <= time_left)
        notes += cuts
    fits = jobs(members)
    seeds = 1
    if len(members) == 1 and time_left is not None:  # spare time: more seeds of the winner, on idle workers
        limit = min(session.config.ensemble_size(), SEED_ENSEMBLE)
        while seeds < limit and seconds([winner.number] * (seeds + 1 - fits.count(winner.number)) + fits) <= time_left:
            seeds += 1
        if seeds > max(1, fits.count(winner.number)):
            fits = [winner.number] * (seeds - fits.count(winner.number)) + fits
            notes.append(
                f"a seed ensemble: trial {winner.number} is fitted with {seeds} seeds; the check half decides "
                "between their average and the first alone"
            )
    epochs: dict[int, int] = {}
    needed = seconds(fits)
    if time_left is not None and needed > 0:
        scale = min(MAX_EPOCH_SCALE, time_left / needed)
        if scale >= MIN_EPOCH_SCALE:
            epochs = {n: max(by_number[n].epochs, round(by_number[n].epochs * scale)) for n in set(fits)}
        elif scale < SHORTEN_BELOW:  # only fits of trials that trained on subsets, on all of the data now
            subset_trained = {n for n in fits if by_number[n].on_subsets}
            epochs = {n: max(1, min(by_number[n].epochs, int(by_number[n].epochs * scale))) for n in subset_trained}
        lead = by_number[members[0][0]]
        if lead.number in epochs and epochs[lead.number] != lead.epochs:
            notes.append(
                f"final fit: {epochs[lead.number]} epochs instead of the trial's {lead.epochs} "
                f"(the time left allows {scale:.1f}x)"
            )
    return FinalPlan(members, epochs, tuple(notes), check, max(seeds, 1))
