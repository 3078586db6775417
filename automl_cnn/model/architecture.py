"""Concrete candidates: one architecture and its training settings, as frozen records.

Records round-trip through JSON (``to_dict`` / ``from_dict``) and have a canonical form in which
settings that change nothing are normalised (dropout 0 vs none, the size of a pooling layer that
is not there, the width of dense layers that do not exist), so equal networks compare equal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class ConvBlock:
    type: str = "plain"  # plain | residual
    convs: int = 1
    filters: int = 32
    kernel_size: int = 3
    stride: int = 1
    padding: str = "same"  # same (k // 2 on each side) | valid
    activation: str = "relu"
    batch_norm: bool = True
    pooling: str = "max"  # max | avg | none
    pool_size: int = 2
    dropout: float = 0.0

    def canonical(self) -> ConvBlock:
        return dataclasses.replace(
            self,
            padding="same" if self.type == "residual" else self.padding,
            pool_size=self.pool_size if self.pooling != "none" else 0,
            dropout=round(float(self.dropout), 6),
        )


@dataclass(frozen=True)
class Dense:
    units: int = 128
    dropout: float = 0.0

    def canonical(self) -> Dense:
        return Dense(units=self.units, dropout=round(float(self.dropout), 6))


@dataclass(frozen=True)
class Head:
    type: str = "flatten"  # flatten | global_avg
    dense: tuple[Dense, ...] = ()
    activation: str = "relu"

    def canonical(self) -> Head:
        return Head(
            type=self.type,
            dense=tuple(d.canonical() for d in self.dense),
            activation=self.activation if self.dense else "relu",
        )


@dataclass(frozen=True)
class Backbone:
    """A torchvision network (``family``) with its classifier replaced by a searched head, and how
    it is fine-tuned. ``weights`` is a weights file (an absolute path, resolved before the search)
    or ``none`` (trained from scratch)."""

    family: str
    weights: str = "none"
    trainable: str = "all"  # all | last_k (the last ``last_k`` stages and the head) | head
    last_k: int = 1
    lr_mult: float = 0.1  # the backbone's learning rate as a share of the head's (pretrained only)
    warmup_epochs: int = 0  # first epochs train the head only (the backbone frozen)
    resize: int = 0  # the network upsamples inputs whose shorter side is below this; 0: never
    head_units: int = 0  # a hidden layer of this width before the linear classifier; 0: none
    head_dropout: float = 0.0

    @property
    def pretrained(self) -> bool:
        return self.weights != "none"

    def canonical(self) -> Backbone:
        return dataclasses.replace(
            self,
            last_k=self.last_k if self.trainable == "last_k" else 0,
            lr_mult=float(f"{self.lr_mult:.6g}") if self.trainable != "head" and self.pretrained else 1.0,
            warmup_epochs=self.warmup_epochs if self.trainable != "head" else 0,
            head_dropout=round(float(self.head_dropout), 6),
        )

    def describe(self) -> str:
        """e.g. ``resnet18(pretrained, last_k2, x0.1, warm1) | fc256-d0.20``."""
        tune = {"all": "all", "head": "head", "last_k": f"last_k{self.last_k}"}.get(self.trainable, self.trainable)
        parts = ["pretrained" if self.pretrained else "scratch", tune]
        parts += [f"x{self.lr_mult:g}"] if self.trainable != "head" and self.pretrained else []
        parts += [f"warm{self.warmup_epochs}"] if self.warmup_epochs and self.trainable != "head" else []
        parts += [f"min{self.resize}"] if self.resize else []
        head = (f"fc{self.head_units}" if self.head_units else "linear") + (
            f"-d{self.head_dropout:.2f}" if self.head_dropout > 0 else ""
        )
        return f"{self.family}({', '.join(parts)}) | {head}"


@dataclass(frozen=True)
class Architecture:
    blocks: tuple[ConvBlock, ...]
    head: Head = Head()
    backbone: Backbone | None = None  # a pretrained-style network instead of blocks and head
    # records of networks built from blocks read as before (to_dict, and the codec's records)
    __json_omit_none__: ClassVar[tuple[str, ...]] = ("backbone",)

    def canonical(self) -> Architecture:
        if self.backbone is not None:
            return Architecture((), Head(), self.backbone.canonical())
        return Architecture(tuple(b.canonical() for b in self.blocks), self.head.canonical())

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if self.backbone is None:
            del out["backbone"]  # the records of networks built from blocks read as before
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Architecture:
        head = dict(data.get("head", {}))
        head["dense"] = tuple(Dense(**d) for d in head.get("dense", ()))
        backbone = Backbone(**data["backbone"]) if data.get("backbone") else None
        return cls(blocks=tuple(ConvBlock(**b) for b in data["blocks"]), head=Head(**head), backbone=backbone)

    @property
    def convolutional(self) -> bool:
        """False for a network without convolutional blocks (an MLP on the flattened image)."""
        return bool(self.blocks) or self.backbone is not None

    def describe(self) -> str:
        """A compact one-line summary, e.g. ``conv32k3-max2 | conv64k3 | gap-fc128``; a network
        without blocks reads ``mlp-fc1024-d0.50`` (``mlp-linear`` without dense layers); a
        backbone reads ``resnet18(pretrained, all, x0.1) | linear``."""
        if self.backbone is not None:
            return self.backbone.describe()
        parts = []
        for b in self.blocks:
            s = f"{'res' if b.type == 'residual' else 'conv'}{b.filters}k{b.kernel_size}"
            s += f"x{b.convs}" if b.convs > 1 else ""
            s += f"s{b.stride}" if b.stride > 1 else ""
            s += "" if b.pooling == "none" else f"-{b.pooling}{b.pool_size}"
            s += f"-d{b.dropout:.2f}" if b.dropout > 0 else ""
            parts.append(s)
        dense = "".join(f"-fc{d.units}" + (f"-d{d.dropout:.2f}" if d.dropout > 0 else "") for d in self.head.dense)
        if not self.blocks:
            pool = "-gap" if self.head.type == "global_avg" else ""
            return "mlp" + pool + (dense or ("" if pool else "-linear"))
        head = "gap" if self.head.type == "global_avg" else "flat"
        return " | ".join([*parts, head + dense])


@dataclass(frozen=True)
class Augmentation:
    hflip: bool = False
    crop_padding: int = 0
    rotation: float = 0.0  # degrees
    translate: float = 0.0  # fraction of the image size
    scale: float = 0.0  # +/- fraction
    color_jitter: float = 0.0  # brightness / contrast strength
    # added later (see LATER): a named policy the space searched (space/augment_policies.py), or
    # "" for the settings above; torchvision's TrivialAugmentWide; random erasing's probability
    policy: str = ""
    trivial: bool = False
    erasing: float = 0.0

    # fields added after candidates' keys were first recorded: left out of a candidate's JSON (and
    # so of its key) while at their defaults, so earlier searches' candidates keep their keys
    LATER: ClassVar[dict[str, Any]] = {"policy": "", "trivial": False, "erasing": 0.0}

    @property
    def enabled(self) -> bool:
        return self != Augmentation(policy=self.policy)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        return {k: v for k, v in out.items() if k not in self.LATER or v != self.LATER[k]}


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    batch_size: int = 64
    epochs: int = 10
    lr_schedule: str = "constant"
    label_smoothing: float = 0.0
    augmentation: Augmentation = field(default_factory=Augmentation)
    # added later (see Augmentation.LATER): the loss weighted by inverse class frequency
    class_weighted: bool = False
    # the logit-adjusted loss (Menon et al., ICLR 2021): the cross-entropy of logits + log(class prior)
    logit_adjusted: bool = False

    LATER: ClassVar[dict[str, Any]] = {"class_weighted": False, "logit_adjusted": False}

    def to_dict(self) -> dict[str, Any]:
        out = {**dataclasses.asdict(self), "augmentation": self.augmentation.to_dict()}
        return {k: v for k, v in out.items() if k not in self.LATER or v != self.LATER[k]}

    def canonical(self) -> TrainConfig:
        return dataclasses.replace(
            self,
            momentum=self.momentum if self.optimizer in ("sgd", "rmsprop") else 0.0,
            learning_rate=float(f"{self.learning_rate:.6g}"),
            weight_decay=float(f"{self.weight_decay:.6g}"),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        data["augmentation"] = Augmentation(**data.get("augmentation", {}))
        return cls(**data)


@dataclass(frozen=True)
class Candidate:
    """What one trial trains: an architecture and its training settings."""

    architecture: Architecture
    training: TrainConfig = field(default_factory=TrainConfig)

    def canonical(self) -> Candidate:
        return Candidate(self.architecture.canonical(), self.training.canonical())

    def to_dict(self) -> dict[str, Any]:
        return {"architecture": self.architecture.to_dict(), "training": self.training.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        return cls(Architecture.from_dict(data["architecture"]), TrainConfig.from_dict(data["training"]))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Candidate:
        return cls.from_dict(json.loads(text))

    def key(self) -> str:
        """A hash of the canonical form: equal for candidates that train the same network."""
        return hashlib.sha256(self.canonical().to_json().encode()).hexdigest()[:16]

    def flat_params(self) -> dict[str, Any]:
        """Flat ``name -> value`` pairs for MLflow params and tables."""
        out: dict[str, Any] = {"n_blocks": len(self.architecture.blocks)}
        if self.architecture.backbone is not None:
            out.update({f"backbone.{k}": v for k, v in dataclasses.asdict(self.architecture.backbone).items()})
        for i, block in enumerate(self.architecture.blocks, start=1):
            for k, v in dataclasses.asdict(block).items():
                out[f"block{i}.{k}"] = v
        head = self.architecture.head
        out["head.type"] = head.type
        out["head.dense_layers"] = len(head.dense)
        for i, d in enumerate(head.dense, start=1):
            out[f"head.dense{i}.units"] = d.units
            out[f"head.dense{i}.dropout"] = d.dropout
        for k, v in dataclasses.asdict(self.training).items():
            if k == "augmentation":
                for ak, av in v.items():
                    out[f"augment.{ak}"] = av
            else:
                out[f"train.{k}"] = v
        return out
