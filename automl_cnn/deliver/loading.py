"""``load_model``: a delivered model from a search's output folder or from MLflow."""

from __future__ import annotations

import os
from pathlib import Path

from automl_cnn.errors import UserInputError
from automl_cnn.model.trained import TrainedModel


def load_model(source: str | Path, tracking_uri: str | None = None) -> TrainedModel:
    """Load a model saved by a search: its output folder, or an MLflow model URI such as
    ``models:/automl-cnn-mnist5k@champion`` (read from ``tracking_uri``, default the local
    store ``./mlflow.db``). Only tensors and JSON are read, never pickled code."""
    text = str(source)
    if text.startswith(("models:/", "runs:/", "m-")) or (text.startswith("mlflow-artifacts:")):
        return _load_from_mlflow(text, tracking_uri)
    return TrainedModel.load(source)


def _load_from_mlflow(uri: str, tracking_uri: str | None) -> TrainedModel:
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException

    from automl_cnn.services.credentials import mask_password
    from automl_cnn.services.tracking import default_tracking_uri, using_tracking_uri

    store = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    with tempfile.TemporaryDirectory() as tmp, using_tracking_uri(store):
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=f"{uri.rstrip('/')}/extra_files", dst_path=tmp)
        except MlflowException as exc:
            first = str(exc).strip().splitlines()[0][:200]
            raise UserInputError(
                f"cannot load {uri} from the MLflow store {mask_password(store)} ({first}); check the name and alias, "
                "or pass --tracking-uri"
            ) from None
        return TrainedModel.load(local)
