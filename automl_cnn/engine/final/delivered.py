"""What is delivered after the final fits: the model built from the checked choices, and the
:class:`~automl_cnn.engine.final.outcome.FinalOutcome` that says what it is and why (summary,
report, MLflow tags, registered model's description).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from automl_cnn.engine.final.check import TRIAL, Choice, check_labels, choose, delivered_check_accuracy
from automl_cnn.engine.final.ensemble import blend
from automl_cnn.engine.final.fits import FinalFit
from automl_cnn.engine.final.outcome import (
    EMA,
    ENSEMBLE,
    FINAL_FIT,
    HELD_OUT,
    TIE_SIMPLER,
    Decision,
    FinalOutcome,
    Member,
    in_metric,
    merged,
)
from automl_cnn.engine.final.plan import FinalPlan
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.session import SearchSession
from automl_cnn.metrics import unsolved
from automl_cnn.model.trained import TrainedModel


@dataclass(frozen=True)
class Delivery:
    model: TrainedModel
    choices: list[Choice]
    outcome: FinalOutcome

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.outcome.warnings


def _members(choices: list[Choice], by_number: dict[int, TrialRecord]) -> tuple[Member, ...]:
    out = []
    for c in choices:
        rec = by_number[c.trial]
        params = rec.profile.params if rec.profile else None
        out.append(
            Member(
                c.trial,
                c.seed,
                round(c.weight, 4),
                c.source,
                rec.val_acc,
                params,
                rec.candidate.architecture.describe(),
            )
        )
    return tuple(out)


def build_delivery(
    session: SearchSession, records: list[TrialRecord], plan: FinalPlan, fits: list[FinalFit]
) -> Delivery:
    """Check each member's final fit (:func:`~automl_cnn.engine.final.check.choose`) and build the
    delivered model from the chosen weights, with the decisions that led to it."""
    b = session.bundle
    by_number = {r.number: r for r in records}
    first_fit: dict[int, FinalFit] = {}
    for f in fits:  # the first seed's fit of each trial
        first_fit.setdefault(f.trial, f)
    choices = [choose(session, first_fit[n], w) for n, w in plan.members]
    decisions = list(plan.decisions)
    if not plan.ensemble and session.config.ensemble_size() > 1:
        choices, seeds = _seed_ensemble(session, [f for f in fits if f.trial == plan.members[0][0]], choices)
        decisions = [_with_seeds(d, seeds) if d.topic == ENSEMBLE and seeds else d for d in decisions]
    members = []
    for c in choices:
        candidate = by_number[c.trial].candidate
        members.append((candidate, c.weights, c.weight))
    model = TrainedModel.from_members(members, b.input_shape, b.class_names, b.mean, b.std)
    one_trial = len({c.trial for c in choices}) == 1
    labels = [f"seed {c.seed}" if one_trial else f"trial {c.trial}{_seed(c, choices)}" for c in choices]
    own = merged(FINAL_FIT, [(label, c.own) for label, c in zip(labels, choices, strict=True)])
    own = _with_epochs(own, plan, by_number, len(first_fit[plan.members[0][0]].history))
    ema = merged(EMA, [(label, c.ema) for label, c in zip(labels, choices, strict=True) if c.source != TRIAL])
    if all(c.source == TRIAL for c in choices):
        ema = Decision(EMA, ema.question, answer="not asked", reason="the trial's own weights are delivered")
    decisions += [own, ema]
    check, images = delivered_check_accuracy(session, choices), len(b.check_positions())
    warnings = _warnings(session, by_number, plan, check, images)
    stick = session.yardstick(b.images.y[b.val_idx])  # the scores and tests are the search's metric
    decided = in_metric(tuple(decisions), stick.name, stick.test_name)
    outcome = FinalOutcome(_members(choices, by_number), decided, check, images, tuple(warnings))
    return Delivery(model, choices, outcome)


def _with_epochs(decision: Decision, plan: FinalPlan, by_number: dict[int, TrialRecord], trained: int) -> Decision:
    """The final fit's verdict, saying where it trained for more (or fewer) epochs than its trial,
    and where the time budget stopped it before its planned epochs (``trained`` of them)."""
    lead = by_number[plan.members[0][0]]
    epochs = plan.epochs.get(lead.number, lead.epochs)
    if trained < epochs:
        note = f"the final fit was stopped at epoch {trained} of {epochs} when the time budget ran out"
    elif epochs != lead.epochs:
        note = f"the final fit trained {epochs} epochs, the trial {lead.epochs}"
    else:
        return decision
    return dataclasses.replace(decision, reason=f"{decision.reason} ({note})")


def _with_seeds(planned: Decision, seeds: Decision) -> Decision:
    """The ensemble verdict once the seed ensemble is decided: the trials' ensemble, then the seeds'."""
    return dataclasses.replace(
        seeds,
        candidates=planned.candidates + seeds.candidates,
        scores=planned.scores + seeds.scores,
        images=seeds.images or planned.images,
        reason=f"an ensemble of trials: no, {planned.reason}; a seed ensemble: {seeds.reason}",
    )


def _seed(choice: Choice, choices: list[Choice]) -> str:
    return f" seed {choice.seed}" if sum(c.trial == choice.trial for c in choices) > 1 else ""


SEEDS_QUESTION = "the average of the winner's fits with several seeds, or its first seed alone?"
SEEDS_RULE = f"the higher accuracy on {HELD_OUT}; {TIE_SIMPLER} (the first seed alone)"


def _seed_ensemble(
    session: SearchSession, fits: list[FinalFit], alone: list[Choice]
) -> tuple[list[Choice], Decision | None]:
    """The winner's fits with several seeds, averaged, where that beats its first seed alone on
    the check half (strictly higher accuracy: a tie goes to the first alone); else the first
    alone. None: no seed ensemble was tried."""
    if len(fits) < 2:
        return alone, None
    each = [choose(session, f, 1.0 / len(fits)) for f in fits]
    if any(c.check_probs is None for c in each):
        return alone, None
    y = check_labels(session)
    stick = session.yardstick(y)
    blended = blend([c.check_probs for c in each if c.check_probs is not None], [c.weight for c in each])
    together, first = stick(blended), stick(np.asarray(each[0].check_probs))
    versus = f"{together:.2%} against {first:.2%} for the first seed alone on {len(y)} held-out images"
    k, trial = len(each), fits[0].trial
    candidates = (f"{k} seeds of trial {trial}", f"trial {trial}, first seed")
    if together > first:
        answer, reason, chosen = f"yes, {k} seeds of trial {trial}", f"higher accuracy: {versus}", each
    elif together == first:
        answer, reason, chosen = "no", f"{TIE_SIMPLER}: {k} seeds together scored {versus}", alone
    else:
        answer, reason, chosen = "no", f"{k} seeds together scored lower: {versus}", alone
    decision = Decision(ENSEMBLE, SEEDS_QUESTION, candidates, (together, first), len(y), SEEDS_RULE, answer, reason)
    return chosen, decision


def far_from_solved_warning(delivered: float | None, images: int, best_val: float, classes: int) -> str | None:
    """The "far from solved" line, or None: judged on what is delivered, its accuracy on the
    ``images`` held-out images of the check half (``delivered``); on the best trial's validation
    accuracy only where the delivered model has no check score (no check half)."""
    chance = 1.0 / classes
    if delivered is not None and images > 0 and math.isfinite(delivered):
        acc, what = delivered, f"the delivered model scores {delivered:.1%} on {images} held-out images"
    else:
        acc, what = best_val, f"the best validation accuracy is {best_val:.1%}"
    if not unsolved(acc, classes):
        return None
    return (
        f"far from solved: {what} where chance is {chance:.1%} ({classes} classes); a longer "
        "--time-budget, more images or another space may do much better. It is registered as a "
        "challenger, not promoted to champion (--promote always overrides)"
    )


def _warnings(
    session: SearchSession,
    by_number: dict[int, TrialRecord],
    plan: FinalPlan,
    delivered: float | None = None,
    images: int = 0,
) -> list[str]:
    """What a user must not miss: a task far from solved (judged on the delivered model's
    ``delivered`` accuracy on the check half's ``images``); a winner without convolutions."""
    out = []
    best = max(float(by_number[n].val_acc or 0.0) for n, _ in plan.members)
    unsolved = far_from_solved_warning(delivered, images, best, session.bundle.num_classes)
    if unsolved is not None:
        out.append(unsolved)
    # said where networks without convolutions carry the delivered model (at least half an ensemble's weight)
    candidates = [(by_number[n].candidate, w) for n, w in plan.members]
    flat = [w for c, w in candidates if c is not None and not c.architecture.convolutional]
    if flat and sum(flat) >= 0.5:
        out.append(
            "a network without convolutions (an MLP on the flattened pixels) is delivered"
            + (" as most of the ensemble" if plan.ensemble else "")
            + ": the images may have little spatial structure for convolutions to use"
        )
    return out


def far_from_solved(delivery: Delivery) -> bool:
    return any(w.startswith("far from solved") for w in delivery.outcome.warnings)
