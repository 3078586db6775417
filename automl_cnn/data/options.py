"""How a dataset is read: the data settings, each declared once with its command-line form."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from automl_cnn.options import Switch, byte_size, height_width, option, switch

DEFAULT_MEMORY_BUDGET = 2 * 1024**3  # bytes of decoded uint8 pixels kept in memory


@dataclass(frozen=True)
class DataOptions:
    """How a dataset is read. :class:`~automl_cnn.engine.config.SearchConfig` extends this class,
    so each data setting (and its command-line form) is declared here once."""

    image_size: tuple[int, int] | None = option(  # (height, width); default derived from the data
        None, "--image-size", parse=height_width, help="resize every image, e.g. 32 or 32x48 (HxW)"
    )
    strict: bool = switch(  # a bad image file is an error instead of a skipped file
        False, Switch("--strict", True, "a corrupt or unreadable image is an error, not skipped")
    )
    data_root: Path = option(  # noqa: RUF009 (a frozen default); where torchvision datasets are read from
        Path("~/.cache/automl_cnn/torchvision"), "--data-root", parse=Path, help="where torchvision datasets are"
    )
    download: bool = switch(  # let torchvision fetch a dataset that is not under data_root
        False, Switch("--download", True, "let torchvision download a dataset missing from --data-root")
    )
    memory_budget: int | None = option(  # bytes of decoded pixels kept in memory
        DEFAULT_MEMORY_BUDGET,
        "--memory-budget",
        parse=byte_size,
        help="decoded bytes kept in memory (e.g. 2GB); more streams from disk",
    )
    stream: bool | None = switch(  # force streaming (True) or in-memory (False); None: by budget
        None,
        Switch("--stream", True, "always stream images from disk"),
        Switch("--in-memory", False, "always load images into memory"),
    )

    def __post_init__(self) -> None:
        if not isinstance(self.data_root, Path):
            object.__setattr__(self, "data_root", Path(self.data_root))


DEFAULT_OPTIONS = DataOptions()
