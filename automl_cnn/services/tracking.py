"""MLflow runs: one parent run per search, one child run per trial (registering the winner is
:mod:`automl_cnn.services.registry`).

All logging happens in the driver through an explicit ``MlflowClient`` (no global active run),
so trials stay pure functions and a tracking server only ever talks to one process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from automl_cnn.errors import UserInputError
from automl_cnn.model.measures import EpochResult

log = logging.getLogger(__name__)

PARAM_LIMIT = 6000


def local_artifact_root(tracking_uri: str) -> Path | None:
    """For a local SQLite store, the artifact folder beside the database."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri[len("sqlite:///") :]).resolve().parent / "mlartifacts"
    return None


def check_reachable(tracking_uri: str, timeout: float = 10.0) -> None:
    """Fail fast, with one line, when a tracking server does not answer."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserInputError(
            f"cannot reach the MLflow server at {tracking_uri} ({reason}); start it with "
            f"'mlflow server' or fix --tracking-uri"
        ) from None


@contextlib.contextmanager
def using_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at ``uri`` for a block, then restore the previous setting."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before if previous is None else previous)


def _param_value(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v) if isinstance(v, list | dict | tuple) else str(v)
    return text[:PARAM_LIMIT]


class MlflowTracker:
    def __init__(self, tracking_uri: str, experiment: str) -> None:
        check_reachable(tracking_uri)
        self.uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        self.experiment_id = self._experiment(experiment)

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                raise UserInputError(
                    f"MLflow experiment {name!r} is deleted; restore it in the UI or pass --experiment NEW_NAME"
                )
            return str(found.experiment_id)
        root = local_artifact_root(self.uri)
        location = (root / name).as_uri() if root is not None else None
        return str(self.client.create_experiment(name, artifact_location=location))

    # -- runs ----------------------------------------------------------------------------------
    def start_run(self, name: str, params: dict[str, Any], tags: dict[str, str], parent: str | None = None) -> str:
        if parent is not None:
            tags = {**tags, "mlflow.parentRunId": parent}
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        run_id = str(run.info.run_id)
        self.log_params(run_id, params)
        return run_id

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        items = [Param(str(k), _param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        ts = _now_ms()
        items = [Metric(k, float(v), ts, step) for k, v in metrics.items() if v is not None and v == v]  # no NaN
        if items:
            self.client.log_batch(run_id, metrics=items)

    def log_epoch(self, run_id: str, r: EpochResult) -> None:
        self.log_metrics(
            run_id,
            {
                "train_loss": r.train_loss,
                "train_accuracy": r.train_acc,
                "val_loss": r.val_loss,
                "val_accuracy": r.val_acc,
                "epoch_seconds": r.seconds,
                "learning_rate": r.lr,
            },
            step=r.epoch,
        )

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def log_text(self, run_id: str, text: str, path: str) -> None:
        self.client.log_text(run_id, text, path)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def run_url(self, run_id: str) -> str:
        return f"{self.uri} experiment {self.experiment_id} run {run_id}"


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def default_tracking_uri() -> str:
    """The MLflow store used when none is given: ``mlflow.db`` in the working directory."""
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"
