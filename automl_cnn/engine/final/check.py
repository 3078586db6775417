"""The final fit is checked before it is delivered: never a silent regression on the trial that won.

Each final fit trained on train + the selection half of validation and was scored, each epoch,
on the check half it never saw. Three sets of weights of the same network compete there:

* the final fit's last weights (the default: most data, the winner's own recipe),
* the average of its weights along training (EMA), delivered when it scores strictly higher,
* the trial's own weights (trained on the training split only, kept in the run folder),
  delivered when they are right significantly more often (McNemar's exact test, one-sided,
  5%): the trial was picked for its validation score, which includes the check half, so a
  small lead there is expected and proves nothing, while a final fit that went wrong (an
  unlucky seed, a schedule stretched too far) loses by far more than that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from automl_cnn.engine.final.ensemble import accuracy, blend, significantly_better
from automl_cnn.engine.final.fits import FinalFit
from automl_cnn.engine.session import SearchSession

FINAL, AVERAGE, TRIAL = "final fit", "final fit, weight average", "trial weights"


@dataclass(frozen=True)
class Choice:
    """The weights delivered for one trial of the final plan, and why."""

    trial: int
    seed: int  # of the final fit
    weight: float  # in the ensemble (1.0 alone)
    source: str  # FINAL | AVERAGE | TRIAL
    weights: dict[str, Any]
    check_probs: np.ndarray | None  # on the check half (None where there is none)
    reason: str


def check_labels(session: SearchSession) -> np.ndarray:
    b = session.bundle
    return b.images.y[b.val_idx][b.check_positions()]


def choose(session: SearchSession, fit: FinalFit, weight: float = 1.0) -> Choice:
    """Which weights of ``fit``'s trial to deliver (see the module's text)."""
    y = check_labels(session)
    out = fit.outputs
    if out is None or not len(y) or len(out.eval_probs) != len(y):
        return Choice(fit.trial, fit.seed, weight, FINAL, fit.weights, None, "final fit (no check half to compare on)")
    source, weights, probs = FINAL, fit.weights, out.eval_probs.astype(np.float32)
    raw = accuracy(probs, y)
    reason = f"final fit: {raw:.2%} on the check half"
    if out.ema_eval_probs is not None and out.ema_weights is not None:
        ema = accuracy(out.ema_eval_probs, y)
        if ema > raw:
            source, weights, probs = AVERAGE, out.ema_weights, out.ema_eval_probs.astype(np.float32)
            reason = f"the final fit's weight average: {ema:.2%} on the check half, its last weights {raw:.2%}"
        else:
            reason += f" (its weight average {ema:.2%})"
    trial_probs = session.state.load_val_probs(fit.trial)
    trial_weights = session.state.load_trial_weights(fit.trial)
    if trial_probs is None or trial_weights is None:
        return Choice(
            fit.trial, fit.seed, weight, source, weights, probs, reason + "; the trial's own weights were not kept"
        )
    own = trial_probs[session.bundle.check_positions()]
    fitted_acc, own_acc = accuracy(probs, y), accuracy(own, y)
    if significantly_better(own.argmax(1) == y, probs.argmax(1) == y):
        return Choice(
            fit.trial,
            fit.seed,
            weight,
            TRIAL,
            trial_weights,
            own,
            f"the trial's own weights: the final fit scored {fitted_acc:.2%} on the check half against "
            f"{own_acc:.2%}, significantly worse (McNemar, 5%)",
        )
    return Choice(
        fit.trial, fit.seed, weight, source, weights, probs, reason + f"; the trial's own weights {own_acc:.2%}"
    )


def delivered_check_accuracy(session: SearchSession, choices: list[Choice]) -> float | None:
    """The check-half accuracy of what is delivered (the members' weighted average)."""
    if any(c.check_probs is None for c in choices):
        return None
    probs = [c.check_probs for c in choices if c.check_probs is not None]
    return accuracy(blend(probs, [c.weight for c in choices]), check_labels(session))
