"""Learning-rate schedules, each a closed form of the optimiser step.

``cosine``, ``step`` and ``onecycle`` run to a fixed end: the learning rate at step ``t`` depends
on the planned number of steps, so a run planned for 4 epochs and one planned for 8 part ways
after the first step, and a trial cannot be extended without restarting its schedule.

``wsd`` (warmup-stable-decay) is the schedule that can be extended: a linear warmup over the
first half epoch of steps, then a constant learning rate for good. Its learning rate at step
``t`` does not depend on the planned end, so a run trained to epoch k and continued to epoch m
takes the same steps as one trained straight to m. The "decay" is not taken on the training
path: a run on ``wsd`` is scored with an exponential moving average of its weights
(:func:`automl_cnn.training.averaging.progressive_average`), whose horizon is a share of the
steps taken so far, so it too never depends on the planned end. Averaging the tail of a
constant-rate run is the cheap stand-in for a cooldown branch (Hägele et al. 2024, "Scaling
laws and compute-optimal training beyond fixed training durations"): no extra training steps,
one network's worth of memory.

``warmup_cosine`` is never searched: it is the recipe of a final fit that continues from its
trial's weights (:mod:`automl_cnn.engine.final.start`), a linear warmup over the first half epoch
of steps, then a cosine to zero by the planned end.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch

EXTENDABLE = frozenset({"wsd", "constant"})  # learning rate at step t independent of the planned end
WARMUP_EPOCHS = 0.5  # wsd's linear warmup, in epochs of steps


def warmup_steps(steps_per_epoch: int) -> int:
    """The steps of ``wsd``'s linear warmup: half an epoch, at least one step."""
    return max(1, round(WARMUP_EPOCHS * steps_per_epoch))


def lr_factor(schedule: str, total_steps: int, steps_per_epoch: int) -> Callable[[int], float]:
    """The factor on the base learning rate at step ``s`` (``onecycle`` is torch's own)."""
    if schedule == "cosine":
        return lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps))
    if schedule == "step":
        return lambda s: 0.1 ** ((s >= total_steps // 2) + (s >= 3 * total_steps // 4))
    if schedule == "warmup_cosine":  # not searched: a final fit continuing from its trial's weights
        warmup = min(warmup_steps(steps_per_epoch), max(1, total_steps - 1))
        rest = max(1, total_steps - warmup)
        return lambda s: (
            (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * min(s - warmup, rest) / rest))
        )
    if schedule == "wsd":  # total_steps is not used: the point of it
        warmup = warmup_steps(steps_per_epoch)
        return lambda s: min(1.0, (s + 1) / warmup)
    return lambda s: 1.0


def make_scheduler(schedule: str, opt: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int, lr: float) -> Any:
    if schedule == "onecycle":
        # each group's own peak (a backbone's group learns at a share of the head's rate)
        max_lr = [group["lr"] for group in opt.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total_steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(schedule, total_steps, steps_per_epoch))


def move_to(scheduler: Any, steps: int) -> None:
    """Move a schedule to ``steps`` (every schedule here is a closed form of the step)."""
    if steps > 0:
        scheduler.last_epoch = steps - 1
        scheduler.step()


def fast_forward(scheduler: Any, steps: int) -> None:
    """Move a fresh schedule to ``steps``, before any optimizer step (a restored checkpoint's)."""
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": on purpose
        warnings.simplefilter("ignore", UserWarning)
        move_to(scheduler, steps)
