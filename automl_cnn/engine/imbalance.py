"""Imbalanced classes in the space: a search that optimises a metric where every class counts the
same (balanced accuracy: ``--metric auto`` on imbalanced data, or asked; macro F1, asked) also
tries the two losses that correct for a skewed class prior, unless its space says otherwise.

* ``training.class_weighted``: the cross-entropy weighted by inverse class frequency;
* ``training.logit_adjusted``: the logit-adjusted loss (Menon et al., "Long-tail learning via
  logit adjustment", ICLR 2021): the cross-entropy of the logits plus ``log(class prior)``, so the
  network's own logits rank the classes as a balanced prior would. On long-tailed CIFAR it beats
  both plain and re-weighted cross-entropy on balanced error; weighting a class of a few dozen
  images tenfold mostly teaches the network those images.

Each left at its default (``false``, fixed) becomes the choice ``[false, true]``, so the sampler
learns what pays on this data (the logit adjustment is left alone where a space fixes
``class_weighted: true``: the two together correct the prior twice). A space that writes either
keeps its own (``false``, the default, cannot be told from not writing it: ``--metric accuracy``
or a balanced dataset keep the plain loss). Where the loss is searched so, the warm-start
presets train with a corrected loss, the logit-adjusted one where it is searched
(:func:`preset_loss`, used by :func:`automl_cnn.engine.search.warmstart.apply_warm_starts`): on a
short budget they may be the only trials that complete, and a preset with the plain loss then
wins by never predicting the rare class (seen in the imbalance benchmark's trial logs, shapes at
1:10).
"""

from __future__ import annotations

import dataclasses

from automl_cnn.metrics import CLASS_METRICS
from automl_cnn.space.params import Choice, Fixed, Param
from automl_cnn.space.schema import SearchSpace

UNWEIGHTED = Fixed(False)
BOTH = Choice((False, True))


def with_loss_weighting(space: SearchSpace, metric: str) -> SearchSpace:
    """``space`` searching ``train.class_weighted`` and ``train.logit_adjusted`` when every class
    counts the same under ``metric`` (balanced accuracy, macro F1), each where the space left it
    at its default."""
    training = space.training
    if metric not in CLASS_METRICS:
        return space
    weighted = BOTH if training.class_weighted == UNWEIGHTED else training.class_weighted
    adjusted = training.logit_adjusted
    if adjusted == UNWEIGHTED and training.class_weighted != Fixed(True):
        adjusted = BOTH
    if (weighted, adjusted) == (training.class_weighted, training.logit_adjusted):
        return space
    training = dataclasses.replace(training, class_weighted=weighted, logit_adjusted=adjusted)
    return dataclasses.replace(space, training=training)


def _tries(param: Param) -> bool:
    return isinstance(param, Choice) and True in param.options


def searched_losses(space: SearchSpace) -> list[str]:
    """The corrected losses the search tries, in words (empty: none)."""
    training = space.training
    names = {"a class-weighted loss": training.class_weighted, "the logit-adjusted loss": training.logit_adjusted}
    return [name for name, param in names.items() if _tries(param)]


def preset_loss(space: SearchSpace) -> dict[str, bool]:
    """The loss setting the warm-start presets train with where the space searches a corrected
    one: the logit-adjusted loss if searched, else the class-weighted one; {} for neither."""
    if _tries(space.training.logit_adjusted):
        weighted = isinstance(space.training.class_weighted, Choice)
        return {"train.logit_adjusted": True, **({"train.class_weighted": False} if weighted else {})}
    if _tries(space.training.class_weighted):
        return {"train.class_weighted": True}
    return {}
