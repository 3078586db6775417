"""Where each final fit starts: from random weights, or from its trial's own weights.

``--final-start restart`` (the default, the behaviour before this setting) trains every final fit
from a random init, with its trial's own recipe. ``--final-start continue`` starts the *first*
seed's fit of each trial whose weights the run folder kept (the best trials' are:
:class:`~automl_cnn.engine.search.launching.KeptWeights`) from those weights, and trains it on
train + the selection half of validation for the planned epochs with a fine-tuning recipe:

* **a tenth of the trial's learning rate** (:data:`CONTINUE_LR_SCALE`). The kept weights are
  already at the end of a whole schedule: a cosine, step or one-cycle trial ends near a zero
  learning rate, and a ``wsd`` trial's kept weights are its weight average, the stand-in for its
  cooldown. They sit in a minimum of the trial's loss. Going back to the trial's own peak would
  mostly throw that away (a warm restart climbs out of the basin and needs much of its cycle to
  anneal back); a tenth of the peak, the usual fine-tuning step and the drop of a step schedule,
  still moves the weights towards the added images without leaving the basin.
* **a short linear warmup** (half an epoch of steps, as ``wsd``'s): the optimiser starts fresh
  (momenta and Adam's moments belong to the trial's schedule, and a checkpoint that restored
  them would restore its epoch and schedule too), and Adam's first bias-corrected steps move every
  weight by about the learning rate whatever its gradient.
* **then a cosine to zero by the planned end** (the trial's epochs, or up to
  :data:`~automl_cnn.engine.final.plan.MAX_EPOCH_SCALE` times them where time is left): the fit
  ends annealed, as the trials did, so the check against the trial's own weights compares like
  with like, and every planned epoch counts.

One recipe for every schedule kind, ``wsd`` included: continuing a ``wsd`` trial's constant phase
would start it from the average, a point the trial never trained at, at the full rate.

Only the first seed of a trial continues: further seeds exist for diversity (a seed ensemble) and
for the spread of ``--final-repeats``, which identical starts would shrink; they start from random
weights. Second seeds (:data:`~automl_cnn.engine.final.fits.SECOND_SEED`) never continue: they
measure the trial's own noise. A trial whose weights were not kept falls back to random weights.
Whether ``continue`` or ``restart`` is better is for benchmarks across tasks and seeds to settle
(``benchmarks/final_start.py``), not the check half of one run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.session import SearchSession
from automl_cnn.model.architecture import Candidate

CONTINUE_LR_SCALE = 0.1  # a continued fit's peak learning rate, as a share of its trial's
CONTINUE_SCHEDULE = "warmup_cosine"  # training/schedules.py: half an epoch's warmup, then a cosine to zero


@dataclass(frozen=True)
class Start:
    """Where one final fit starts, and what the final-fit verdict says about it ("" under restart)."""

    trial: int | None = None  # the trial whose kept weights it starts from; None: random weights
    weights: dict[str, Any] | None = dataclasses.field(default=None, repr=False)
    note: str = ""

    @property
    def continued(self) -> bool:
        return self.weights is not None


RANDOM = Start()


def continued(candidate: Candidate) -> Candidate:
    """``candidate`` with the continuing recipe: a tenth of its learning rate, warmup then cosine."""
    cfg = candidate.training
    training = dataclasses.replace(
        cfg, learning_rate=cfg.learning_rate * CONTINUE_LR_SCALE, lr_schedule=CONTINUE_SCHEDULE
    )
    return dataclasses.replace(candidate, training=training)


def plan_starts(session: SearchSession, jobs: list[tuple[str, TrialRecord]], second_seed: bool) -> dict[str, Start]:
    """Where each (job, trial) of one call of the final fits starts (see the module's text)."""
    if second_seed or session.config.final.final_start != "continue":
        return {job: RANDOM for job, _ in jobs}
    starts: dict[str, Start] = {}
    first: dict[int, Start] = {}  # each trial's first seed's start
    for job, rec in jobs:
        number = rec.number
        if number in first:  # a further seed: random weights, said as such
            earlier = first[number]
            why = f"only the first seed continues from trial {number}'s weights"
            starts[job] = Start(note=f"started from random weights ({why})") if earlier.continued else earlier
            continue
        weights = session.state.load_trial_weights(number)
        if weights is None:
            first[number] = Start(note=f"started from random weights (trial {number}'s weights were not kept)")
        else:
            first[number] = Start(number, weights, f"continued from trial {number}'s weights")
        starts[job] = first[number]
    return starts
