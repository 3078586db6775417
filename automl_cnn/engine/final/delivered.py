"""What is delivered after the final fits: the model built from the checked choices, and the
plain words that say what it is and why (summary, report, registered model's description).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from automl_cnn.engine.final.check import Choice, check_labels, choose, delivered_check_accuracy
from automl_cnn.engine.final.ensemble import blend, score
from automl_cnn.engine.final.fits import FinalFit
from automl_cnn.engine.final.plan import FinalPlan
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.session import SearchSession
from automl_cnn.model.trained import TrainedModel

# the validation accuracy below which a task is called far from solved: less than halfway from
# chance to perfect
SOLVED_SHARE = 0.5


@dataclass(frozen=True)
class Delivery:
    model: TrainedModel
    choices: list[Choice]
    check_accuracy: float | None
    check_images: int
    notes: list[str] = field(default_factory=list)  # the final plan's and the check's, in order
    warnings: list[str] = field(default_factory=list)

    def rows(self, by_number: dict[int, TrialRecord]) -> list[dict[str, Any]]:
        """One row per member: trial, weight, which weights, why, architecture, parameters."""
        out = []
        for c in self.choices:
            rec = by_number[c.trial]
            out.append(
                {
                    "trial": c.trial,
                    "seed": c.seed,
                    "weight": round(c.weight, 4),
                    "weights": c.source,
                    "why": c.reason,
                    "val_accuracy": rec.val_acc,
                    "params": rec.profile.params if rec.profile else None,
                    "architecture": rec.candidate.architecture.describe(),
                }
            )
        return out


def build_delivery(s: SearchSession, records: list[TrialRecord], plan: FinalPlan, fits: list[FinalFit]) -> Delivery:
    """Check each member's final fit (:func:`~automl_cnn.engine.final.check.choose`) and build the
    delivered model from the chosen weights."""
    b = s.bundle
    by_number = {r.number: r for r in records}
    first_fit: dict[int, FinalFit] = {}
    for f in fits:  # the first seed's fit of each trial
        first_fit.setdefault(f.trial, f)
    choices = [choose(s, first_fit[n], w) for n, w in plan.members]
    notes = list(plan.notes)
    if not plan.ensemble and s.config.ensemble_size() > 1:
        choices, note = _seed_ensemble(s, [f for f in fits if f.trial == plan.members[0][0]], choices)
        notes += [note] if note else []
    members = []
    for c in choices:
        candidate = by_number[c.trial].candidate
        members.append((candidate, c.weights, c.weight))
    model = TrainedModel.from_members(members, b.input_shape, b.class_names, b.mean, b.std)
    notes += [f"trial {c.trial}{_seed(c, choices)}: {c.reason}" for c in choices]
    check = delivered_check_accuracy(s, choices)
    return Delivery(model, choices, check, len(b.check_positions()), notes, _warnings(s, by_number, plan))


def _seed(choice: Choice, choices: list[Choice]) -> str:
    return f" seed {choice.seed}" if sum(c.trial == choice.trial for c in choices) > 1 else ""


def _seed_ensemble(s: SearchSession, fits: list[FinalFit], alone: list[Choice]) -> tuple[list[Choice], str]:
    """The winner's fits with several seeds, averaged, where that beats its first seed alone on
    the check half (accuracy, then log loss); else the first alone."""
    if len(fits) < 2:
        return alone, ""
    each = [choose(s, f, 1.0 / len(fits)) for f in fits]
    if any(c.check_probs is None for c in each):
        return alone, ""
    y = check_labels(s)
    together = score(blend([c.check_probs for c in each if c.check_probs is not None], [c.weight for c in each]), y)
    first = score(np.asarray(each[0].check_probs), y)
    versus = f"{together[0]:.2%} against {first[0]:.2%} for the first seed alone on the check half"
    if together > first:
        return each, f"a seed ensemble of {len(each)} fits of trial {fits[0].trial}: {versus}"
    return alone, f"no seed ensemble: {len(each)} seeds of trial {fits[0].trial} together scored {versus}"


def _warnings(s: SearchSession, by_number: dict[int, TrialRecord], plan: FinalPlan) -> list[str]:
    """What a user must not miss: a task far from solved; a winner without convolutions."""
    out = []
    k = s.bundle.num_classes
    chance = 1.0 / k
    acc = max(float(by_number[n].val_acc or 0.0) for n, _ in plan.members)
    if acc < chance + SOLVED_SHARE * (1.0 - chance):
        out.append(
            f"far from solved: the best validation accuracy is {acc:.1%} where chance is {chance:.1%} "
            f"({k} classes); a longer --time-budget, more images or another space may do much better. "
            "It is registered as a challenger, not promoted to champion (--promote always overrides)"
        )
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
    return any(w.startswith("far from solved") for w in delivery.warnings)
