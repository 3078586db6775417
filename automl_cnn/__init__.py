"""automl_cnn: Optuna proposes CNN architectures, Ray trains them, MLflow records every trial.

The public names below are imported on first use, so ``import automl_cnn.training.trainer`` (what a
worker needs) does not pull in Ray, MLflow or Optuna, and the CLI starts quickly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Architecture": "automl_cnn.model.architecture",
    "Augmentation": "automl_cnn.model.architecture",
    "Candidate": "automl_cnn.model.architecture",
    "ConvBlock": "automl_cnn.model.architecture",
    "Dense": "automl_cnn.model.architecture",
    "Head": "automl_cnn.model.architecture",
    "TrainConfig": "automl_cnn.model.architecture",
    "SearchConfig": "automl_cnn.engine.config",
    "DataBundle": "automl_cnn.data",
    "DataOptions": "automl_cnn.data",
    "ImageSet": "automl_cnn.data",
    "load_images": "automl_cnn.data",
    "prepare_data": "automl_cnn.data",
    "split_data": "automl_cnn.data",
    "AutoMLError": "automl_cnn.errors",
    "DataError": "automl_cnn.errors",
    "SpaceError": "automl_cnn.errors",
    "TrialError": "automl_cnn.errors",
    "UserInputError": "automl_cnn.errors",
    "TrainedModel": "automl_cnn.model.trained",
    "load_model": "automl_cnn.deliver.loading",
    "SearchResult": "automl_cnn.deliver.result",
    "search": "automl_cnn.app",
    "SearchSpace": "automl_cnn.space.schema",
    "load_space": "automl_cnn.space.schema",
}

__all__ = [
    "Architecture",
    "Augmentation",
    "AutoMLError",
    "Candidate",
    "ConvBlock",
    "DataBundle",
    "DataError",
    "DataOptions",
    "Dense",
    "Head",
    "ImageSet",
    "SearchConfig",
    "SearchResult",
    "SearchSpace",
    "SpaceError",
    "TrainConfig",
    "TrainedModel",
    "TrialError",
    "UserInputError",
    "load_images",
    "load_model",
    "load_space",
    "prepare_data",
    "search",
    "split_data",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'automl_cnn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from automl_cnn.app import search
    from automl_cnn.data import DataBundle, DataOptions, ImageSet, load_images, prepare_data, split_data
    from automl_cnn.deliver.loading import load_model
    from automl_cnn.deliver.result import SearchResult
    from automl_cnn.engine.config import SearchConfig
    from automl_cnn.errors import AutoMLError, DataError, SpaceError, TrialError, UserInputError
    from automl_cnn.model.architecture import Architecture, Augmentation, Candidate, ConvBlock, Dense, Head, TrainConfig
    from automl_cnn.model.trained import TrainedModel
    from automl_cnn.space.schema import SearchSpace, load_space
