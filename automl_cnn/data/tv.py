"""torchvision datasets by name, read from ``--data-root``; fetched only with ``--download``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from automl_cnn.data.images import ImageSet
from automl_cnn.errors import DataError

log = logging.getLogger("automl_cnn.data")

# name -> (torchvision class name, how its splits are chosen)
TORCHVISION = {
    "mnist": "MNIST",
    "fashion-mnist": "FashionMNIST",
    "kmnist": "KMNIST",
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
    "svhn": "SVHN",
}


def _urls(cls: Any) -> list[str]:
    """Where torchvision would download the dataset from (for error messages)."""
    if hasattr(cls, "mirrors") and hasattr(cls, "resources"):
        return [f"{cls.mirrors[0]}{name}" for name, _ in cls.resources]
    if hasattr(cls, "url"):
        return [cls.url]
    if hasattr(cls, "split_list"):
        return [v[0] for v in cls.split_list.values()][:2]
    return []


def _open(cls: Any, root: Path, train: bool, download: bool) -> Any:
    if cls.__name__ == "SVHN":
        return cls(str(root), split="train" if train else "test", download=download)
    return cls(str(root), train=train, download=download)


def _arrays(ds: Any) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    data = ds.data.numpy() if hasattr(ds.data, "numpy") else np.asarray(ds.data)
    targets = np.asarray(getattr(ds, "targets", getattr(ds, "labels", None)), dtype=np.int64)
    if data.ndim == 3:  # N, H, W greyscale
        data = data[:, None]
    elif data.shape[-1] == 3:  # N, H, W, C (CIFAR)
        data = data.transpose(0, 3, 1, 2)
    classes = tuple(str(c) for c in getattr(ds, "classes", [])) or tuple(str(i) for i in range(int(targets.max()) + 1))
    return np.ascontiguousarray(data, dtype=np.uint8), targets, classes


def load_torchvision(name: str, root: Path, download: bool) -> tuple[ImageSet, ImageSet]:
    """(training images, the dataset's own test split)."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, TORCHVISION[name])
    root = root.expanduser().resolve()
    try:
        train = _open(cls, root, True, download)
        test = _open(cls, root, False, download)
    except RuntimeError as exc:
        if not download and ("not found" in str(exc).lower() or "download=true" in str(exc).lower()):
            raise DataError(
                f"torchvision dataset {name!r} not found under {root}; pass --download to fetch it, "
                "or --data-root to the folder that holds it"
            ) from None
        raise DataError(f"torchvision dataset {name!r} under {root} could not be read: {str(exc)[:200]}") from None
    except OSError as exc:  # URLError, connection refused, DNS failure...
        urls = ", ".join(_urls(cls)) or "the dataset's URLs"
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"could not download {name!r} from {urls} ({reason}); check the network, or put the files under {root}"
        ) from None
    xs, ys, classes = _arrays(train)
    xt, yt, _ = _arrays(test)
    note = f"torchvision {TORCHVISION[name]} from {root}: {len(xs)} training and {len(xt)} test images"
    log.info(note)
    return (
        ImageSet(x=xs, y=ys, class_names=classes, name=name, notes=(note,)),
        ImageSet(x=xt, y=yt, class_names=classes, name=f"{name}-test"),
    )
