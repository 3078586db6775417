"""Parameters and FLOPs of a network built from blocks, from its record and input shape alone.

The search's gate counts every candidate it launches; building the network on the ``meta``
device and tracing a forward pass under ``FlopCounterMode`` costs tens of milliseconds (torch's
meta kernels and its dispatch run in Python), which is most of a launch when hundreds of trials
share one driver. This walks the layers :mod:`automl_cnn.model.builder` makes, with the shapes
:mod:`automl_cnn.model.shapes` infers, and applies torch's own FLOP formulas
(``torch.utils.flop_counter``) to the convolutions and linear layers, the only layers those
formulas count. The traced count (:func:`automl_cnn.model.profile.traced_profile`) stays the
reference: tests hold the two equal over every shipped space's networks.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.flop_counter import conv_flop_count, mm_flop

from automl_cnn.model.architecture import Architecture, ConvBlock
from automl_cnn.model.measures import Shape
from automl_cnn.model.shapes import conv_padding

COUNTED_BLOCKS = ("plain", "residual")  # the block types this module knows the layers of


def counts_known(arch: Architecture) -> bool:
    """Whether :func:`layer_counts` knows every layer of ``arch`` (a backbone it does not)."""
    return arch.backbone is None and all(block.type in COUNTED_BLOCKS for block in arch.blocks)


def layer_counts(arch: Architecture, shapes: list[Shape], num_classes: int) -> tuple[int, int]:
    """(parameters, FLOPs of one image) of ``arch``; ``shapes`` are its feature shapes
    (:func:`~automl_cnn.model.shapes.feature_shapes`, already checked)."""
    params = flops = 0
    for block, (c, h, w) in zip(arch.blocks, shapes, strict=False):
        for layer_params, layer_flops in _block_layers(block, c, h, w):
            params += layer_params
            flops += layer_flops
    c, h, w = shapes[-1]
    width = c if arch.head.type == "global_avg" else c * h * w
    for units in [d.units for d in arch.head.dense] + [num_classes]:
        params += width * units + units  # weight and bias
        flops += mm_flop([1, width], [width, units])  # addmm: the bias is not counted
        width = units
    return params, flops


def _conv(
    block: ConvBlock, c_in: int, h: int, w: int, kernel: int, stride: int, padding: int
) -> tuple[int, int, int, int]:
    """(parameters, FLOPs, output height, output width) of one conv and its norm."""
    out_h, out_w = (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1
    weight = [block.filters, c_in, kernel, kernel]
    flops = conv_flop_count([1, c_in, h, w], weight, [1, block.filters, out_h, out_w])
    params = block.filters * c_in * kernel * kernel
    params += 2 * block.filters if block.batch_norm else block.filters  # norm's weight and bias, or the conv's bias
    return params, flops, out_h, out_w


def _block_layers(block: ConvBlock, c_in: int, h: int, w: int) -> Iterator[tuple[int, int]]:
    """(parameters, FLOPs) of each conv of one block (pooling, activations and norms count no FLOPs)."""
    in_h, in_w, channels = h, w, c_in
    for j in range(block.convs):
        stride = block.stride if j == 0 else 1
        params, flops, h, w = _conv(block, channels, h, w, block.kernel_size, stride, conv_padding(block))
        yield params, flops
        channels = block.filters
    if block.type == "residual" and (block.stride != 1 or c_in != block.filters):  # the 1x1 shortcut
        params, flops, _h, _w = _conv(block, c_in, in_h, in_w, 1, block.stride, 0)
        yield params, flops
