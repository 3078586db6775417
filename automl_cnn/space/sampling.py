"""The one adapter between Optuna and our records: a trial's suggestions become a Candidate.

Parameter names are stable and flat (``blocks``, ``block2.filters``, ``head.dense1.units``,
``train.learning_rate``, ``augment.rotation``), so they read well in Optuna's plots, in MLflow,
and in ``study.enqueue_trial`` calls for warm starts. Keys that do not matter for a candidate
(the size of an absent pooling layer, the momentum of Adam, the blocks beyond ``blocks``, the
head type of a candidate with no conv block) are never suggested, so the sampler does not model
noise.
"""

from __future__ import annotations

from typing import Any

from optuna.trial import BaseTrial

from automl_cnn.model.architecture import (
    Architecture,
    Augmentation,
    Backbone,
    Candidate,
    ConvBlock,
    Dense,
    Head,
    TrainConfig,
)
from automl_cnn.space.augment_policies import CUSTOM, POLICIES
from automl_cnn.space.params import Choice, Fixed, FloatRange, IntRange, Param
from automl_cnn.space.schema import AugmentSpace, SearchSpace


def suggest(trial: BaseTrial, name: str, param: Param) -> Any:
    """Draw one value of ``param`` under ``name`` (a fixed value is not a suggestion)."""
    if isinstance(param, Fixed):
        return param.value
    if isinstance(param, Choice):
        return trial.suggest_categorical(name, list(param.options))  # type: ignore[arg-type]
    if isinstance(param, IntRange):
        return trial.suggest_int(name, param.low, param.high, step=param.step, log=param.log)
    assert isinstance(param, FloatRange)
    return trial.suggest_float(name, param.low, param.high, step=param.step, log=param.log)


def _head_type(trial: BaseTrial, param: Param, has_blocks: bool) -> str:
    """The head's type; with no conv block there is only the flattened image to feed the dense
    layers, so a space that allows ``flatten`` gets it without a suggestion (a ``global_avg`` head
    on the raw image is refused before training: a wasted trial number)."""
    if not has_blocks and "flatten" in param.values():
        return "flatten"
    return str(suggest(trial, "head.type", param))


def sample_candidate(trial: BaseTrial, space: SearchSpace) -> Candidate:
    """Define-by-run sampling of one candidate from ``space``: a torchvision backbone where the
    space's ``backbone.family`` draws one (not a suggestion when it is fixed to ``none``, so
    spaces without backbones sample as they always did), else a network built from blocks."""
    family = str(suggest(trial, "backbone.family", space.backbone.family))
    if family != "none":
        return Candidate(Architecture((), Head(), _sample_backbone(trial, space, family)), _training(trial, space))
    bs = space.blocks
    blocks = []
    for i in range(1, int(suggest(trial, "blocks", bs.count)) + 1):
        p = f"block{i}."
        kind = suggest(trial, p + "type", bs.type)
        pooling = suggest(trial, p + "pooling", bs.pooling)
        blocks.append(
            ConvBlock(
                type=kind,
                convs=suggest(trial, p + "convs", bs.convs),
                filters=suggest(trial, p + "filters", bs.filters),
                kernel_size=suggest(trial, p + "kernel_size", bs.kernel_size),
                stride=suggest(trial, p + "stride", bs.stride),
                # residual blocks always pad "same" so the branch and the shortcut add up
                padding=suggest(trial, p + "padding", bs.padding) if kind == "plain" else "same",
                activation=suggest(trial, p + "activation", bs.activation),
                batch_norm=suggest(trial, p + "batch_norm", bs.batch_norm),
                pooling=pooling,
                pool_size=suggest(trial, p + "pool_size", bs.pool_size) if pooling != "none" else 0,
                dropout=suggest(trial, p + "dropout", bs.dropout),
            )
        )
    hs = space.head
    n_dense = int(suggest(trial, "head.dense_layers", hs.dense_layers))
    head = Head(
        type=_head_type(trial, hs.type, bool(blocks)),
        dense=tuple(
            Dense(
                units=suggest(trial, f"head.dense{i}.units", hs.units),
                dropout=suggest(trial, f"head.dense{i}.dropout", hs.dropout),
            )
            for i in range(1, n_dense + 1)
        ),
        activation=suggest(trial, "head.activation", hs.activation) if n_dense else "relu",
    )
    return Candidate(Architecture(tuple(blocks), head), _training(trial, space))


def _sample_backbone(trial: BaseTrial, space: SearchSpace, family: str) -> Backbone:
    """A backbone's fine-tuning recipe and head; keys that do not matter are not suggested (the
    stages of ``all``, the backbone's rate and warm-up when only the head trains, the rate of a
    backbone without weights)."""
    bb = space.backbone
    trainable = str(suggest(trial, "backbone.trainable", bb.trainable))
    tuned = trainable != "head"
    pretrained = bb.weights_for(family) != "none"  # from scratch, the backbone takes the head's rate
    return Backbone(
        family=family,
        weights=bb.weights_for(family),
        trainable=trainable,
        last_k=int(suggest(trial, "backbone.last_k", bb.last_k)) if trainable == "last_k" else 1,
        lr_mult=float(suggest(trial, "backbone.lr_mult", bb.lr_mult)) if tuned and pretrained else 0.1,
        warmup_epochs=int(suggest(trial, "backbone.warmup_epochs", bb.warmup_epochs)) if tuned else 0,
        resize=int(suggest(trial, "backbone.resize", bb.resize)),
        head_units=int(suggest(trial, "backbone.head_units", bb.head_units)),
        head_dropout=float(suggest(trial, "backbone.head_dropout", bb.head_dropout)),
    )


def _training(trial: BaseTrial, space: SearchSpace) -> TrainConfig:
    ts = space.training
    optimizer = suggest(trial, "train.optimizer", ts.optimizer)
    return TrainConfig(
        optimizer=optimizer,
        learning_rate=suggest(trial, "train.learning_rate", ts.learning_rate),
        weight_decay=suggest(trial, "train.weight_decay", ts.weight_decay),
        momentum=suggest(trial, "train.momentum", ts.momentum) if optimizer in ("sgd", "rmsprop") else 0.0,
        batch_size=suggest(trial, "train.batch_size", ts.batch_size),
        epochs=suggest(trial, "train.epochs", ts.epochs),
        lr_schedule=suggest(trial, "train.lr_schedule", ts.lr_schedule),
        label_smoothing=suggest(trial, "train.label_smoothing", ts.label_smoothing),
        class_weighted=suggest(trial, "train.class_weighted", ts.class_weighted),
        logit_adjusted=suggest(trial, "train.logit_adjusted", ts.logit_adjusted),
        augmentation=_augmentation(trial, space.augmentation),
    )


def _augmentation(trial: BaseTrial, a: AugmentSpace) -> Augmentation:
    """A named policy (space/augment_policies.py), or the space's single settings; then random
    erasing. Fixed settings are not suggestions, so a space without a policy samples as before."""
    policy = suggest(trial, "augment.policy", a.policy)
    erasing = float(suggest(trial, "augment.erasing", a.erasing))
    if policy != CUSTOM:
        return Augmentation(policy=policy, erasing=erasing, **POLICIES[policy])
    return Augmentation(
        hflip=suggest(trial, "augment.hflip", a.hflip),
        crop_padding=suggest(trial, "augment.crop_padding", a.crop_padding),
        rotation=suggest(trial, "augment.rotation", a.rotation),
        translate=suggest(trial, "augment.translate", a.translate),
        scale=suggest(trial, "augment.scale", a.scale),
        color_jitter=suggest(trial, "augment.color_jitter", a.color_jitter),
        erasing=erasing,
    )
