"""Post-hoc logit adjustment: a network trained with the plain loss, scored and delivered for
balanced accuracy.

A network trained with the plain cross-entropy on imbalanced classes estimates ``p(y | x)``
under the training split's class prior; the decision that maximises balanced accuracy is the
argmax of ``p(y | x) / p(y)``, i.e. of the logits minus ``log(prior)`` (Menon et al., "Long-tail
learning via logit adjustment", ICLR 2021, post-hoc correction with tau = 1). So where the
search optimises balanced accuracy, a trial that trained with neither the class-weighted nor
the logit-adjusted loss is scored on its logits minus ``log(prior)`` at every epoch, and the
weights it hands in (its outputs, what ensembles, checks, export and serving see) carry the
shift in the bias of their last linear layer: the network delivered is the adjusted one. Its
checkpoints keep the weights it trains with.

On the imbalanced colour shapes (1:10), every well-trained completed trial of a ``--metric
accuracy`` search gained 5 to 14 points of validation balanced accuracy from the shift
(``docs/benchmarks.md``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from automl_cnn.data.bundle import TrainData, log_prior
from automl_cnn.model.architecture import TrainConfig

ADJUSTED_FOR = ("balanced_accuracy",)  # the metrics whose optimal decision is the prior-adjusted argmax


def prior_terms(
    cfg: TrainConfig, data: TrainData, model: nn.Module, device: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor | None, str]:
    """What the class prior does to a network trained under ``cfg`` on ``data``: the offset the
    logit-adjusted loss adds to the logits (None: another loss), the post-hoc shift taken off
    its logits when scored and delivered (None: none), and its last linear layer (the shift's
    home in the weights it hands in; "" without a shift)."""
    offset = torch.tensor(log_prior(data.y_train, data.num_classes), device=device) if cfg.logit_adjusted else None
    shift = posthoc_shift(cfg, data)
    if shift is None:
        return offset, None, ""
    return offset, torch.from_numpy(shift).to(device), last_linear(model)


def posthoc_shift(cfg: TrainConfig, data: TrainData) -> np.ndarray | None:
    """``log(prior)`` of ``data``'s training split where a network trained under ``cfg`` is
    scored and delivered adjusted (None: it is not: another metric, or a loss that already
    corrects for the prior)."""
    if data.metric not in ADJUSTED_FOR or cfg.class_weighted or cfg.logit_adjusted or data.class_weights is not None:
        return None
    return np.asarray(log_prior(data.y_train, data.num_classes), dtype=np.float32)


def last_linear(model: nn.Module) -> str:
    """The name of ``model``'s last linear layer (its classifier), which must have a bias."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names or getattr(model.get_submodule(names[-1]), "bias", None) is None:
        raise ValueError("the network has no last linear layer with a bias to carry the logit adjustment")
    return names[-1]


def shifted(
    weights: dict[str, torch.Tensor], layer: str, shift: torch.Tensor, sign: int = -1
) -> dict[str, torch.Tensor]:
    """``weights`` with ``sign * shift`` added to ``layer``'s bias (-1: the adjusted network; +1:
    back to the one that trains)."""
    key = f"{layer}.bias"
    return {**weights, key: weights[key] + sign * shift.to(weights[key].device, weights[key].dtype)}
