"""Backbone candidates: a torchvision network (``torchvision.models.resnet18(weights=None)`` and
its kin, never written here) whose classifier is replaced by a small searched head.

The network is a :class:`BackboneNet`: ``rgb`` (grayscale repeated to three channels, when the
data has one), ``normalize`` (ImageNet statistics for pretrained weights, the data's otherwise),
``resize`` (bilinear upsampling to the backbone's minimum side, when the space asks), ``backbone``
and ``head``. Building it never reads weights: the trainer loads a weights file into a fresh
network (:func:`load_pretrained`), and a trained model is loaded from its own file like any other.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from automl_cnn.errors import InfeasibleArchitecture, UserInputError
from automl_cnn.model.architecture import Backbone
from automl_cnn.model.measures import Shape

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NESTED_KEYS = ("state_dict", "model", "model_state_dict")  # where checkpoints often keep the weights


@dataclass(frozen=True)
class Family:
    classifier: str  # the state-dict prefix of the layers the head replaces
    stages: tuple[str, ...]  # the backbone's stages, first to last (``last_k`` unfreezes the last k)
    tail: tuple[str, ...] = ()  # kept layers after the last stage, trained with it
    min_side: int = 32  # the smallest input side the family is meant for


_RESNET = Family("fc", ("layer1", "layer2", "layer3", "layer4"))
FAMILIES: dict[str, Family] = {
    "resnet18": _RESNET,
    "resnet34": _RESNET,
    "mobilenet_v3_small": Family("classifier", tuple(f"features.{i}" for i in range(13))),
    "efficientnet_b0": Family("classifier", tuple(f"features.{i}" for i in range(9))),
    "convnext_tiny": Family("classifier.2", tuple(f"features.{i}" for i in range(8)), tail=("classifier.0",)),
}


def torchvision_network(family: str) -> nn.Module:
    """torchvision's ``family`` with random weights (nothing is downloaded), or a one-line error."""
    import torchvision
    import torchvision.models as models

    if family not in FAMILIES or not hasattr(models, family):
        raise UserInputError(
            f"backbone family {family!r} is not in the installed torchvision {torchvision.__version__}; "
            f"use one of: {', '.join(f for f in FAMILIES if hasattr(models, f))}, or upgrade torchvision"
        )
    net: nn.Module = getattr(models, family)(weights=None)
    return net


def _drop_classifier(net: nn.Module, family: str) -> int:
    """Replace the classifier layers by an identity; returns the width of the features left."""
    path = FAMILIES[family].classifier.split(".")
    parent = net
    for part in path[:-1]:
        parent = parent.get_submodule(part)
    old = parent.get_submodule(path[-1])
    first = old if isinstance(old, nn.Linear) else next(m for m in old.modules() if isinstance(m, nn.Linear))
    if isinstance(parent, nn.Sequential) and path[-1].isdigit():
        parent[int(path[-1])] = nn.Identity()
    else:
        setattr(parent, path[-1], nn.Identity())
    return int(first.in_features)


class RGB(nn.Module):
    """One channel repeated to the three a backbone takes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1)


class Upsample(nn.Module):
    """Bilinear resize to a fixed size (static, so exports hold it as one op)."""

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)


class BackboneNet(nn.Sequential):
    """A backbone candidate's network; ``spec`` says how it is fine-tuned."""

    def __init__(self, spec: Backbone, modules: OrderedDict[str, nn.Module]) -> None:
        super().__init__(modules)
        self.spec = spec


def resized_side(spec: Backbone, input_shape: Shape) -> tuple[int, int]:
    """The image size the backbone sees: shorter side raised to ``spec.resize`` (aspect kept)."""
    _, h, w = input_shape
    if not spec.resize or min(h, w) >= spec.resize:
        return h, w
    scale = spec.resize / min(h, w)
    return max(spec.resize, round(h * scale)), max(spec.resize, round(w * scale))


def check_fits(spec: Backbone, input_shape: Shape) -> None:
    """Refuse an input smaller than the family is meant for (InfeasibleArchitecture)."""
    h, w = resized_side(spec, input_shape)
    need = FAMILIES[spec.family].min_side if spec.family in FAMILIES else 1
    if min(h, w) < need:
        raise InfeasibleArchitecture(
            f"{spec.family} needs images of at least {need}x{need}, got {h}x{w}; "
            f"set backbone.resize: {need} in the space or pass --image-size {need}"
        )


def backbone_stats(
    spec: Backbone, channels: int, mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[list[float], list[float]]:
    """The three-channel normalisation: ImageNet's for pretrained weights, else the data's."""
    if spec.pretrained:
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    mean, std = list(mean or [0.0] * channels), list(std or [1.0] * channels)
    return (mean * 3, std * 3) if len(mean) == 1 else (mean, std)


def build_backbone_model(spec: Backbone, input_shape: Shape, num_classes: int, normalize: nn.Module) -> BackboneNet:
    """The network of a backbone candidate; ``normalize`` takes three channels."""
    check_fits(spec, input_shape)
    net = torchvision_network(spec.family)
    width = _drop_classifier(net, spec.family)
    mods: OrderedDict[str, nn.Module] = OrderedDict()
    if input_shape[0] == 1:
        mods["rgb"] = RGB()
    mods["normalize"] = normalize
    size = resized_side(spec, input_shape)
    if size != tuple(input_shape[1:]):
        mods["resize"] = Upsample(size)
    mods["backbone"] = net
    head: list[nn.Module] = []
    if spec.head_units:
        head += [nn.Linear(width, spec.head_units), nn.ReLU(inplace=True)]
        width = spec.head_units
    if spec.head_dropout > 0:
        head.append(nn.Dropout(spec.head_dropout))
    head.append(nn.Linear(width, num_classes))
    mods["head"] = nn.Sequential(*head)
    return BackboneNet(spec, mods)


# -- weights files -----------------------------------------------------------------------------
def torchvision_weights_url(family: str) -> str:
    import torchvision.models as models

    return str(models.get_model_weights(family).DEFAULT.url)


def hub_cache_file(family: str) -> Path:
    """Where ``torch.hub`` keeps torchvision's ImageNet weights of ``family`` once downloaded."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(torchvision_weights_url(family)).name


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or ``.pth`` file (a state dict, possibly nested under
    ``state_dict`` or ``model``); no code is unpickled."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserInputError(f"weights file {path} not found; check backbone.weights in the space") from None
    except Exception as exc:  # a corrupt, pickled-code or foreign file
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else exc.__class__.__name__
        raise UserInputError(
            f"{path}: not a readable weights file ({reason}); give a .pth or .safetensors state dict"
        ) from None
    for key in NESTED_KEYS:
        while isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserInputError(
            f"{path}: holds no state dict of tensors; save one with torch.save(model.state_dict(), ...)"
        )
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def _own(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def check_weights(family: str, state: dict[str, torch.Tensor], source: str) -> None:
    """Refuse weights that do not fit ``family``, naming missing and unexpected keys (one line)."""
    with torch.device("meta"):
        want = {k: v.shape for k, v in torch_state(torchvision_network(family)).items()}
    classifier = FAMILIES[family].classifier
    body = {k: s for k, s in want.items() if not _own(k, classifier)}
    missing = [k for k in body if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in want]
    wrong = [k for k in body if k in state and tuple(state[k].shape) != tuple(body[k])]
    if missing or unexpected or wrong:
        shapes = f"; {len(wrong)} of another shape ({_few(wrong)})" if wrong else ""
        raise UserInputError(
            f"{source}: weights do not fit {family}: {len(missing)} missing keys ({_few(missing)}), "
            f"{len(unexpected)} unexpected ({_few(unexpected)}){shapes}; give weights saved from "
            f"torchvision's {family} (torch.save(model.state_dict(), ...))"
        )


def torch_state(net: nn.Module) -> dict[str, torch.Tensor]:
    return dict(net.state_dict())


def weights_file(spec: Backbone) -> Path | None:
    """The file ``spec`` loads weights from: its path, torch hub's cached copy for ``torchvision``
    (None when it is not there: nothing is downloaded here), or None for ``none``."""
    if spec.weights == "none":
        return None
    if spec.weights == "torchvision":
        cached = hub_cache_file(spec.family)
        return cached if cached.is_file() else None
    return Path(spec.weights)


def load_pretrained(model: nn.Module) -> bool:
    """Load a backbone candidate's weights file into its fresh network; False when there is none."""
    if not isinstance(model, BackboneNet):
        return False
    path = weights_file(model.spec)
    if path is None:
        return False
    state = read_state_dict(path)
    check_weights(model.spec.family, state, str(path))
    classifier = FAMILIES[model.spec.family].classifier
    kept = {k: v for k, v in state.items() if not _own(k, classifier)}
    model.get_submodule("backbone").load_state_dict(kept, strict=False)
    return True


# -- fine-tuning -------------------------------------------------------------------------------
def _trainable_prefixes(spec: Backbone, epoch: int) -> tuple[str, ...] | None:
    """Backbone prefixes that train at ``epoch``; None: all of it."""
    if spec.trainable == "head" or epoch < spec.warmup_epochs:
        return ()
    if spec.trainable == "last_k":
        family = FAMILIES[spec.family]
        return family.stages[-max(1, spec.last_k) :] + family.tail
    return None


def set_phase(model: nn.Module, epoch: int) -> None:
    """Before a training epoch: freeze what ``spec`` keeps fixed at ``epoch`` (no gradients, its
    normalisation layers in eval mode); a network built from blocks is left as it is."""
    if not isinstance(model, BackboneNet):
        return
    prefixes = _trainable_prefixes(model.spec, epoch)
    backbone = model.get_submodule("backbone")
    for name, param in backbone.named_parameters():  # all of it after a warm-up of ``all``
        param.requires_grad_(prefixes is None or any(_own(name, p) for p in prefixes))
    if prefixes is None:
        return
    for name, module in backbone.named_modules():
        if name and not any(_own(name, p) or _own(p, name) for p in prefixes):
            module.eval()


def optimizer_params(model: nn.Module, lr: float) -> Iterator[nn.Parameter] | list[dict[str, Any]]:
    """What an optimiser takes: the parameters of a network built from blocks, or for a backbone
    two groups, the head's at ``lr`` (first) and the backbone's at ``lr * spec.lr_mult`` (at ``lr``
    for a backbone without pretrained weights)."""
    if not isinstance(model, BackboneNet):
        return model.parameters()
    backbone = list(model.get_submodule("backbone").parameters())
    ids = {id(p) for p in backbone}
    rest = [p for p in model.parameters() if id(p) not in ids]
    spec = model.spec  # from scratch, the backbone learns at the head's rate
    mult = spec.lr_mult if spec.pretrained and math.isfinite(spec.lr_mult) else 1.0
    return [{"params": rest, "lr": lr}, {"params": backbone, "lr": lr * mult}]
