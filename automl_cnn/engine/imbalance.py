"""Imbalanced classes in the space: a search that optimises a metric where every class counts the
same (balanced accuracy: ``--metric auto`` on imbalanced data, or asked; macro F1, asked) also
tries a class-weighted loss, unless its space says otherwise.

``training.class_weighted`` left at its default (``false``, fixed) becomes the choice
``[false, true]``, so the sampler learns whether weighting the loss by inverse class frequency
pays on this data; a space that writes ``class_weighted: true`` or ``[false, true]`` keeps its
own (``false``, the default, cannot be told from not writing it: ``--metric accuracy`` or a
balanced dataset keep the loss unweighted). Where the loss is searched so, the warm-start presets
run with the weighted loss (:func:`automl_cnn.engine.search.warmstart.apply_warm_starts`): on a
short budget they may be the only trials that complete, and an unweighted preset then wins by
never predicting the rare class (seen in the imbalance benchmark's trial logs, shapes at 1:10).
"""

from __future__ import annotations

import dataclasses

from automl_cnn.metrics import CLASS_METRICS
from automl_cnn.space.params import Choice, Fixed
from automl_cnn.space.schema import SearchSpace

UNWEIGHTED = Fixed(False)


def with_loss_weighting(space: SearchSpace, metric: str) -> SearchSpace:
    """``space`` searching ``train.class_weighted`` when every class counts the same under
    ``metric`` (balanced accuracy, macro F1) and the space left it at its default."""
    if metric not in CLASS_METRICS or space.training.class_weighted != UNWEIGHTED:
        return space
    training = dataclasses.replace(space.training, class_weighted=Choice((False, True)))
    return dataclasses.replace(space, training=training)


def searches_weighting(space: SearchSpace) -> bool:
    param = space.training.class_weighted
    return isinstance(param, Choice) and True in param.options
