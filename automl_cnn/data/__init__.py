"""Data sources, read into :class:`ImageSet` and split into a :class:`DataBundle`.

``--data`` takes: a built-in name (``digits``, ``mnist5k``), a torchvision dataset name
(``mnist``, ``fashion-mnist``, ``kmnist``, ``cifar10``, ``cifar100``, ``svhn``), a folder with
one sub-folder per class, a CSV manifest of ``path,label``, or a ``.npz`` file with ``x`` and
``y``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from automl_cnn.data.builtin import BUILTIN
from automl_cnn.data.bundle import DEFAULT_SPLIT, DataBundle, TrainData, split_data
from automl_cnn.data.files import load_entries
from automl_cnn.data.images import ImageFiles, ImageSet, resize_images
from automl_cnn.data.options import DEFAULT_OPTIONS, DataOptions
from automl_cnn.data.tv import TORCHVISION
from automl_cnn.errors import DataError


def _known() -> str:
    return ", ".join([*BUILTIN, *TORCHVISION])


def load_source(
    spec: str | Path | ImageSet, options: DataOptions = DEFAULT_OPTIONS
) -> tuple[ImageSet, ImageSet | None]:
    """Read a dataset; returns (images, its own test split if it has one)."""
    if isinstance(spec, ImageSet):
        return spec, None
    text = str(spec)
    if text in BUILTIN:
        return _arrays(BUILTIN[text](), options), None
    if text in TORCHVISION:
        from automl_cnn.data.tv import load_torchvision

        train, test = load_torchvision(text, options.data_root, options.download)
        return _arrays(train, options), _resized(test, options)
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(f"dataset {text!r} not found: give an existing path or one of: {_known()}")
    return _load_path(path, options), None


def _load_path(path: Path, options: DataOptions, like: ImageSet | None = None) -> ImageSet:
    from automl_cnn.data.arrays import load_npz
    from automl_cnn.data.folder import folder_entries
    from automl_cnn.data.manifest import manifest_entries

    if path.is_dir():
        entries, classes, notes = folder_entries(path)
        root = path
    elif path.suffix.lower() == ".csv":
        entries, classes, notes = manifest_entries(path)
        root = path.parent
    elif path.suffix.lower() == ".npz":
        return _arrays(load_npz(path), options)
    else:
        raise DataError(
            f"{path}: unsupported data file; give a folder of class folders, a .csv manifest or a .npz file"
        )
    size = options.image_size or (like.input_shape[1:] if like is not None else None)
    mode = None if like is None else ("L" if like.input_shape[0] == 1 else "RGB")
    name = path.stem if path.is_file() else path.name
    sized = dataclasses.replace(options, image_size=size)
    images = load_entries(entries, classes, name, root.resolve(), sized, mode)
    return ImageSet(
        x=images.x,
        y=images.y,
        class_names=images.class_names,
        name=images.name,
        paths=images.paths,
        notes=(*notes, *images.notes),
        source_fingerprint=images.source_fingerprint,
    )


def _arrays(images: ImageSet, options: DataOptions) -> ImageSet:
    """A dataset that arrives as arrays: resized if asked; it is in memory already, so
    ``--stream`` (for image files) does not apply, and the log says so."""
    images = _resized(images, options)
    if not options.stream:
        return images
    return dataclasses.replace(
        images, notes=(*images.notes, "held in memory: it arrives as arrays (--stream applies to image files)")
    )


def _resized(images: ImageSet, options: DataOptions) -> ImageSet:
    """Arrays resized to ``--image-size`` (bilinear, antialiased), when one is given."""
    size = options.image_size
    if size is None or images.input_shape[1:] == tuple(size) or not isinstance(images.x, np.ndarray):
        return images
    arr = resize_images(images.x, size)
    note = f"resized from {images.input_shape[1]}x{images.input_shape[2]} to {size[0]}x{size[1]}"
    return ImageSet(
        x=np.ascontiguousarray(arr),
        y=images.y,
        class_names=images.class_names,
        name=images.name,
        notes=(*images.notes, note),
    )


def load_test_source(spec: str | Path, train: ImageSet, options: DataOptions) -> ImageSet:
    """A user's test set, prepared like the training images and labelled with their classes."""
    path = Path(str(spec)).expanduser()
    if str(spec) in TORCHVISION or str(spec) in BUILTIN:
        test, _ = load_source(spec, options)
    elif not path.exists():
        raise DataError(f"test data {str(spec)!r} not found; give an existing folder, .csv or .npz")
    else:
        test = _load_path(path, options, like=train)
    if test.input_shape != train.input_shape:
        raise DataError(
            f"test images are {'x'.join(map(str, test.input_shape))} but training images are "
            f"{'x'.join(map(str, train.input_shape))}; pass --image-size so both are resized alike"
        )
    unknown = [c for c in test.class_names if c not in train.class_names]
    if unknown:
        raise DataError(f"test data has class(es) {unknown[:5]} that the training data lacks; use the same class names")
    index = {c: i for i, c in enumerate(train.class_names)}
    y = np.array([index[test.class_names[int(v)]] for v in test.y], dtype=np.int64)
    return ImageSet(
        x=test.x,
        y=y,
        class_names=train.class_names,
        name=test.name,
        paths=test.paths,
        notes=test.notes,
        source_fingerprint=test.source_fingerprint,
    )


def load_images(spec: str | Path | ImageSet, options: DataOptions = DEFAULT_OPTIONS) -> ImageSet:
    """Read a dataset (without its own test split, if it has one)."""
    return load_source(spec, options)[0]


def prepare_data(
    spec: str | Path | ImageSet,
    options: DataOptions = DEFAULT_OPTIONS,
    *,
    test: str | Path | None = None,
    fractions: tuple[float, float, float] = DEFAULT_SPLIT,
    seed: int = 0,
    class_weights: bool = False,
) -> DataBundle:
    """Read, check and split a dataset (with a user's or the dataset's own test set if any)."""
    images, own_test = load_source(spec, options)
    test_images = load_test_source(test, images, options) if test is not None else own_test
    return split_data(images, fractions, seed, test=test_images, class_weights=class_weights)


__all__ = [
    "DataBundle",
    "DataOptions",
    "ImageFiles",
    "ImageSet",
    "TrainData",
    "load_images",
    "prepare_data",
    "split_data",
]
