"""Static checks of a candidate before anything trains: shapes, parameters, FLOPs, limits.

Shapes are inferred from the record (so the reason for a refusal names the block and layer);
parameters and FLOPs come from building the network on PyTorch's ``meta`` device and running it
under ``torch.utils.flop_counter.FlopCounterMode``: nothing is allocated, and the count is
torch's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from automl_cnn.architecture import Architecture, ConvBlock
from automl_cnn.errors import InfeasibleArchitecture

Shape = tuple[int, int, int]


def _conv_out(size: int, block: ConvBlock, stride: int) -> int:
    from automl_cnn.builder import conv_padding

    return (size + 2 * conv_padding(block) - block.kernel_size) // stride + 1


def feature_shapes(arch: Architecture, input_shape: Shape) -> list[Shape]:
    """Shapes (C, H, W) of the input and after each block; raises InfeasibleArchitecture."""
    if not arch.blocks:
        raise InfeasibleArchitecture("the architecture has no convolutional block")
    c, h, w = input_shape
    shapes: list[Shape] = [(c, h, w)]
    for i, block in enumerate(arch.blocks, start=1):
        if block.type == "residual" and block.kernel_size % 2 == 0:
            raise InfeasibleArchitecture(
                f"block {i}: a residual block needs an odd kernel size, got {block.kernel_size}"
            )
        for j in range(block.convs):
            stride = block.stride if j == 0 else 1
            nh, nw = _conv_out(h, block, stride), _conv_out(w, block, stride)
            if nh < 1 or nw < 1:
                raise InfeasibleArchitecture(
                    f"block {i} conv {j + 1}: a {block.kernel_size}x{block.kernel_size} kernel "
                    f"(padding {block.padding}) does not fit the {h}x{w} feature map"
                )
            h, w = nh, nw
        c = block.filters
        if block.pooling != "none":
            if h < block.pool_size or w < block.pool_size:
                raise InfeasibleArchitecture(
                    f"block {i}: {block.pooling} pooling by {block.pool_size} would shrink the "
                    f"{h}x{w} feature map below 1x1"
                )
            h, w = h // block.pool_size, w // block.pool_size
        shapes.append((c, h, w))
    return shapes


@dataclass(frozen=True)
class Profile:
    params: int
    flops: int  # per image, forward pass, as counted by torch (a multiply-add is 2 FLOPs)
    feature_shapes: tuple[Shape, ...]


def profile(arch: Architecture, input_shape: Shape, num_classes: int) -> Profile:
    """Shapes, parameter count and FLOPs, without allocating the network."""
    from automl_cnn.builder import build_model

    shapes = feature_shapes(arch, input_shape)
    with torch.device("meta"):
        model = build_model(arch, input_shape, num_classes).eval()
        x = torch.empty(1, *input_shape)
        with FlopCounterMode(display=False) as counter:
            model(x)
    params = sum(p.numel() for p in model.parameters())
    return Profile(params=params, flops=int(counter.get_total_flops()), feature_shapes=tuple(shapes))


@dataclass(frozen=True)
class Limits:
    """Hard constraints: a candidate beyond any of them is never trained."""

    max_params: int | None = None
    max_flops: int | None = None

    def violations(self, prof: Profile) -> list[str]:
        out = []
        if self.max_params is not None and prof.params > self.max_params:
            out.append(f"{prof.params:,} parameters exceed --max-params {self.max_params:,}")
        if self.max_flops is not None and prof.flops > self.max_flops:
            out.append(f"{prof.flops:,} FLOPs exceed --max-flops {self.max_flops:,}")
        return out
