"""An exponential moving average of a network's weights, kept beside the network as it trains.

The final fit keeps one (``JobSpec.outputs``) and the driver delivers it instead of the last
weights only where it scores better on the held-out check split: an average of the weights
along the end of training often generalises a little better, and never costs a second fit.
torch's own :class:`~torch.optim.swa_utils.AveragedModel` does the averaging (buffers, such as
batch-norm statistics, averaged too).

A run on the extendable ``wsd`` schedule is scored with :func:`progressive_average`: its horizon
is a share of the steps taken *so far*, not of a planned total, so the average after step ``t``
is the same whatever the run's planned end (a trial extended from its checkpoint averages
exactly as one trained straight through).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

_Tensors = tuple[torch.Tensor, ...] | list[torch.Tensor]
HORIZON_SHARE = 0.1  # the average spans about this share of training's steps


def ema_decay(total_steps: int) -> float:
    """The decay whose horizon (1 / (1 - decay) steps) is a tenth of training: the average
    forgets the early, poor weights of a short run, and spans a few epochs of a long one."""
    return 1.0 - 1.0 / max(1.0, HORIZON_SHARE * total_steps)


def progressive_decay(steps_done: int, share: float = HORIZON_SHARE) -> float:
    """The decay of the next update after ``steps_done`` updates: a horizon of ``share`` of the
    steps so far (at least one step: the first updates copy the network)."""
    return 1.0 - 1.0 / max(1.0, share * steps_done)


class WeightAverage:
    """``update(model)`` after every optimiser step; ``module`` is the averaged network.

    With ``total_steps`` the decay is fixed by the planned length (:func:`ema_decay`); with
    ``None`` it follows the steps taken so far (:func:`progressive_decay`)."""

    def __init__(self, model: nn.Module, total_steps: int | None) -> None:
        self.progressive = total_steps is None
        self.decay = progressive_decay(0) if total_steps is None else ema_decay(total_steps)
        self.steps = 0  # updates so far (n_averaged of the averaged model, kept here without a sync)
        self.averaged = AveragedModel(model, multi_avg_fn=self._lerp, use_buffers=True)

    @torch.no_grad()
    def _lerp(self, averaged: _Tensors, current: _Tensors, count: torch.Tensor | int) -> None:
        get_ema_multi_avg_fn(self.decay)(averaged, current, count)

    @property
    def module(self) -> nn.Module:
        return self.averaged.module

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        if self.progressive:
            self.decay = progressive_decay(self.steps)
        self.averaged.update_parameters(model)
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state)
        self.steps = int(self.averaged.n_averaged)

    def cpu_weights(self) -> dict[str, torch.Tensor]:
        """The averaged network's state dict, as the network's own keys, on the CPU."""
        return {k: v.detach().to("cpu").contiguous() for k, v in self.module.state_dict().items()}
