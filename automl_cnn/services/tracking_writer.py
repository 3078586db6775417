"""MLflow writes off the search's decision path: a background thread that batches them.

While the driver decides after every epoch of every trial, each MLflow call it made was a round
trip on its path (5-6 a launch, 1 an epoch, 3 an ending; over HTTP tens of ms each). With the
writer, :class:`~automl_cnn.services.tracking.MlflowTracker` queues params, metrics, tags,
dataset inputs and run endings; one thread sends them in order, a run's queued params, metrics
and tags merged into as few ``log_batch`` calls as MLflow's limits allow. What is logged is the
same; only when it reaches the store changes.

:meth:`BatchWriter.flush` waits until everything queued so far is written. A write that fails
is never dropped in silence: it is logged, and the first failure (with a count of any after it)
is raised by the next call into the writer (a queue, a flush or the close), as the call itself
raised it before.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlflow.entities import DatasetInput, Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from automl_cnn.services.hard_exit import register

log = logging.getLogger(__name__)

# MLflow's limits for one log_batch call
MAX_METRICS, MAX_PARAMS, MAX_TAGS, MAX_ENTITIES = 1000, 100, 100, 1000


class TrackingWriteError(RuntimeError):
    """A queued MLflow write failed (the message names the run and the store's error)."""


@dataclass
class _Batch:
    """A run's queued params, metrics and tags (tags by key: the last value set wins)."""

    params: list[Param] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=list)
    tags: dict[str, RunTag] = field(default_factory=dict)

    def empty(self) -> bool:
        return not (self.params or self.metrics or self.tags)


# one queued item: ("batch", run_id, _Batch) or ("call", run_id, a function of the client)
_Item = tuple[str, str, Any]


class BatchWriter:
    """Writes queued MLflow operations from one background thread, in the order queued per run."""

    def __init__(self, client: MlflowClient) -> None:
        self.client = client
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._error: BaseException | None = None
        self._failed_run = ""
        self._failures = 0
        self.written = 0  # log_batch and other calls made (for tests and benchmarks)
        self._thread = threading.Thread(target=self._serve, name="mlflow-writer", daemon=True)
        self._thread.start()
        self._unregister = register(self.flush)  # a driver leaving by os._exit writes these first

    # -- the caller's side ---------------------------------------------------------------------
    def log_batch(
        self, run_id: str, params: Sequence[Param] = (), metrics: Sequence[Metric] = (), tags: Sequence[RunTag] = ()
    ) -> None:
        self.check()
        self._queue.put(("batch", run_id, _Batch(list(params), list(metrics), {t.key: t for t in tags})))

    def log_inputs(self, run_id: str, datasets: list[DatasetInput]) -> None:
        self.call(run_id, lambda client: client.log_inputs(run_id, datasets=datasets))

    def end_run(self, run_id: str, status: str) -> None:
        self.call(run_id, lambda client: client.set_terminated(run_id, status=status))

    def call(self, run_id: str, operation: Callable[[MlflowClient], Any]) -> None:
        """Queue any other write for ``run_id``, made after what was queued for it before."""
        self.check()
        self._queue.put(("call", run_id, operation))

    def flush(self) -> None:
        """Wait until everything queued so far is written; raise the first failure."""
        self._queue.join()
        self.check()

    def close(self) -> None:
        """Write what is queued, stop the thread, and raise the first failure."""
        self._unregister()
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self.check()

    def check(self) -> None:
        if self._error is not None:
            error, failures = self._error, self._failures
            self._error, self._failures = None, 0
            more = f" ({failures - 1} more writes failed after it)" if failures > 1 else ""
            raise TrackingWriteError(f"MLflow write for run {self._failed_run} failed: {error}{more}") from error

    # -- the thread ----------------------------------------------------------------------------
    def _serve(self) -> None:
        stop = False
        while not stop:
            items = [self._queue.get()]
            while True:  # take whatever else is queued: one batch per run
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is None for item in items)
            try:
                self._write([item for item in items if item is not None])
            except Exception as exc:  # a bug of ours, not a store's refusal: still the caller's to see
                self._failures += 1
                self._error = self._error or exc
            finally:
                for _item in items:
                    self._queue.task_done()

    def _write(self, items: list[_Item]) -> None:
        """Write ``items`` in order per run, merging each run's consecutive batches."""
        pending: dict[str, _Batch] = {}
        for kind, run_id, payload in items:
            if kind == "batch":
                merged = pending.setdefault(run_id, _Batch())
                merged.params += payload.params
                merged.metrics += payload.metrics
                merged.tags.update(payload.tags)
                continue
            self._send(run_id, pending.pop(run_id, None))  # what came before it, first
            self._guarded(run_id, functools.partial(payload, self.client))
        for run_id, batch in pending.items():
            self._send(run_id, batch)

    def _send(self, run_id: str, batch: _Batch | None) -> None:
        if batch is None or batch.empty():
            return
        params, metrics, tags = batch.params, batch.metrics, list(batch.tags.values())
        while params or metrics or tags:
            part_p, params = params[:MAX_PARAMS], params[MAX_PARAMS:]
            part_t, tags = tags[:MAX_TAGS], tags[MAX_TAGS:]
            room = MAX_ENTITIES - len(part_p) - len(part_t)
            part_m, metrics = metrics[: min(MAX_METRICS, room)], metrics[min(MAX_METRICS, room) :]
            self._guarded(run_id, functools.partial(self.client.log_batch, run_id, part_m, part_p, part_t))

    def _guarded(self, run_id: str, write: Callable[[], Any]) -> None:
        """Make one write; a failure is kept (the first) and counted, for the caller's thread."""
        try:
            write()
            self.written += 1
        except Exception as exc:
            self._failures += 1
            if self._error is None:
                log.error("MLflow write for run %s failed: %s", run_id, exc)
                self._error, self._failed_run = exc, run_id
