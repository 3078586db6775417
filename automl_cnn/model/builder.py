"""A pure function from an Architecture (plus input shape and class count) to a torch module.

The network takes images scaled to [0, 1] in NCHW layout and returns logits. Its first layer
normalises with the training split's statistics (stored as buffers), so every copy of the
model — in memory, on disk, in MLflow, as TorchScript or ONNX — applies the same transform.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
from torch import nn

from automl_cnn.model.architecture import Architecture, ConvBlock, Head
from automl_cnn.model.backbone import backbone_stats, build_backbone_model
from automl_cnn.model.shapes import conv_padding, feature_shapes

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "gelu": nn.GELU,
    "silu": lambda: nn.SiLU(inplace=True),
    "elu": lambda: nn.ELU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.1, inplace=True),
    "tanh": nn.Tanh,
    "mish": lambda: nn.Mish(inplace=True),
}
POOLS: dict[str, Callable[[int], nn.Module]] = {
    "max": lambda k: nn.MaxPool2d(k),
    "avg": lambda k: nn.AvgPool2d(k),
}


def activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with the statistics as buffers (saved with weights)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Residual(nn.Module):
    """``act(branch(x) + shortcut(x))``; the shortcut is a 1x1 conv when the shape changes."""

    def __init__(self, branch: nn.Module, shortcut: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.branch(x) + self.shortcut(x))


def _conv_bn(block: ConvBlock, c_in: int, stride: int) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(
            c_in,
            block.filters,
            block.kernel_size,
            stride=stride,
            padding=conv_padding(block),
            bias=not block.batch_norm,
        )
    ]
    if block.batch_norm:
        layers.append(nn.BatchNorm2d(block.filters))
    return layers


def build_block(block: ConvBlock, c_in: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    if block.type == "residual":
        branch: list[nn.Module] = []
        for i in range(block.convs):
            branch += _conv_bn(block, c_in if i == 0 else block.filters, block.stride if i == 0 else 1)
            if i < block.convs - 1:
                branch.append(activation(block.activation))
        shortcut: nn.Module = nn.Identity()
        if block.stride != 1 or c_in != block.filters:
            shortcut = nn.Sequential(*_conv_bn(_as_pointwise(block), c_in, block.stride))
        layers.append(Residual(nn.Sequential(*branch), shortcut, activation(block.activation)))
    else:
        for i in range(block.convs):
            layers += _conv_bn(block, c_in if i == 0 else block.filters, block.stride if i == 0 else 1)
            layers.append(activation(block.activation))
    if block.pooling != "none":
        layers.append(POOLS[block.pooling](block.pool_size))
    if block.dropout > 0:
        layers.append(nn.Dropout(block.dropout))
    return nn.Sequential(*layers)


def _as_pointwise(block: ConvBlock) -> ConvBlock:
    return replace(block, type="plain", kernel_size=1, padding="valid")


def build_head(head: Head, c: int, h: int, w: int, num_classes: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    if head.type == "global_avg":
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        width = c
    else:
        layers.append(nn.Flatten())
        width = c * h * w
    for dense in head.dense:
        layers += [nn.Linear(width, dense.units), activation(head.activation)]
        if dense.dropout > 0:
            layers.append(nn.Dropout(dense.dropout))
        width = dense.units
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def build_model(
    arch: Architecture,
    input_shape: tuple[int, int, int],
    num_classes: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> nn.Sequential:
    """Build the network. Call :func:`automl_cnn.model.profile.profile` first for a clear error on an
    architecture that does not fit ``input_shape``. A backbone candidate is a torchvision network
    with random weights (:mod:`automl_cnn.model.backbone`)."""
    c_in = input_shape[0]
    if arch.backbone is not None:
        mean3, std3 = backbone_stats(arch.backbone, c_in, mean, std)
        return build_backbone_model(arch.backbone, input_shape, num_classes, Normalize(mean3, std3))
    shapes = feature_shapes(arch, input_shape)
    mods: OrderedDict[str, nn.Module] = OrderedDict()
    mods["normalize"] = Normalize(mean or [0.0] * c_in, std or [1.0] * c_in)
    for i, block in enumerate(arch.blocks, start=1):
        mods[f"block{i}"] = build_block(block, shapes[i - 1][0])
    c, h, w = shapes[-1]
    mods["head"] = build_head(arch.head, c, h, w, num_classes)
    return nn.Sequential(mods)
