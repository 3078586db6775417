"""A training length learned from the data: PASHA's growing ceiling on the epochs.

Multi-fidelity search needs a maximum resource, and a fixed one is a guess: too low and every
candidate is ranked before any of them has learned the task; too high and the budget goes on a
few long runs. PASHA (Bohdal et al., ICLR 2023; Syne Tune's ``PASHA`` scheduler) starts
successive halving with a low maximum and raises it only while the ranking of the configurations
at the two highest rungs still changes. This module is that rule, on our records:

* **Start.** :func:`start_ceiling`: the two lowest rungs (``min_epochs * factor`` epochs), fewer
  where a trial's share of the budget cannot afford that many epochs at the measured cost of one,
  never above the hard cap (``--max-epochs``).
* **Decide** (:meth:`Ceiling.decide`, each time a trial reaches the ceiling). Among the trials
  that reached the ceiling ``C``, compare their scores at ``C`` with their scores at the rung below
  (``p``, the largest ``min_epochs * factor**k`` under ``C``). The ranking *changed* when a pair
  swapped places by more than noise: one ahead at ``p`` and the other ahead at ``C``, each gap
  beyond :func:`noise_epsilon`. Two scores within noise are tied, and a tie is no swap: a
  validation set of a few hundred images cannot order trials a point apart. The leaders (the
  best at ``C`` and those tied with it) still *rise* when one gained more than noise from ``p``
  to ``C``. And where the best of them is still less than halfway from chance to perfect
  (:func:`automl_cnn.metrics.unsolved`, the summary's bar), no trial has learned the task
  yet: their ranking says nothing (a field near chance is all "tied within noise", which PASHA's
  rule would read as a stable ranking) and the ceiling grows too. Any one of the three: the
  ceiling grows by ``factor``, up to the cap. None: it holds.
  A hold is not final: as in PASHA, the rule is asked again whenever another trial reaches the
  ceiling.
* **Noise.** Validation accuracy on ``n`` images has a binomial standard error
  ``sqrt(a (1 - a) / n)``; two trials' scores differ by noise when the gap is under :data:`Z`
  standard errors of the difference (unpaired: per-image predictions are not kept at rungs), and
  never by less than :data:`MIN_EPSILON`.

Trials that reached the old ceiling continue to the new one from their checkpoints
(:func:`extended`): on the ``wsd`` schedule that gives the weights a run trained straight to
the new ceiling would have (tests/test_training.py); on schedules with a fixed end it does not.

The module is pure: the caller passes curves (trial number -> validation accuracy by epoch).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.search.moasha import ETA, MIN_EPOCHS, rung_epochs
from automl_cnn.metrics import unsolved
from automl_cnn.model.architecture import Candidate
from automl_cnn.training.schedules import EXTENDABLE

Z = 2.0  # a gap under this many standard errors of the difference is noise
MIN_EPSILON = 0.005  # half a point: never a difference, however many validation images
Curves = Mapping[int, Sequence[float]]  # trial number -> validation accuracy after epoch 1, 2, ...


def noise_epsilon(first: float, second: float, n_val: int, errors: float = Z) -> float:
    """The largest gap between accuracies ``first`` and ``second`` on ``n_val`` images that is
    noise: ``errors`` standard errors of their difference, at least :data:`MIN_EPSILON`."""
    spread = first * (1 - first) + second * (1 - second)
    return max(MIN_EPSILON, errors * math.sqrt(spread / max(1, n_val)))


def tied(first: float, second: float, n_val: int) -> bool:
    return abs(first - second) <= noise_epsilon(first, second, n_val)


def start_ceiling(
    cap: int,
    epoch_seconds: float | None = None,
    trial_seconds: float | None = None,
    factor: int = ETA,
    min_epochs: int = MIN_EPOCHS,
) -> int:
    """PASHA's start: two rungs (``min_epochs * factor`` epochs); fewer where a trial's share of
    the budget (``trial_seconds``) affords fewer epochs at ``epoch_seconds`` each; at most ``cap``."""
    low = min_epochs * factor
    if epoch_seconds and trial_seconds:
        low = min(low, int(trial_seconds // epoch_seconds))
    return max(1, min(cap, low))


def lower_rung(ceiling: int, factor: int = ETA, min_epochs: int = MIN_EPOCHS) -> int | None:
    """The rung below ``ceiling``: the largest ``min_epochs * factor**k`` under it (None at 1)."""
    below = rung_epochs(min_epochs, factor, 0, ceiling)
    return below[-1] if below else None


@dataclass(frozen=True)
class Swap:
    """Two trials that changed places between the rungs by more than noise."""

    ahead_before: int  # ahead at the lower rung
    ahead_after: int  # ahead at the ceiling


@dataclass(frozen=True)
class CeilingDecision:
    ceiling: int  # the ceiling from now on
    previous: int
    trials: int  # trials compared (those at the ceiling)
    swaps: tuple[Swap, ...] = ()
    rising: tuple[int, ...] = ()  # leaders that gained more than noise between the rungs
    at_cap: bool = False
    unlearned: float | None = None  # the best score at the ceiling, where it is far from solved

    @property
    def grew(self) -> bool:
        return self.ceiling > self.previous

    def describe(self) -> str:
        lower = f"the {self.trials} trials at epoch {self.previous}"
        if self.unlearned is not None:
            why = f"the best of {lower} scored {self.unlearned:.1%}, less than halfway from chance to perfect"
        elif self.swaps:
            s = self.swaps[0]
            why = f"the ranking of {lower} changed beyond noise (trial {s.ahead_after} overtook {s.ahead_before})"
        elif self.rising:
            why = f"the leader{'s' if len(self.rising) > 1 else ''} of {lower} still rose beyond noise"
        else:
            return f"{self.ceiling} epochs hold: the ranking of {lower} held within noise and the leaders levelled off"
        if self.at_cap:
            return f"{self.ceiling} epochs, the hard cap (--max-epochs), though {why}"
        return f"{self.ceiling} epochs: {why}"


@dataclass
class Ceiling:
    """The epoch ceiling of one search and the decisions that moved it."""

    ceiling: int
    cap: int  # --max-epochs
    n_val: int  # validation images the scores are taken on
    factor: int = ETA
    min_epochs: int = MIN_EPOCHS
    min_trials: int = 2  # fewer at the ceiling: nothing to compare yet
    classes: int = 0  # of the task, for chance (0: unknown, the ceiling never grows for that reason)
    decisions: list[CeilingDecision] = field(default_factory=list)

    def decide(self, curves: Curves) -> CeilingDecision | None:
        """Grow or hold, from the trials that reached the ceiling; None with too few of them."""
        top = {t: c[self.ceiling - 1] for t, c in curves.items() if len(c) >= self.ceiling}
        if len(top) < self.min_trials:
            return None
        below = lower_rung(self.ceiling, self.factor, self.min_epochs)
        before = {t: curves[t][below - 1] for t in top} if below is not None else {}
        swaps = self._swaps(before, top) if below is not None else ()
        rising = self._rising(before, top) if below is not None else tuple(top)
        best = max(top.values())
        unlearned = best if self.classes > 1 and unsolved(best, self.classes) else None
        grow = bool(swaps or rising) or unlearned is not None
        new = min(self.cap, self.ceiling * self.factor) if grow else self.ceiling
        at_cap = grow and new == self.ceiling
        decision = CeilingDecision(new, self.ceiling, len(top), swaps, rising, at_cap, unlearned)
        self.ceiling = new
        self.decisions.append(decision)
        return decision

    def _swaps(self, before: Mapping[int, float], after: Mapping[int, float]) -> tuple[Swap, ...]:
        out = []
        ids = sorted(after)
        for i in ids:
            for j in ids:
                i_ahead = before[i] - before[j] > noise_epsilon(before[i], before[j], self.n_val)
                j_ahead = after[j] - after[i] > noise_epsilon(after[i], after[j], self.n_val)
                if i_ahead and j_ahead:
                    out.append(Swap(i, j))
        return tuple(out)

    def _rising(self, before: Mapping[int, float], after: Mapping[int, float]) -> tuple[int, ...]:
        best = max(after.values())
        leaders = sorted(t for t, acc in after.items() if tied(acc, best, self.n_val))
        return tuple(t for t in leaders if after[t] - before[t] > noise_epsilon(after[t], before[t], self.n_val))


def curves_of(records: Iterable[TrialRecord]) -> dict[int, list[float]]:
    """Trial number -> validation accuracy by epoch, of every record with a history."""
    return {rec.number: [e.val_acc for e in rec.history] for rec in records if rec.history}


def extended(candidate: Candidate, epochs: int) -> Candidate:
    """``candidate`` trained to ``epochs``: what a trial at the old ceiling continues as, from its
    checkpoint. Refused for a schedule whose learning rate depends on the planned end (a cosine
    trial continued would not be the run its score stands for)."""
    if candidate.training.lr_schedule not in EXTENDABLE:
        raise ValueError(f"a {candidate.training.lr_schedule} schedule cannot be extended; use wsd")
    return dataclasses.replace(candidate, training=dataclasses.replace(candidate.training, epochs=epochs))
