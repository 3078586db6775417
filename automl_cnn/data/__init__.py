"""Data sources, read into :class:`ImageSet` and split into a :class:`DataBundle`."""

from __future__ import annotations

from pathlib import Path

from automl_cnn.data.builtin import BUILTIN
from automl_cnn.data.bundle import DataBundle, TrainData, split_data
from automl_cnn.data.images import ImageSet
from automl_cnn.errors import DataError


def load_images(spec: str | Path | ImageSet) -> ImageSet:
    """Read a dataset: a built-in name (``digits``, ``mnist5k``) or a folder of class folders."""
    if isinstance(spec, ImageSet):
        return spec
    text = str(spec)
    if text in BUILTIN:
        return BUILTIN[text]()
    path = Path(text).expanduser()
    if not path.exists():
        names = ", ".join(BUILTIN)
        raise DataError(f"dataset {text!r} not found: give an existing path or one of: {names}")
    if path.is_dir():
        from automl_cnn.data.folder import load_folder

        return load_folder(path)
    raise DataError(f"{text}: unsupported data file; give a folder with one sub-folder per class")


__all__ = ["DataBundle", "ImageSet", "TrainData", "load_images", "split_data"]
