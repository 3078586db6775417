"""Search spaces: YAML files loaded into typed, validated, frozen records.

A space has four sections, each a set of searchable keys (see :mod:`automl_cnn.space.params` for the
value forms). Every key has a default, so a space file only names what it changes::

    name: default
    blocks:
      count: {low: 1, high: 3}
      filters: [16, 32, 64]
      kernel_size: [3, 5]
    head:
      type: [flatten, global_avg]
    training:
      learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}

Keys of ``blocks`` are drawn afresh for every block; keys of ``head`` for every dense layer
where they concern one (``units``, ``dropout``). ``blocks.count`` may reach 0: such a candidate
is an MLP on the flattened image: its head is ``flatten`` without a suggestion where ``head.type``
allows it (a space that allows only ``global_avg`` gets such candidates refused before training).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from automl_cnn.errors import SpaceError
from automl_cnn.space.augment_policies import CUSTOM
from automl_cnn.space.augment_policies import NAMES as AUGMENT_POLICIES
from automl_cnn.space.backbone import BackboneSpace, backbone_to_yaml, parse_backbone
from automl_cnn.space.params import (
    Choice,
    Fixed,
    FloatRange,
    IntRange,
    KeySpec,
    Param,
    param_to_yaml,
    parse_param,
)

ACTIVATIONS = ("relu", "gelu", "silu", "elu", "leaky_relu", "tanh", "mish")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "onecycle", "step", "wsd")  # wsd: extendable (training/schedules.py)


def _key(kind: str, default: Param, **spec: Any) -> Any:
    return field(default=default, metadata={"spec": KeySpec(kind=kind, **spec)})  # type: ignore[arg-type]


_DROPOUT = {"minimum": 0.0, "maximum": 1.0, "maximum_open": True, "hint": "dropout is a rate in [0, 1)"}


@dataclass(frozen=True)
class BlockSpace:
    """Convolutional blocks; every key except ``count`` is drawn per block. A ``count`` of 0 is a
    network without convolutions: the head's dense layers on the flattened image (an MLP)."""

    count: Param = _key(
        "int", IntRange(1, 3), minimum=0, hint="0 blocks is an MLP on the flattened image, 1 or more a CNN"
    )
    type: Param = _key("str", Fixed("plain"), options=("plain", "residual"))
    convs: Param = _key("int", Fixed(1), minimum=1, hint="a block needs at least one convolution")
    filters: Param = _key("int", Choice((16, 32, 64)), minimum=1)
    kernel_size: Param = _key("int", Choice((3, 5)), minimum=1, hint="use sizes such as 3, 5, 7")
    stride: Param = _key("int", Fixed(1), minimum=1)
    padding: Param = _key("str", Fixed("same"), options=("same", "valid"))
    activation: Param = _key("str", Fixed("relu"), options=ACTIVATIONS)
    batch_norm: Param = _key("bool", Choice((True, False)))
    pooling: Param = _key("str", Choice(("max", "avg", "none")), options=("max", "avg", "none"))
    pool_size: Param = _key("int", Fixed(2), minimum=2, hint="pool by 2 or more, or set pooling: none")
    dropout: Param = _key("float", FloatRange(0.0, 0.3), **_DROPOUT)


@dataclass(frozen=True)
class HeadSpace:
    """The classifier head: flatten or global average pooling, then dense layers."""

    type: Param = _key("str", Choice(("flatten", "global_avg")), options=("flatten", "global_avg"))
    dense_layers: Param = _key("int", IntRange(0, 1), minimum=0)
    units: Param = _key("int", Choice((64, 128, 256)), minimum=1)
    activation: Param = _key("str", Fixed("relu"), options=ACTIVATIONS)
    dropout: Param = _key("float", FloatRange(0.0, 0.5), **_DROPOUT)


@dataclass(frozen=True)
class TrainingSpace:
    """Optimiser and schedule settings."""

    optimizer: Param = _key("str", Choice(("adam", "adamw")), options=OPTIMIZERS)
    learning_rate: Param = _key("float", FloatRange(3e-4, 3e-3, log=True), minimum=1e-8, maximum=10.0)
    weight_decay: Param = _key("float", Fixed(0.0), minimum=0.0, maximum=1.0)
    momentum: Param = _key("float", Fixed(0.9), minimum=0.0, maximum=1.0, maximum_open=True)
    batch_size: Param = _key("int", Choice((32, 64, 128)), minimum=1)
    epochs: Param = _key("int", Fixed(10), minimum=1)
    lr_schedule: Param = _key("str", Fixed("constant"), options=SCHEDULES)
    label_smoothing: Param = _key(
        "float", Fixed(0.0), minimum=0.0, maximum=1.0, maximum_open=True, hint="a rate in [0, 1)"
    )
    # the loss weighted by inverse class frequency; left at this default, a search that optimises
    # balanced accuracy tries both (app.make_plan: engine/imbalance.py)
    class_weighted: Param = _key("bool", Fixed(False))
    # the logit-adjusted loss: trains on logits + log(class prior), so the plain logits rank
    # classes as if they were balanced; tried both ways where class_weighted is (engine/imbalance.py)
    logit_adjusted: Param = _key("bool", Fixed(False))


@dataclass(frozen=True)
class AugmentSpace:
    """Training-time augmentation; all off unless a space asks (a flip is wrong for digits)."""

    hflip: Param = _key("bool", Fixed(False))
    crop_padding: Param = _key("int", Fixed(0), minimum=0, hint="pixels of padding for random crops")
    rotation: Param = _key("float", Fixed(0.0), minimum=0.0, maximum=180.0, hint="degrees")
    translate: Param = _key("float", Fixed(0.0), minimum=0.0, maximum=0.5, hint="a fraction of the image size")
    scale: Param = _key("float", Fixed(0.0), minimum=0.0, maximum=0.5, maximum_open=True)
    color_jitter: Param = _key("float", Fixed(0.0), minimum=0.0, maximum=1.0, maximum_open=True)
    # a named recipe (space/augment_policies.py) instead of the settings above, and random erasing
    policy: Param = _key("str", Fixed(CUSTOM), options=AUGMENT_POLICIES)
    erasing: Param = _key("float", Fixed(0.0), minimum=0.0, maximum=1.0, hint="the probability an image is erased")


Section = BlockSpace | HeadSpace | TrainingSpace | AugmentSpace
_SECTIONS: dict[str, type[Any]] = {
    "blocks": BlockSpace,
    "head": HeadSpace,
    "training": TrainingSpace,
    "augmentation": AugmentSpace,
}
_TOP_KEYS = {"name", "description", "backbone", *_SECTIONS}  # backbone: space/backbone.py


@dataclass(frozen=True)
class SearchSpace:
    name: str = "space"
    description: str = ""
    blocks: BlockSpace = BlockSpace()
    head: HeadSpace = HeadSpace()
    training: TrainingSpace = TrainingSpace()
    augmentation: AugmentSpace = AugmentSpace()
    backbone: BackboneSpace = BackboneSpace()
    source: str = ""  # the file it came from, for messages

    def to_dict(self) -> dict[str, Any]:
        """The resolved space (every key, defaults included) as plain YAML-ready data."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        for section_name in _SECTIONS:
            section = getattr(self, section_name)
            out[section_name] = {f.name: param_to_yaml(getattr(section, f.name)) for f in dataclasses.fields(section)}
        backbone = backbone_to_yaml(self.backbone)
        if backbone is not None:
            out["backbone"] = backbone
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def with_max_epochs(self, max_epochs: int) -> SearchSpace:
        """This space with every epoch count capped at ``max_epochs``."""
        return dataclasses.replace(
            self, training=dataclasses.replace(self.training, epochs=_cap(self.training.epochs, max_epochs))
        )

    def max_epochs(self) -> int:
        return int(max(v for v in self.training.epochs.values() if isinstance(v, int | float)))


def _cap(param: Param, limit: int) -> Param:
    if isinstance(param, Fixed):
        return Fixed(min(int(param.value), limit))
    if isinstance(param, Choice):
        capped = sorted({min(int(v), limit) for v in param.options})
        return Fixed(capped[0]) if len(capped) == 1 else Choice(tuple(capped))
    assert isinstance(param, IntRange)
    if param.low >= limit:
        return Fixed(limit)
    return dataclasses.replace(param, high=min(param.high, limit))


def parse_space(raw: Any, source: str = "<space>") -> SearchSpace:
    """Validate raw YAML data into a :class:`SearchSpace`; errors name ``source`` and the key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpaceError(f"{source}: the file must hold a mapping of sections ({', '.join(_SECTIONS)})")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise SpaceError(
            f"{source}: unknown key {_first(unknown)!r}; top-level keys are: {', '.join(sorted(_TOP_KEYS))}"
        )
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        sections[name] = _parse_section(raw.get(name), cls, name, source)
    stem = Path(source).stem if source.endswith((".yaml", ".yml")) else "space"
    name = raw.get("name", stem)
    description = raw.get("description", "")
    if not isinstance(name, str) or not isinstance(description, str):
        raise SpaceError(f"{source}: name and description must be text")
    backbone = parse_backbone(raw.get("backbone"), source)
    return SearchSpace(name=name, description=description, source=source, backbone=backbone, **sections)


def _parse_section(raw: Any, cls: type[Any], section: str, source: str) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise SpaceError(f"{source}: {section}: expected a mapping of keys, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(raw) - set(fields)
    if unknown:
        raise SpaceError(f"{source}: {section}.{_first(unknown)}: unknown key; {section} takes: {', '.join(fields)}")
    values: dict[str, Param] = {}
    for key, value in raw.items():
        try:
            values[key] = parse_param(value, fields[key].metadata["spec"])
        except ValueError as exc:
            raise SpaceError(f"{source}: {section}.{key}: {exc}") from None
    return cls(**values)


def _first(keys: set[Any]) -> str:
    return sorted(str(k) for k in keys)[0]


def spaces_dir() -> Path:
    """The folder of shipped spaces (inside the wheel, or the repository's ``search_spaces/``)."""
    package = Path(__file__).resolve().parent.parent
    bundled = package / "search_spaces"
    return bundled if bundled.is_dir() else package.parent / "search_spaces"


def shipped_spaces() -> dict[str, Path]:
    return {p.stem: p for p in sorted(spaces_dir().glob("*.yaml"))}


def load_space(spec: str | Path | SearchSpace) -> SearchSpace:
    """Load a space from a path, or by the name of a shipped one (``default``, ``tiny``...)."""
    if isinstance(spec, SearchSpace):
        return spec
    path = Path(spec)
    if not path.exists() and path.suffix == "" and str(spec) in shipped_spaces():
        path = shipped_spaces()[str(spec)]
    if not path.exists():
        names = ", ".join(shipped_spaces())
        raise SpaceError(f"search space {str(spec)!r} not found; give a YAML path or one of: {names}")
    if path.is_dir():
        raise SpaceError(f"{spec}: is a folder; give a YAML file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise SpaceError(f"{spec}: not valid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(f"{spec}: cannot read the file ({exc.__class__.__name__}); check the path") from None
    return parse_space(raw, source=str(spec))


__all__ = [
    "AugmentSpace",
    "BlockSpace",
    "Choice",
    "Fixed",
    "FloatRange",
    "HeadSpace",
    "IntRange",
    "SearchSpace",
    "TrainingSpace",
    "load_space",
    "parse_space",
    "shipped_spaces",
]
