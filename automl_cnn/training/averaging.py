"""An exponential moving average of a network's weights, kept beside the network as it trains.

The final fit keeps one (``JobSpec.outputs``) and the driver delivers it instead of the last
weights only where it scores better on the held-out check split: an average of the weights
along the end of training often generalises a little better, and never costs a second fit.
torch's own :class:`~torch.optim.swa_utils.AveragedModel` does the averaging (buffers, such as
batch-norm statistics, averaged too).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

HORIZON_SHARE = 0.1  # the average spans about this share of training's steps


def ema_decay(total_steps: int) -> float:
    """The decay whose horizon (1 / (1 - decay) steps) is a tenth of training: the average
    forgets the early, poor weights of a short run, and spans a few epochs of a long one."""
    return 1.0 - 1.0 / max(1.0, HORIZON_SHARE * total_steps)


class WeightAverage:
    """``update(model)`` after every optimiser step; ``module`` is the averaged network."""

    def __init__(self, model: nn.Module, total_steps: int) -> None:
        self.decay = ema_decay(total_steps)
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)

    @property
    def module(self) -> nn.Module:
        return self.averaged.module

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict[str, Any]:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state)

    def cpu_weights(self) -> dict[str, torch.Tensor]:
        """The averaged network's state dict, as the network's own keys, on the CPU."""
        return {k: v.detach().to("cpu").contiguous() for k, v in self.module.state_dict().items()}
