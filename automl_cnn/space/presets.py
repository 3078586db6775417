"""Classic CNN designs as warm starts, projected onto a search space.

A preset is a concrete :class:`Candidate`. To enqueue it in a study it is projected onto the
space: it is replayed through the same sampling code as any trial, with every suggestion
answered by the preset's value snapped to what the space allows (the nearest choice, a range's
bound). A preset whose structure the space cannot express (another number of blocks, residual
blocks in a plain space, an MLP where ``blocks.count`` cannot reach 0 or the head cannot be
``flatten``) does not fit and is left out.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from automl_cnn.model.architecture import Architecture, Augmentation, Candidate, ConvBlock, Dense, Head, TrainConfig
from automl_cnn.options import Entry
from automl_cnn.space.sampling import sample_candidate
from automl_cnn.space.schema import SearchSpace

_RECIPE = TrainConfig(
    optimizer="adam",
    learning_rate=1e-3,
    weight_decay=1e-4,
    batch_size=64,
    epochs=15,
    lr_schedule="cosine",
    augmentation=Augmentation(rotation=10.0, translate=0.1, scale=0.1),
)

# An MLP on the flattened image: the baseline for data without spatial structure (on
# pixel-permuted mnist5k one wide layer with dropout 0.5 and label smoothing reaches 97% test
# accuracy, above an RBF SVM), cheap to train, and trained without augmentation, which would
# destroy data whose pixels have no spatial order.
_MLP_RECIPE = dataclasses.replace(
    _RECIPE, optimizer="adamw", weight_decay=5e-4, epochs=40, label_smoothing=0.1, augmentation=Augmentation()
)

# name -> the design, and one line on it: --warm-start's help comes from here
PRESETS: dict[str, Entry[Candidate]] = {
    "mlp": Entry(
        Candidate(Architecture((), Head("flatten", (Dense(2048, 0.5),))), _MLP_RECIPE),
        "an MLP on the flattened image, for data without spatial structure",
    ),
    # LeCun et al. 1998, with ReLU and max pooling as usually trained today.
    "lenet5": Entry(
        Candidate(
            Architecture(
                (
                    ConvBlock(filters=6, kernel_size=5, padding="same", batch_norm=False, pooling="max"),
                    ConvBlock(filters=16, kernel_size=5, padding="valid", batch_norm=False, pooling="max"),
                ),
                Head("flatten", (Dense(120), Dense(84))),
            ),
            _RECIPE,
        ),
        "LeNet-5 (LeCun et al. 1998)",
    ),
    # The Keras MNIST example: conv32-conv64 3x3, max-pool, dropout 0.25, dense 128, dropout 0.5.
    "keras_mnist": Entry(
        Candidate(
            Architecture(
                (
                    ConvBlock(filters=32, kernel_size=3, padding="valid", batch_norm=False, pooling="none"),
                    ConvBlock(
                        filters=64, kernel_size=3, padding="valid", batch_norm=False, pooling="max", dropout=0.25
                    ),
                ),
                Head("flatten", (Dense(128, 0.5),)),
            ),
            _RECIPE,
        ),
        "the Keras MNIST example",
    ),
    # A VGG-style stack: pairs of 3x3 convolutions with batch norm, halving the map each block.
    "vgg_small": Entry(
        Candidate(
            Architecture(
                (
                    ConvBlock(convs=2, filters=32, kernel_size=3, pooling="max"),
                    ConvBlock(convs=2, filters=64, kernel_size=3, pooling="max", dropout=0.25),
                    ConvBlock(convs=2, filters=128, kernel_size=3, pooling="none", dropout=0.25),
                ),
                Head("global_avg", (Dense(128, 0.3),)),
            ),
            _RECIPE,
        ),
        "a small VGG: pairs of 3x3 convolutions",
    ),
    # A small ResNet: three residual stages 16-32-64, stride 2 between them, global pooling.
    "resnet_small": Entry(
        Candidate(
            Architecture(
                (
                    ConvBlock(type="residual", convs=2, filters=16, kernel_size=3, pooling="none"),
                    ConvBlock(type="residual", convs=2, filters=32, kernel_size=3, stride=2, pooling="none"),
                    ConvBlock(type="residual", convs=2, filters=64, kernel_size=3, stride=2, pooling="none"),
                ),
                Head("global_avg"),
            ),
            _RECIPE,
        ),
        "a small ResNet, stages of 16-32-64 filters",
    ),
}
# cheapest first: the first result arrives soon and sets the bar for early stopping
GROUPS: dict[str, Entry[tuple[str, ...]]] = {
    "classics": Entry(("mlp", "lenet5", "vgg_small", "keras_mnist", "resnet_small"), "all five presets, cheapest first")
}


def optuna_params(candidate: Candidate) -> dict[str, Any]:
    """The candidate's values under the parameter names of :func:`sample_candidate`."""
    flat = candidate.flat_params()
    out = {k: v for k, v in flat.items() if k != "n_blocks"}
    out["blocks"] = flat["n_blocks"]
    return out


class _SnappingTrial:
    """Answers each suggestion with the preset's value, snapped into the distribution."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        want = self.values.get(name, choices[0])
        if want in choices:
            value = want
        elif (
            isinstance(want, int | float)
            and not isinstance(want, bool)
            and all(isinstance(c, int | float) and not isinstance(c, bool) for c in choices)
        ):
            value = min(choices, key=lambda c: (abs(math.log(max(c, 1e-12)) - math.log(max(want, 1e-12))), c))
        else:
            value = choices[0]
        self.params[name] = value
        return value

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        want = int(self.values.get(name, low))
        value = min(max(want, low), high)
        value = low + round((value - low) / step) * step
        self.params[name] = min(value, high)
        return self.params[name]

    def suggest_float(self, name: str, low: float, high: float, step: float | None = None, log: bool = False) -> float:
        want = float(self.values.get(name, low))
        value = min(max(want, low), high)
        if step:
            value = min(low + round((value - low) / step) * step, high)
        self.params[name] = value
        return value


def project(candidate: Candidate, space: SearchSpace) -> tuple[Candidate, dict[str, Any]] | None:
    """The candidate as the space can express it, with its Optuna params; None if it does not fit."""
    trial = _SnappingTrial({"backbone.family": "none", **optuna_params(candidate)})
    projected = sample_candidate(trial, space)  # type: ignore[arg-type]
    if projected.architecture.backbone is not None:  # a space of backbones only
        return None
    want, got = candidate.architecture.blocks, projected.architecture.blocks
    if len(want) != len(got) or [b.type for b in want] != [b.type for b in got]:
        return None
    if not got and projected.architecture.head.type != "flatten":  # an MLP needs a flatten head
        return None
    return projected, trial.params


def warm_start_params(names: Sequence[str], space: SearchSpace) -> list[tuple[str, dict[str, Any]]]:
    """(preset name, Optuna params) for each named preset or group that fits the space,
    without duplicates (two presets that project onto the same candidate are enqueued once)."""
    seen: set[str] = set()
    out = []
    for name in names:
        for preset in GROUPS[name].value if name in GROUPS else (name,):
            if preset not in PRESETS:
                known = ", ".join([*GROUPS, *PRESETS])
                raise ValueError(f"unknown warm start {preset!r}; use one of: {known}, or a previous search's folder")
            fitted = project(PRESETS[preset].value, space)
            if fitted is None:
                continue
            key = fitted[0].key()
            if key not in seen:
                seen.add(key)
                out.append((preset, fitted[1]))
    return out
