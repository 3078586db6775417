"""Does a dataset's input fit a space at all? The network of the space that shrinks its input
least is checked before anything runs: if it does not fit, no network of the space does."""

from __future__ import annotations

from typing import Any

from automl_cnn.errors import DataError, InfeasibleArchitecture
from automl_cnn.model.architecture import Architecture, ConvBlock, Head
from automl_cnn.model.measures import Shape
from automl_cnn.model.shapes import feature_shapes
from automl_cnn.space.params import Choice, Fixed, Param
from automl_cnn.space.schema import SearchSpace


def smallest_network(space: SearchSpace) -> Architecture:
    """The network of ``space`` that shrinks its input least (fewest blocks, no pooling where
    allowed, smallest kernels with padding, stride 1): if it does not fit, none does."""

    def lowest(param: Param) -> Any:
        values = param.values()
        return min(values) if isinstance(param, Fixed | Choice) else param.low  # type: ignore[union-attr]

    def prefer(param: Param, value: str) -> str:
        values = param.values()
        return value if value in values else str(values[0])

    b = space.blocks
    block = ConvBlock(
        type=prefer(b.type, "plain"),
        convs=int(lowest(b.convs)),
        filters=1,
        kernel_size=int(lowest(b.kernel_size)),
        stride=int(lowest(b.stride)),
        padding=prefer(b.padding, "same"),
        pooling=prefer(b.pooling, "none"),
        pool_size=int(lowest(b.pool_size)),
    )
    return Architecture(tuple(block for _ in range(int(lowest(b.count)))), Head())


def check_input_fits(space: SearchSpace, input_shape: Shape, data_name: str) -> None:
    """Refuse, before anything runs, images too small for every network of the space."""
    arch = smallest_network(space)
    try:
        feature_shapes(arch, input_shape)
    except InfeasibleArchitecture as exc:
        c, h, w = input_shape
        need = next(
            (s for s in range(max(h, w) + 1, 4097) if _fits(arch, (c, s, s))),
            None,
        )
        fix = f"pass --image-size {need} (or larger)" if need else "use a space with fewer blocks"
        raise DataError(
            f"{data_name}: images are {h}x{w}, smaller than any network of space {space.name!r} can take "
            f"({exc}); {fix}, or a space with fewer pooling blocks"
        ) from None


def _fits(arch: Architecture, shape: Shape) -> bool:
    try:
        feature_shapes(arch, shape)
        return True
    except InfeasibleArchitecture:
        return False
