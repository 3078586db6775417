"""Runs jobs on a pool of Ray actors, one epoch per call, so the driver decides between epochs.

Each actor reserves ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs (a fraction packs
several trials on one GPU). The data reaches workers through Ray's object store: one ``put``
by the driver, read zero-copy by every worker on the same node and copied once per other node.
A worker process that dies comes back as a ``JobResult`` with ``lost=True`` for its job and is
replaced by a fresh actor; the search goes on. It implements
:class:`~automl_cnn.services.executor.Executor`.

Jobs go only to actors Ray has placed (started on a node). An actor that cannot be placed yet
(its node was lost, or an autoscaling cluster has still to add one) waits without holding a
job, and is used as soon as it starts, on a host that rejoins for instance. While no actor at
all is placed the executor says so (:meth:`RayExecutor.waiting`), and after
``placement_timeout`` seconds it raises :class:`~automl_cnn.errors.ResourcesUnavailable`
rather than wait for ever.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import (
    GetTimeoutError,
    NodeDiedError,
    ObjectLostError,
    RayActorError,
    RayTaskError,
    WorkerCrashedError,
)

from automl_cnn.data.bundle import TrainData
from automl_cnn.errors import ResourcesUnavailable
from automl_cnn.training.messages import JobResult, JobSpec
from automl_cnn.training.worker import TrialWorker

log = logging.getLogger(__name__)


class RayTrialWorker(TrialWorker):
    """The trial worker as an actor: the job's data travels as a top-level argument, so Ray
    resolves its object reference (one zero-copy read per node) before the call."""

    def info(self) -> dict[str, Any]:
        return {**super().info(), "node_id": ray.get_runtime_context().get_node_id()}

    def begin_with(self, spec: JobSpec, data: TrainData) -> JobResult:
        return self.begin(dataclasses.replace(spec, data=data))


@dataclass
class _Slot:
    actor: Any
    job: str | None = None
    future: Any = None
    info: dict[str, Any] = field(default_factory=dict)
    info_future: Any = None
    placed: bool = False  # Ray started the actor on a node
    since: float = field(default_factory=time.monotonic)
    step_started: float = 0.0  # when the call in flight was made
    last_step: float = 0.0  # seconds the last answered call took


# What Ray raises when a worker's process or host is gone. ``ObjectLostError`` covers a call
# that finished just before its host was lost: its answer lived in that host's object store.
WORKER_LOST = (RayActorError, WorkerCrashedError, NodeDiedError, ObjectLostError)


def _lost_what(exc: BaseException) -> str:
    """What a trial record says was lost: the answer (with the node that held it), the node, or
    the worker process."""
    if isinstance(exc, ObjectLostError):
        return "trial's answer was lost with its worker node"
    if isinstance(exc, NodeDiedError):
        return "worker node was lost"
    return "worker process died"


REPLACE_AFTER_S = 3.0  # a call in flight this long (or after one this long) is cut short on release


class RayExecutor:
    def __init__(
        self,
        n_workers: int,
        cpus_per_trial: float = 1.0,
        gpus_per_trial: float = 0.0,
        device: str | None = None,
        placement_timeout: float = 300.0,
    ) -> None:
        self.placement_timeout = placement_timeout
        self.cpus = cpus_per_trial
        self.gpus = gpus_per_trial
        self.device = device if device else ("cpu" if gpus_per_trial == 0 else None)
        self._cls = ray.remote(RayTrialWorker)
        self.slots = [self._new_slot() for _ in range(n_workers)]
        self._by_job: dict[str, _Slot] = {}
        self._queued: list[JobSpec] = []  # jobs waiting for an actor to start

    def _new_slot(self) -> _Slot:
        actor: Any = self._cls.options(  # type: ignore[attr-defined]
            num_cpus=self.cpus, num_gpus=self.gpus, scheduling_strategy="SPREAD", max_concurrency=1
        ).remote(threads=max(1, round(self.cpus)), device=self.device)
        return _Slot(actor=actor, info_future=actor.info.remote())

    def put(self, data: TrainData) -> Any:
        return ray.put(data)

    # -- submitting ----------------------------------------------------------------------------
    def threads_for(self, concurrent: int) -> int:
        """CPU threads for each of ``concurrent`` jobs when they are all that runs: the pool's
        CPUs shared among them (a lone final fit uses every core the search used)."""
        return max(1, int(self.cpus * len(self.slots) // max(1, min(concurrent, len(self.slots)))))

    @property
    def free(self) -> int:
        self._poll_placement()
        self._dispatch()
        return max(0, sum(1 for s in self.slots if s.job is None and s.placed) - len(self._queued))

    def _poll_placement(self, timeout: float = 0.0) -> None:
        """Mark the actors Ray has started (their ``info`` call answered) as placed."""
        waiting = {s.info_future: s for s in self.slots if not s.placed and s.info_future is not None}
        if not waiting:
            return
        ready, _ = ray.wait(list(waiting), num_returns=len(waiting), timeout=timeout)
        for ref in ready:
            slot = waiting[ref]
            try:
                slot.info = dict(ray.get(ref))
                slot.placed = True
            except WORKER_LOST:  # died while starting: try again
                self._replace(slot)

    def waiting(self) -> str | None:
        """What the pool waits for, when no actor of it is placed and some have waited a while."""
        unplaced = [s for s in self.slots if not s.placed]
        if not unplaced or any(s.placed for s in self.slots):
            return None
        waited = time.monotonic() - min(s.since for s in unplaced)
        if waited < 10:  # actors take a few seconds to start on a busy node
            return None
        free, total = ray.available_resources(), ray.cluster_resources()
        has = ", ".join(f"{free.get(k, 0):g} of {total.get(k, 0):g} {k}" for k in ("CPU", "GPU"))
        return (
            f"waiting for resources: {len(unplaced)} worker(s) need {self.cpus:g} CPU and "
            f"{self.gpus:g} GPU each; the cluster has {has} free"
        )

    def _check_starved(self) -> None:
        unplaced = [s for s in self.slots if not s.placed]
        if not unplaced or any(s.placed for s in self.slots):
            return
        waited = time.monotonic() - min(s.since for s in unplaced)
        if waited > self.placement_timeout:
            what = self.waiting() or "no worker could be placed"
            raise ResourcesUnavailable(
                f"no worker could be placed on the Ray cluster for {waited:.0f} s ({what.split(': ', 1)[-1]}); "
                "add nodes, lower --cpus-per-trial/--gpus-per-trial, or wait longer with --wait-for-resources"
            )

    @property
    def jobs(self) -> list[str]:
        return [*self._by_job, *(spec.job for spec in self._queued)]

    def submit(self, spec: JobSpec) -> None:
        """Start ``spec`` on a started actor; with none free (a retry after its node was lost)
        it queues until one starts."""
        slot = next((s for s in self.slots if s.job is None and s.placed), None)
        if slot is None:
            self._queued.append(spec)
            return
        slot.job = spec.job
        slot.future = slot.actor.begin_with.remote(dataclasses.replace(spec, data=None), spec.data)
        slot.step_started, slot.last_step = time.monotonic(), 0.0
        self._by_job[spec.job] = slot

    def _dispatch(self) -> None:
        while self._queued and any(s.job is None and s.placed for s in self.slots):
            self.submit(self._queued.pop(0))

    def advance(
        self, job: str, want_checkpoint: bool = False, fraction: float = 1.0, threads: int | None = None
    ) -> None:
        slot = self._by_job[job]
        slot.future = slot.actor.step.remote(want_checkpoint, fraction, threads)
        slot.step_started = time.monotonic()

    def request_weights(self, job: str) -> None:
        slot = self._by_job[job]
        slot.future = slot.actor.weights.remote()

    def release(self, job: str) -> None:
        self._queued = [spec for spec in self._queued if spec.job != job]
        slot = self._by_job.pop(job, None)
        if slot is None:
            return
        busy = slot.future is not None and not ray.wait([slot.future], timeout=0)[0]
        long = max(time.monotonic() - slot.step_started, slot.last_step) >= REPLACE_AFTER_S
        slot.job = None
        slot.future = None
        if busy and long:
            # The actor runs calls in order: a long step still running would hold it until its
            # epoch ends, and the next job (the final fit, when the time budget stops the search)
            # would queue behind an epoch whose result is dropped. A fresh actor starts in about
            # 2 s here and frees the GPU memory at once; a short epoch is cheaper to wait for.
            self._replace(slot)
        else:
            slot.actor.release.remote()

    # -- results -------------------------------------------------------------------------------
    def wait(self, timeout: float) -> list[JobResult]:
        """Results ready within ``timeout`` seconds (maybe none)."""
        self._poll_placement()
        self._dispatch()
        pending = {s.future: s for s in self.slots if s.future is not None}
        starting = [s.info_future for s in self.slots if not s.placed and s.info_future is not None]
        if not pending:
            self._poll_placement(timeout=timeout if starting else 0.0)  # returns when one starts
            self._dispatch()
            self._check_starved()
            return []
        ready, _ = ray.wait(list(pending) + starting, num_returns=1, timeout=timeout)
        ready = [ref for ref in ready if ref in pending]
        if ready:  # collect whatever else finished meanwhile
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
        out = []
        for ref in ready:
            slot = pending[ref]
            slot.future = None
            slot.last_step = time.monotonic() - slot.step_started
            out.append(self._result(slot, ref))
        return out

    def _result(self, slot: _Slot, ref: Any) -> JobResult:
        job = slot.job
        try:
            return ray.get(ref)  # type: ignore[no-any-return]
        except WORKER_LOST as exc:
            what = _lost_what(exc)
            log.warning("%s for %s: %s", what, job, exc)
            self._replace(slot)
            return JobResult.failed(job, f"{what} during the trial", lost=True)
        except RayTaskError as exc:  # an exception outside the worker's own handling
            return JobResult.failed(job, f"{exc.cause.__class__.__name__}: {exc.cause}"[:400])

    def _replace(self, slot: _Slot) -> None:
        with contextlib.suppress(Exception):  # already gone
            ray.kill(slot.actor, no_restart=True)
        fresh = self._new_slot()
        slot.actor, slot.info, slot.info_future = fresh.actor, {}, fresh.info_future
        slot.placed, slot.since = False, fresh.since
        if slot.job is not None:
            self._by_job.pop(slot.job, None)
        slot.job = None

    def where(self, job: str) -> dict[str, Any]:
        """Host, pid, node and device of the worker running ``job`` (empty if unknown)."""
        slot = self._by_job.get(job)
        if slot is None:
            return {}
        if not slot.info and slot.info_future is not None:
            try:
                slot.info = dict(ray.get(slot.info_future, timeout=30))
            except (GetTimeoutError, *WORKER_LOST):
                return {}
        return slot.info

    def shutdown(self) -> None:
        for slot in self.slots:
            with contextlib.suppress(Exception):
                ray.kill(slot.actor, no_restart=True)
        self.slots = []
        self._by_job = {}
        self._queued = []
