"""Feature-map shapes through a network, from its record alone: why a network does not fit an
input, named by block and layer, before anything is built."""

from __future__ import annotations

from automl_cnn.errors import InfeasibleArchitecture
from automl_cnn.model.architecture import Architecture, ConvBlock
from automl_cnn.model.measures import Shape


def conv_padding(block: ConvBlock) -> int:
    """``same`` pads ``k // 2`` on each side (residual blocks always do, so the sum fits)."""
    return block.kernel_size // 2 if block.padding == "same" or block.type == "residual" else 0


def _conv_out(size: int, block: ConvBlock, stride: int) -> int:
    return (size + 2 * conv_padding(block) - block.kernel_size) // stride + 1


def feature_shapes(arch: Architecture, input_shape: Shape) -> list[Shape]:
    """Shapes (C, H, W) of the input and after each block; raises InfeasibleArchitecture.

    A network without blocks is an MLP on the flattened image; it needs a ``flatten`` head. A
    backbone's shapes are its input's, after any resize (the torchvision network pools to 1x1)."""
    if arch.backbone is not None:
        from automl_cnn.model.backbone import check_fits, resized_side

        check_fits(arch.backbone, input_shape)
        return [input_shape, (3, *resized_side(arch.backbone, input_shape))]
    if not arch.blocks and arch.head.type == "global_avg":
        raise InfeasibleArchitecture(
            "a network without convolutional blocks needs a flatten head: global average pooling of "
            "the raw image would leave one number per channel; use head type flatten for an MLP"
        )
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
