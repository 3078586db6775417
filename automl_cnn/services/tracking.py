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
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.entities import Dataset, DatasetInput, Experiment, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

from automl_cnn.errors import UserInputError
from automl_cnn.model.measures import EpochResult
from automl_cnn.services.credentials import mask_password, split_credentials, tracking_credentials
from automl_cnn.services.run_pool import RunPool
from automl_cnn.services.tracking_writer import BatchWriter, TrackingWriteError

if TYPE_CHECKING:
    from automl_cnn.data import DataBundle

log = logging.getLogger(__name__)

PARAM_LIMIT = 6000

# What the MLflow UI (3.17) reads from an experiment's tags: its kind (model training, not GenAI),
# and saved views of its runs table, one per tag, opened by the URL parameter viewStateShareKey.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
SAVED_VIEW_TAG = "mlflow.sharedViewState."
TRIALS_VIEW = "automl-cnn-trials"  # the key of the view `automl-cnn ui` opens
TRIALS_SORT = "final_val_accuracy"  # what the study optimises: a trial's last validation accuracy
TRIALS_COLUMNS = (
    *(f"metrics.`{m}`" for m in (TRIALS_SORT, "best_val_accuracy", "params", "flops")),
    "tags.`automl_cnn.outcome`",
    "attributes.`Dataset`",
    "attributes.`Models`",
)
DATA_CONTEXT_TAG = "mlflow.data.context"


def local_artifact_root(tracking_uri: str) -> Path | None:
    """For a local SQLite store, the artifact folder beside the database."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri[len("sqlite:///") :]).resolve().parent / "mlartifacts"
    return None


def check_reachable(tracking_uri: str, timeout: float = 10.0) -> None:
    """Fail fast, with one line, when a tracking server does not answer (its ``/health`` needs no
    credentials; the message shows the URI with the password masked)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    url = split_credentials(tracking_uri)[0].rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserInputError(
            f"cannot reach the MLflow server at {mask_password(tracking_uri)} ({reason}); start it with "
            f"'mlflow server' or fix --tracking-uri"
        ) from None


@contextlib.contextmanager
def using_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at ``uri`` for a block, then restore the previous setting (a
    server's user and password go to MLflow's environment variables, not into the URI)."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_credentials(uri))
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before if previous is None else previous)


def _param_value(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v) if isinstance(v, list | dict | tuple) else str(v)
    return text[:PARAM_LIMIT]


def trials_view_state() -> dict[str, Any]:
    """The runs table `automl-cnn ui` opens: ranked by the trials' final validation accuracy,
    grouped by dataset (a search's parent run sits with its trials, other data apart), with the
    accuracy, parameter count, FLOPs and outcome columns first. MLflow nests child runs under
    their parent only in creation order, so a ranking needs the grouping to keep a search together."""
    order = ("attributes.`Run Name`", *TRIALS_COLUMNS)  # the name column is always shown: wide enough
    widths = (280, 150, 150, 100, 120, 150, 260, 200)
    return {
        "orderByKey": f"metrics.`{TRIALS_SORT}`",
        "orderByAsc": False,
        "groupBy": {"aggregateFunction": "max", "groupByKeys": [{"mode": "dataset", "groupByData": "dataset"}]},
        "selectedColumns": list(TRIALS_COLUMNS),
        "columnOrder": list(order),
        "columnWidths": dict(zip(order, widths, strict=True)),
    }


def dataset_input(bundle: DataBundle) -> DatasetInput:
    """The search's data as an MLflow dataset (the runs table's Dataset column): its name, the data
    fingerprint as digest, where it came from, the split sizes and preprocessing as its profile,
    and what a network takes as its schema."""
    images, (c, h, w) = bundle.images, bundle.input_shape
    source: dict[str, Any]
    if images.paths:  # image files: the folder holding them
        source_type, source = "local", {"uri": os.path.commonpath([os.path.abspath(p) for p in images.paths])}
    else:  # built-in, torchvision or arrays: named, not a file we know
        source_type, source = "code", {"tags": {"automl_cnn.data": bundle.name}}
    sizes = {split: sum(per_class) for split, per_class in bundle.counts().items()}
    profile = {
        "images": len(images.y),
        "classes": bundle.num_classes,
        **{f"{split}_images": n for split, n in sizes.items()},
        "split_seed": bundle.split_seed,
        "split_fractions": list(bundle.fractions),
        "input_shape": f"{c}x{h}x{w} (channels x height x width)",
        "normalisation_mean": [round(m, 6) for m in bundle.mean],
        "normalisation_std": [round(s, 6) for s in bundle.std],
        "class_weights": bundle.class_weights is not None,
        "streamed_from_disk": images.streamed,
    }
    schema = [
        {"name": "image", "type": f"{images.x.dtype} tensor {c}x{h}x{w}"},
        {"name": "label", "type": f"int64 class index (0-{bundle.num_classes - 1})"},
    ]
    dataset = Dataset(
        name=bundle.name,
        digest=bundle.fingerprint(),
        source_type=source_type,
        source=json.dumps(source),
        schema=json.dumps({"mlflow_colspec": schema}),
        profile=json.dumps(profile),
    )
    return DatasetInput(dataset, [InputTag(DATA_CONTEXT_TAG, "train")])


class MlflowTracker:
    """The search's MLflow client. ``uri`` is the store it talks to: a server's URI without the user
    and password (they travel in ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``); ``shown_uri`` is
    the one to print or record, any password masked."""

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        # MLflow prints a "View run ... at: URL" line per finished run against a server: one per
        # trial through our own output; the summary and `automl-cnn ui` give the address instead
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        check_reachable(tracking_uri)
        self.uri = tracking_credentials(tracking_uri)
        self.shown_uri = mask_password(self.uri) or ""
        self._client = MlflowClient(self.uri)
        self._writer: BatchWriter | None = None  # while batched(): writes go through it
        self._pool: RunPool | None = None  # while batched(runs_ahead=...): runs opened ahead
        self.experiment_id = self._experiment(experiment)
        self._dataset: tuple[DataBundle, DatasetInput] | None = None

    @property
    def client(self) -> MlflowClient:
        """The MLflow client, for reads and writes the tracker does not wrap: while writes are
        batched, everything queued is written first (a read sees what was logged before it)."""
        if self._writer is not None:
            self._writer.flush()
        return self._client

    @contextlib.contextmanager
    def batched(self, runs_ahead: int = 0, parent: str | None = None) -> Iterator[None]:
        """Within the block, params, metrics, tags, dataset inputs and run endings are queued and
        written by a background thread (:mod:`automl_cnn.services.tracking_writer`); leaving it
        writes everything queued, also on an exception. A failed write is raised by a later call,
        or on leaving (logged instead when the block is left by another exception). With
        ``runs_ahead``, that many child runs of ``parent`` are kept open ahead for
        :meth:`start_run` (:mod:`automl_cnn.services.run_pool`); those left are deleted on leaving."""
        if self._writer is not None:  # already batched: one writer
            yield
            return
        writer = self._writer = BatchWriter(self._client)
        if runs_ahead > 0 and parent is not None:
            self._pool = RunPool(writer, self.experiment_id, parent, runs_ahead)
        failed = True
        try:
            yield
            failed = False
        finally:
            self._writer, pool, self._pool = None, self._pool, None
            try:
                try:
                    writer.close()
                finally:  # the runs opened ahead and not taken are deleted, whatever the writer raised
                    if pool is not None:
                        pool.close(self._client)
            except (TrackingWriteError, MlflowException) as exc:
                if not failed:
                    raise
                log.error("%s", exc)  # the block's own exception goes on

    def flush(self) -> None:
        """Write everything queued so far (nothing to do unless batched)."""
        if self._writer is not None:
            self._writer.flush()

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None and found.lifecycle_stage == "deleted":
            raise UserInputError(
                f"MLflow experiment {name!r} is deleted; restore it in the UI or pass --experiment NEW_NAME"
            )
        if found is None:
            root = local_artifact_root(self.uri)
            location = (root / name).as_uri() if root is not None else None
            found = self.client.get_experiment(self.client.create_experiment(name, artifact_location=location))
        self._tag_experiment(found)
        return str(found.experiment_id)

    def _tag_experiment(self, experiment: Experiment) -> None:
        """Make the MLflow UI show the experiment as model training, with the trials view saved in
        it. A kind or view already there (one the user changed) is left as it is."""
        created = int(experiment.creation_time or 0)
        view = {"name": "automl-cnn trials", "createdAt": created, "updatedAt": created}
        wanted = {
            EXPERIMENT_KIND_TAG: MODEL_TRAINING,
            SAVED_VIEW_TAG + TRIALS_VIEW: json.dumps({**view, "state": json.dumps(trials_view_state())}),
        }
        for key, value in wanted.items():
            if key in experiment.tags:
                continue
            try:
                self.client.set_experiment_tag(experiment.experiment_id, key, value)
            except MlflowException as exc:  # e.g. no permission on a shared server: the runs still log
                log.warning("cannot tag MLflow experiment %s with %s: %s", experiment.name, key, exc.message)

    def log_dataset(self, run_id: str, bundle: DataBundle) -> None:
        """Record ``bundle`` as the run's dataset input; the entity is built once per search."""
        if self._dataset is None or self._dataset[0] is not bundle:
            self._dataset = (bundle, dataset_input(bundle))
        if self._writer is not None:
            self._writer.log_inputs(run_id, [self._dataset[1]])
        else:
            self._client.log_inputs(run_id, datasets=[self._dataset[1]])

    # -- runs ----------------------------------------------------------------------------------
    def start_run(self, name: str, params: dict[str, Any], tags: dict[str, str], parent: str | None = None) -> str:
        if parent is not None:
            tags = {**tags, "mlflow.parentRunId": parent}
        opened = self._pool.take() if self._pool is not None and parent == self._pool.parent else None
        if opened is not None:  # named and tagged in its first queued batch
            self.set_tags(opened, {**tags, MLFLOW_RUN_NAME: name})
            run_id = opened
        else:
            run_id = str(self._client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id)
        self.log_params(run_id, params)
        return run_id

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        items = [Param(str(k), _param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self._log_batch(run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        ts = _now_ms()
        items = [Metric(k, float(v), ts, step) for k, v in metrics.items() if v is not None and v == v]  # no NaN
        if items:
            self._log_batch(run_id, metrics=items)

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
                "data_fraction": r.fraction,
            },
            step=r.epoch,
        )

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        self._log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def _log_batch(
        self,
        run_id: str,
        params: list[Param] | None = None,
        metrics: list[Metric] | None = None,
        tags: list[RunTag] | None = None,
    ) -> None:
        if self._writer is not None:
            self._writer.log_batch(run_id, params or [], metrics or [], tags or [])
        else:
            self._client.log_batch(run_id, metrics=metrics or [], params=params or [], tags=tags or [])

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        if self._writer is not None:
            self._writer.end_run(run_id, status)
        else:
            self._client.set_terminated(run_id, status=status)

    def log_text(self, run_id: str, text: str, path: str) -> None:
        self.client.log_text(run_id, text, path)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def default_tracking_uri() -> str:
    """The MLflow store used when none is given: ``mlflow.db`` in the working directory."""
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"
