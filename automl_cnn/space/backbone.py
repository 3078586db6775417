"""The ``backbone`` section of a space: torchvision networks to fine-tune, beside (or instead of)
the networks built from ``blocks``::

    backbone:
      family: [none, resnet18, mobilenet_v3_small]   # none: a network built from blocks
      weights: {resnet18: weights/resnet18.pth, mobilenet_v3_small: torchvision}
      trainable: [all, last_k, head]
      last_k: [1, 2]            # stages trained under last_k
      lr_mult: [0.1, 0.3]       # the backbone's learning rate, as a share of the head's
      warmup_epochs: [0, 1]     # first epochs train the head alone
      resize: 32                # upsample images whose shorter side is below this
      head_units: [0, 256]      # a hidden layer before the classifier; 0: linear only
      head_dropout: {low: 0.0, high: 0.3}

``weights`` is one value for every family or a mapping by family; each value is a file
(``.pth`` or ``.safetensors``; a relative path is resolved against the space file's folder, or
the working directory for a space given from Python), ``torchvision`` (ImageNet weights from the
torch hub cache, fetched only with ``--download``; without them the family trains from scratch,
and the run says so) or ``none``. :func:`prepare_backbones` checks it all before any training.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automl_cnn.errors import SpaceError, UserInputError
from automl_cnn.model.architecture import Backbone
from automl_cnn.model.backbone import (
    FAMILIES,
    check_weights,
    hub_cache_file,
    read_state_dict,
    resized_side,
    torchvision_network,
    torchvision_weights_url,
)
from automl_cnn.model.measures import Shape
from automl_cnn.space.params import Fixed, KeySpec, Param, param_to_yaml, parse_param

FAMILY_CHOICES = ("none", *FAMILIES)
WEIGHT_SOURCES = ("torchvision", "none")
ANY_FAMILY = "*"
_FAMILY_PREFIX = re.compile(r"^[a-z][a-z0-9_]*=")  # FAMILY=PATH in --backbone-weights


def _key(kind: str, default: Param, **spec: Any) -> Any:
    return field(default=default, metadata={"spec": KeySpec(kind=kind, **spec)})  # type: ignore[arg-type]


@dataclass(frozen=True)
class BackboneSpace:
    """What the ``backbone`` section searches; ``family: none`` (the default) is a network of blocks."""

    family: Param = _key("str", Fixed("none"), options=FAMILY_CHOICES)
    trainable: Param = _key("str", Fixed("all"), options=("all", "last_k", "head"))
    last_k: Param = _key("int", Fixed(1), minimum=1, hint="the number of last stages trained")
    lr_mult: Param = _key("float", Fixed(0.1), minimum=0.0, maximum=1.0, hint="a share of the head's rate")
    warmup_epochs: Param = _key("int", Fixed(0), minimum=0)
    resize: Param = _key("int", Fixed(0), minimum=0, hint="0 never resizes")
    head_units: Param = _key("int", Fixed(0), minimum=0, hint="0 is a linear classifier")
    head_dropout: Param = _key(
        "float", Fixed(0.0), minimum=0.0, maximum=1.0, maximum_open=True, hint="dropout is a rate in [0, 1)"
    )
    weights: tuple[tuple[str, str], ...] = ((ANY_FAMILY, "torchvision"),)
    notes: tuple[str, ...] = ()  # what prepare_backbones found (a family training from scratch)

    @property
    def families(self) -> list[str]:
        return [str(f) for f in self.family.values() if f != "none"]

    def weights_for(self, family: str) -> str:
        table = dict(self.weights)
        return table.get(family, table.get(ANY_FAMILY, "torchvision"))


_PARAMS = [f.name for f in dataclasses.fields(BackboneSpace) if "spec" in f.metadata]


def parse_backbone(raw: Any, source: str) -> BackboneSpace:
    """The ``backbone`` section of ``source``; a relative weights path is resolved against the
    space file's folder (the working directory for a space that is not a file)."""
    if raw is None:
        return BackboneSpace()
    if not isinstance(raw, dict):
        raise SpaceError(f"{source}: backbone: expected a mapping of keys, got {raw!r}")
    unknown = sorted(set(raw) - {*_PARAMS, "weights"})
    if unknown:
        raise SpaceError(f"{source}: backbone.{unknown[0]}: unknown key; backbone takes: {', '.join(_PARAMS)}, weights")
    specs = {f.name: f.metadata["spec"] for f in dataclasses.fields(BackboneSpace) if "spec" in f.metadata}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "weights":
            continue
        try:
            values[key] = parse_param(value, specs[key])
        except ValueError as exc:
            raise SpaceError(f"{source}: backbone.{key}: {exc}") from None
    if "weights" in raw:
        values["weights"] = _parse_weights(raw["weights"], source)
    return BackboneSpace(**values)


def _parse_weights(raw: Any, source: str) -> tuple[tuple[str, str], ...]:
    table = raw if isinstance(raw, dict) else {ANY_FAMILY: raw}
    base = Path(source).resolve().parent if source.endswith((".yaml", ".yml")) else Path.cwd()
    out = []
    for family, value in table.items():
        if family != ANY_FAMILY and family not in FAMILIES:
            raise SpaceError(
                f"{source}: backbone.weights: unknown family {family!r}; use one of: {', '.join(FAMILIES)}"
            )
        if not isinstance(value, str) or not value:
            raise SpaceError(f"{source}: backbone.weights.{family}: give a file path, torchvision or none")
        out.append(
            (str(family), value if value in WEIGHT_SOURCES else str((base / Path(value).expanduser()).resolve()))
        )
    return tuple(out)


def backbone_to_yaml(section: BackboneSpace) -> dict[str, Any] | None:
    """The section as YAML data, or None for a space without backbones (its file reads as before)."""
    if section.family == Fixed("none"):
        return None
    out: dict[str, Any] = {name: param_to_yaml(getattr(section, name)) for name in _PARAMS}
    table = dict(section.weights)
    out["weights"] = table[ANY_FAMILY] if list(table) == [ANY_FAMILY] else table
    return out


def with_backbone_weights(section: BackboneSpace, weights: str, family: str = ANY_FAMILY) -> BackboneSpace:
    """``section`` with ``weights`` (a path, ``torchvision`` or ``none``) for ``family`` (every one
    by default): the override of a space file's weights from Python."""
    resolved = _parse_weights({family: weights}, "<override>")[0]
    kept = tuple(item for item in section.weights if family not in (ANY_FAMILY, item[0]))
    return dataclasses.replace(section, weights=(*kept, resolved))


def override_weights(section: BackboneSpace, given: str, space_name: str) -> BackboneSpace:
    """``section`` with the weights of ``--backbone-weights``: ``PATH`` (or ``torchvision``,
    ``none``) for every backbone family of the space, or ``FAMILY=PATH[,FAMILY=PATH...]`` for some;
    a relative path is read from the working directory. A space without backbone candidates, a
    family the space does not search or a file that is not there is a one-line error."""
    if not section.families:
        raise UserInputError(
            f"--backbone-weights: space {space_name} has no backbone candidates; "
            "use --space transfer, or a space with a backbone section"
        )
    for item in (part.strip() for part in given.split(",")):
        family, _, value = item.rpartition("=") if _FAMILY_PREFIX.match(item) else ("", "", item)
        if family and family not in section.families:
            raise UserInputError(
                f"--backbone-weights: {family!r} is not a backbone family of space {space_name}; "
                f"its families: {', '.join(section.families)}"
            )
        if not value:
            raise UserInputError("--backbone-weights: give a weights file, FAMILY=FILE, torchvision or none")
        if value not in WEIGHT_SOURCES and not Path(value).expanduser().is_file():
            raise UserInputError(
                f"--backbone-weights: weights file {value} not found; give a .pth or .safetensors file"
            )
        section = with_backbone_weights(section, value, family or ANY_FAMILY)
    return section


def prepare_backbones(section: BackboneSpace, input_shape: Shape, data_name: str, download: bool) -> BackboneSpace:
    """Check every family of ``section`` against the data and resolve its weights to a file or
    ``none``, before any training: a family torchvision lacks, weights that do not fit, or images
    too small are a one-line :class:`UserInputError`. ``torchvision`` weights come from the torch
    hub cache, or are downloaded into it with ``download``; ``notes`` says which families train
    from scratch."""
    resolved: list[tuple[str, str]] = []
    notes: list[str] = []
    for family in section.families:
        torchvision_network(family)  # a family torchvision lacks
        _check_size(section, family, input_shape, data_name)
        path, note = _resolve_weights(family, section.weights_for(family), download)
        if path != "none":
            check_weights(family, read_state_dict(path), path)
        resolved.append((family, path))
        notes += [note] if note else []
    return dataclasses.replace(section, weights=tuple(resolved), notes=tuple(notes))


def _check_size(section: BackboneSpace, family: str, input_shape: Shape, data_name: str) -> None:
    need = FAMILIES[family].min_side
    smallest = min(int(v) for v in section.resize.values())
    h, w = resized_side(Backbone(family, resize=smallest), input_shape)
    if min(h, w) < need:
        raise UserInputError(
            f"{data_name}: images are {input_shape[1]}x{input_shape[2]}, too small for backbone {family} "
            f"(at least {need}x{need}); set backbone.resize: {need} in the space, or pass --image-size {need}"
        )


def _resolve_weights(family: str, given: str, download: bool) -> tuple[str, str]:
    """(a weights file or ``none``, a note when the family trains from scratch)."""
    if given == "none":
        return "none", f"{family} trains from scratch (weights: none)"
    if given != "torchvision":
        if not Path(given).is_file():
            raise UserInputError(f"weights file {given} for backbone {family} not found; check backbone.weights")
        return given, ""
    cached = hub_cache_file(family)
    if cached.is_file():
        return str(cached), ""
    url = torchvision_weights_url(family)
    if not download:
        return "none", (
            f"{family} trains from scratch: its ImageNet weights ({cached.name}) are not in {cached.parent}; "
            f"pass --download to fetch them from {url}"
        )
    import torch

    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(cached), progress=False)
    except Exception as exc:  # no network, a proxy, a full disk
        raise UserInputError(f"could not download {url} ({exc.__class__.__name__}); put the file at {cached}") from None
    return str(cached), ""
