"""Imbalanced classes in the space: a search that optimises a metric where every class counts the
same (balanced accuracy: ``--metric auto`` on imbalanced data, or asked; macro F1, asked)
corrects for the skewed class prior, unless its space says otherwise.

* ``training.class_weighted`` (the cross-entropy weighted by inverse class frequency) left at its
  default (``false``, fixed) becomes the choice ``[false, true]``, so the sampler learns whether
  weighting the loss pays on this data; a space that writes ``class_weighted: true`` or
  ``[false, true]`` keeps its own (``false``, the default, cannot be told from not writing it:
  ``--metric accuracy`` or a balanced dataset keep the loss unweighted).
* Under balanced accuracy a trial trained with the plain loss is scored and delivered with its
  logits shifted by ``-log(class prior)`` (:mod:`automl_cnn.training.posthoc`), the decision
  that maximises balanced accuracy for a network that estimates the class probabilities.
* ``training.logit_adjusted`` (the logit-adjusted loss, Menon et al. 2021) is a space's own
  choice; it is not added to the search (on the imbalanced colour shapes the search that tried
  it delivered lower test balanced accuracy than ``--metric accuracy`` on two of the three fresh
  seeds it ran, 1.7 points lower on average: ``docs/benchmarks.md``).

The warm-start presets: under balanced accuracy they train with the plain loss (the post-hoc
shift corrects them); under macro F1, with the class-weighted loss where the space searches it
(:func:`preset_loss`): on a short budget they may be the only trials that complete, and an
uncorrected preset then wins by never predicting the rare class (seen in the imbalance
benchmark's trial logs, shapes at 1:10).
"""

from __future__ import annotations

import dataclasses

from automl_cnn.metrics import CLASS_METRICS
from automl_cnn.space.params import Choice, Fixed, Param
from automl_cnn.space.schema import SearchSpace
from automl_cnn.training.posthoc import ADJUSTED_FOR

UNWEIGHTED = Fixed(False)


def with_loss_weighting(space: SearchSpace, metric: str) -> SearchSpace:
    """``space`` searching ``train.class_weighted`` when every class counts the same under
    ``metric`` (balanced accuracy, macro F1) and the space left it at its default."""
    if metric not in CLASS_METRICS or space.training.class_weighted != UNWEIGHTED:
        return space
    training = dataclasses.replace(space.training, class_weighted=Choice((False, True)))
    return dataclasses.replace(space, training=training)


def _tries(param: Param) -> bool:
    return isinstance(param, Choice) and True in param.options


def searched_losses(space: SearchSpace) -> list[str]:
    """The corrected losses the search tries, in words (empty: none)."""
    training = space.training
    names = {"a class-weighted loss": training.class_weighted, "the logit-adjusted loss": training.logit_adjusted}
    return [name for name, param in names.items() if _tries(param)]


def preset_loss(space: SearchSpace, metric: str) -> dict[str, bool]:
    """The loss setting the warm-start presets train with under ``metric``: none where the
    post-hoc shift corrects a plain loss (balanced accuracy), else the class-weighted loss where
    the space searches it ({}: the presets' own)."""
    if metric in ADJUSTED_FOR or metric not in CLASS_METRICS or not _tries(space.training.class_weighted):
        return {}
    return {"train.class_weighted": True}
