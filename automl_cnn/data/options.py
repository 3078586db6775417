"""How a dataset is read and divided: the data settings, each declared once with its command-line form."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from automl_cnn.data.bundle import DEFAULT_SPLIT
from automl_cnn.errors import UserInputError
from automl_cnn.options import Switch, byte_size, fractions, height_width, option, parse_given_text, switch

DEFAULT_MEMORY_BUDGET = 2 * 1024**3  # bytes of decoded uint8 pixels kept in memory


@dataclass(frozen=True)
class DataOptions:
    """How a dataset is read. :class:`DataSettings`, the ``data`` group of a
    :class:`~automl_cnn.engine.config.SearchConfig`, extends this class, so each data setting
    (and its command-line form) is declared here once."""

    image_size: tuple[int, int] | None = option(  # (height, width); default derived from the data
        None,
        "--image-size",
        parse=height_width,
        help="resize every image, e.g. 32 or 32x48 (HxW)",
        shown="the data's most common size",
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
        shown="2GB",
    )
    stream: bool | None = switch(  # force streaming (True) or in-memory (False); None: by budget
        None,
        Switch("--stream", True, "always stream images from disk"),
        Switch("--in-memory", False, "always load images into memory"),
        shown="by --memory-budget",
    )

    def __post_init__(self) -> None:
        parse_given_text(self, UserInputError)  # "4GB", "32x48", "~/tv" from Python as from the CLI
        if isinstance(self.image_size, list):  # as JSON or YAML give it
            object.__setattr__(self, "image_size", tuple(self.image_size))

    def options(self) -> DataOptions:
        """Only the reading settings, as a plain :class:`DataOptions`."""
        return DataOptions(**{f.name: getattr(self, f.name) for f in fields(DataOptions)})


@dataclass(frozen=True)
class DataSettings(DataOptions):
    """The ``data`` group of a search's settings: how the data is read, plus a test set of the
    user's, the split and the loss weighting."""

    test_data: str | None = option(  # a user's test set (folder, .csv, .npz); else split from the data
        None,
        "--test-data",
        help="your own test set (folder, .csv or .npz), kept out of the search",
        shown="a share of --data, by --split",
    )
    split: tuple[float, float, float] = option(
        DEFAULT_SPLIT, "--split", parse=fractions, help="train,val,test fractions"
    )
    class_weights: bool = switch(  # weight the loss by inverse class frequency
        False, Switch("--class-weights", True, "weight the loss by inverse class frequency")
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.split, list):
            object.__setattr__(self, "split", tuple(self.split))


DEFAULT_OPTIONS = DataOptions()
