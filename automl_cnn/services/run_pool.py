"""Trial runs opened ahead of time, so a launch takes an open MLflow run instead of waiting on
``create_run``.

Opening a trial's run was most of a launch at cluster scale (about 80 ms on a local store and
480 ms on an ``mlflow server`` sharing the driver's machine; docs/benchmarks.md). With many
workers the search opens a few runs ahead in the tracking writer's thread
(:mod:`automl_cnn.services.tracking_writer`), named :data:`RESERVED`, children of the search's
run; a launch takes one, and its name, tags and params follow in the trial's first queued batch.
An unused run is deleted when the search leaves; one a killed driver left is deleted by the
resume's recovery. A run's start time is when it was opened, at most a few launches early: the
pool is used only where launches are frequent (:func:`runs_ahead`).
"""

from __future__ import annotations

import collections
import threading

from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from automl_cnn.services.tracking_writer import BatchWriter

RESERVED = "(opened ahead for a trial)"
POOL_FROM_WORKERS = 16  # below this many workers a launch is seconds apart: no pool


def runs_ahead(workers: int) -> int:
    """How many trial runs to keep open ahead for ``workers`` workers: none below
    :data:`POOL_FROM_WORKERS` (run start times stay exact), then one per 16 workers, at most 16."""
    return 0 if workers < POOL_FROM_WORKERS else min(16, workers // 16)


class RunPool:
    """Up to ``size`` open runs under ``parent``, refilled in ``writer``'s thread as they are taken."""

    def __init__(self, writer: BatchWriter, experiment_id: str, parent: str, size: int) -> None:
        self.writer, self.experiment_id, self.parent = writer, experiment_id, parent
        self._open: collections.deque[str] = collections.deque()
        self._lock = threading.Lock()
        for _ in range(size):
            self._order()

    def take(self) -> str | None:
        """An open run's id (another is ordered in its place), or None if none is open yet."""
        with self._lock:
            run_id = self._open.popleft() if self._open else None
        if run_id is not None:
            self._order()
        return run_id

    def close(self, client: MlflowClient) -> int:
        """Delete the runs still open (call after the writer is flushed); how many there were."""
        with self._lock:
            left, self._open = list(self._open), collections.deque()
        for run_id in left:
            client.delete_run(run_id)
        return len(left)

    def _order(self) -> None:
        self.writer.call(f"pool:{self.parent}", self._open_one)

    def _open_one(self, client: MlflowClient) -> None:  # in the writer's thread
        run = client.create_run(self.experiment_id, run_name=RESERVED, tags={MLFLOW_PARENT_RUN_ID: self.parent})
        with self._lock:
            self._open.append(str(run.info.run_id))
