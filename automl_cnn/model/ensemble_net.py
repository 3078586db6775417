"""An ensemble as one network: the weighted average of its members' class probabilities.

Its output is the logarithm of that average, so a softmax of it (what exported and served
models apply) gives the average back exactly, and the ensemble exports to ONNX, TorchScript and
MLflow's ``pt2`` like any single network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

TINY = 1e-12  # keeps log() finite where every member gives a class probability 0


class EnsembleNet(nn.Module):
    mix: torch.Tensor

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float]) -> None:
        super().__init__()
        if len(members) != len(weights) or not members:
            raise ValueError("an ensemble needs one weight per member, and at least one member")
        total = float(sum(weights))
        self.members = nn.ModuleList(members)
        self.register_buffer("mix", torch.tensor([w / total for w in weights], dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([torch.softmax(m(x), dim=1) for m in self.members], dim=0)
        mean = (probs * self.mix.view(-1, 1, 1)).sum(dim=0)
        return torch.log(mean.clamp_min(TINY))
