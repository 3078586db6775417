"""automl_cnn: Optuna proposes CNN architectures, Ray trains them, MLflow records every trial."""

from automl_cnn.architecture import Architecture, Augmentation, Candidate, ConvBlock, Dense, Head, TrainConfig
from automl_cnn.config import SearchConfig
from automl_cnn.data import DataBundle, ImageSet, load_images, split_data
from automl_cnn.errors import AutoMLError, DataError, SpaceError, TrialError, UserInputError
from automl_cnn.model import TrainedModel, load_model
from automl_cnn.search import SearchResult, search
from automl_cnn.space import SearchSpace, load_space

__version__ = "0.1.0"

__all__ = [
    "Architecture",
    "Augmentation",
    "AutoMLError",
    "Candidate",
    "ConvBlock",
    "DataBundle",
    "DataError",
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
    "search",
    "split_data",
]
