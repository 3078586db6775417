"""The final fit is checked before it is delivered: never a silent regression on the trial that won.

Each final fit trained on train + the selection half of validation and was scored, each epoch,
on the check half it never saw. Three sets of weights of the same network compete there:

* the final fit's last weights (the default: most data, the winner's own recipe; under
  ``--final-start continue`` started from the trial's own weights: :mod:`.start`),
* the average of its weights along training (EMA), delivered when it scores strictly higher,
* the trial's own weights (trained on the training split only, kept in the run folder),
  delivered when they are right significantly more often (McNemar's exact test, one-sided,
  5%): the trial was picked for its validation score, which includes the check half, so a
  small lead there is expected and proves nothing, while a final fit that went wrong (an
  unlucky seed, a schedule stretched too far) loses by far more than that.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from automl_cnn.engine.final.ensemble import blend
from automl_cnn.engine.final.fits import FinalFit
from automl_cnn.engine.final.outcome import EMA, FINAL_FIT, HELD_OUT, Decision
from automl_cnn.engine.session import SearchSession
from automl_cnn.metrics import Yardstick
from automl_cnn.training.messages import Outputs

FINAL, AVERAGE, TRIAL = "final fit", "final fit, weight average", "trial weights"


OWN_QUESTION = "the final fit, or the trial's own weights?"
OWN_RULE = f"the trial's own weights only if significantly better on {HELD_OUT} (McNemar, one-sided, 5%)"
EMA_QUESTION = "the final fit's last weights, or their average along training (EMA)?"
EMA_RULE = f"the weight average only if its accuracy on {HELD_OUT} is strictly higher"


@dataclass(frozen=True)
class Choice:
    """The weights delivered for one trial of the final plan, and why."""

    trial: int
    seed: int  # of the final fit
    weight: float  # in the ensemble (1.0 alone)
    source: str  # FINAL | AVERAGE | TRIAL
    weights: dict[str, Any]
    check_probs: np.ndarray | None  # on the check half (None where there is none)
    own: Decision  # the final fit against the trial's own weights
    ema: Decision  # the last weights against their average

    @property
    def reason(self) -> str:
        return self.own.reason if self.source == TRIAL else f"{self.own.reason}; {self.ema.reason}"


def check_labels(session: SearchSession) -> np.ndarray:
    b = session.bundle
    return b.images.y[b.val_idx][b.check_positions()]


def _ema(out: Outputs, stick: Yardstick) -> Decision:
    """The last weights against their average, on the check half (``stick``: the metric there)."""
    raw = stick(out.eval_probs)
    candidates, n = ("last weights", "weight average"), len(stick.labels)
    if out.ema_eval_probs is None or out.ema_weights is None:
        return Decision(EMA, EMA_QUESTION, candidates[:1], (raw,), n, EMA_RULE, "last weights", "no average was kept")
    ema = stick(out.ema_eval_probs)
    versus = f"{ema:.2%} against {raw:.2%} for the last weights on {n} held-out images"
    if ema > raw:
        answer, reason = "weight average", f"higher accuracy: {versus}"
    elif ema == raw:
        answer, reason = "last weights", f"a tie keeps the last weights: the average scored {versus}"
    else:
        answer, reason = "last weights", f"the average scored lower: {versus}"
    return Decision(EMA, EMA_QUESTION, candidates, (raw, ema), n, EMA_RULE, answer, reason)


def _own(fitted: np.ndarray, own: np.ndarray, stick: Yardstick) -> Decision:
    """The final fit (``fitted`` probabilities) against the trial's own weights, on the check half."""
    p, test = stick.p_value(own, fitted), stick.test_name
    fit_acc, own_acc, n = stick(fitted), stick(own), len(stick.labels)
    versus = f"{own_acc:.2%} against {fit_acc:.2%} for the final fit on {n} held-out images"
    if p < 0.05:
        answer, reason = "trial's own weights", f"significantly better ({test} p={p:.2g}): {versus}"
    elif own_acc == fit_acc:
        answer, reason = "final fit", f"a tie keeps the final fit: the trial's own weights scored {versus}"
    elif own_acc > fit_acc:
        answer, reason = (
            "final fit",
            f"the trial's own weights are not significantly better ({test} p={p:.2g}): {versus}",
        )
    else:
        answer, reason = "final fit", f"the trial's own weights scored {versus}"
    candidates = ("final fit", "trial's own weights")
    return Decision(FINAL_FIT, OWN_QUESTION, candidates, (fit_acc, own_acc), n, OWN_RULE, answer, reason)


def choose(session: SearchSession, fit: FinalFit, weight: float = 1.0) -> Choice:
    """Which weights of ``fit``'s trial to deliver (see the module's text); the verdict says
    where the final fit started under ``--final-start continue`` (its trial's weights or random)."""
    choice = _choose(session, fit, weight)
    if not fit.start:
        return choice
    own = dataclasses.replace(choice.own, reason=f"{choice.own.reason}; the final fit {fit.start}")
    return dataclasses.replace(choice, own=own)


def _choose(session: SearchSession, fit: FinalFit, weight: float) -> Choice:
    y = check_labels(session)
    out = fit.outputs
    if out is None or not len(y) or len(out.eval_probs) != len(y):
        why = "no held-out images to compare on"
        own = Decision(FINAL_FIT, OWN_QUESTION, rule=OWN_RULE, answer="final fit", reason=why)
        ema = Decision(EMA, EMA_QUESTION, rule=EMA_RULE, answer="last weights", reason=why)
        return Choice(fit.trial, fit.seed, weight, FINAL, fit.weights, None, own, ema)
    ema = _ema(out, session.yardstick(y))
    source, weights, probs = FINAL, fit.weights, out.eval_probs.astype(np.float32)
    if ema.answer == "weight average" and out.ema_eval_probs is not None and out.ema_weights is not None:
        source, weights, probs = AVERAGE, out.ema_weights, out.ema_eval_probs.astype(np.float32)
    trial_probs = session.state.load_val_probs(fit.trial)
    trial_weights = session.state.load_trial_weights(fit.trial)
    if trial_probs is None or trial_weights is None:
        why = "the trial's own weights were not kept"
        own = Decision(FINAL_FIT, OWN_QUESTION, rule=OWN_RULE, answer="final fit", reason=why)
        return Choice(fit.trial, fit.seed, weight, source, weights, probs, own, ema)
    mine = trial_probs[session.bundle.check_positions()]
    own = _own(probs, mine, session.yardstick(y))
    if own.answer == "trial's own weights":
        return Choice(fit.trial, fit.seed, weight, TRIAL, trial_weights, mine, own, ema)
    return Choice(fit.trial, fit.seed, weight, source, weights, probs, own, ema)


def delivered_check_accuracy(session: SearchSession, choices: list[Choice]) -> float | None:
    """The check-half accuracy of what is delivered (the members' weighted average)."""
    if any(c.check_probs is None for c in choices):
        return None
    probs = [c.check_probs for c in choices if c.check_probs is not None]
    y = check_labels(session)
    return session.yardstick(y)(blend(probs, [c.weight for c in choices]))
