"""Runs jobs on a pool of Ray actors, one epoch per call, so the driver decides between epochs.

Each actor reserves ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs (a fraction packs
several trials on one GPU). The data reaches workers through Ray's object store: one ``put``
by the driver, read zero-copy by every worker on the same node and copied once per other node.
A worker process that dies comes back as a ``JobResult`` with ``lost=True`` for its job and is
replaced by a fresh actor; the search goes on. It implements
:class:`~automl_cnn.services.executor.Executor`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError, WorkerCrashedError

from automl_cnn.data.bundle import TrainData
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


class RayExecutor:
    def __init__(
        self,
        n_workers: int,
        cpus_per_trial: float = 1.0,
        gpus_per_trial: float = 0.0,
        device: str | None = None,
    ) -> None:
        self.cpus = cpus_per_trial
        self.gpus = gpus_per_trial
        self.device = device if device else ("cpu" if gpus_per_trial == 0 else None)
        self._cls = ray.remote(RayTrialWorker)
        self.slots = [self._new_slot() for _ in range(n_workers)]
        self._by_job: dict[str, _Slot] = {}

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
        return sum(1 for s in self.slots if s.job is None)

    @property
    def jobs(self) -> list[str]:
        return list(self._by_job)

    def submit(self, spec: JobSpec) -> None:
        slot = next(s for s in self.slots if s.job is None)
        slot.job = spec.job
        slot.future = slot.actor.begin_with.remote(dataclasses.replace(spec, data=None), spec.data)
        self._by_job[spec.job] = slot

    def advance(self, job: str, want_checkpoint: bool = False) -> None:
        slot = self._by_job[job]
        slot.future = slot.actor.step.remote(want_checkpoint)

    def request_weights(self, job: str) -> None:
        slot = self._by_job[job]
        slot.future = slot.actor.weights.remote()

    def release(self, job: str) -> None:
        slot = self._by_job.pop(job, None)
        if slot is None:
            return
        # a step still running for this job finishes first (the actor runs calls in order);
        # its result is dropped with the future
        slot.actor.release.remote()
        slot.job = None
        slot.future = None

    # -- results -------------------------------------------------------------------------------
    def wait(self, timeout: float) -> list[JobResult]:
        """Results ready within ``timeout`` seconds (maybe none)."""
        pending = {s.future: s for s in self.slots if s.future is not None}
        if not pending:
            return []
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=timeout)
        if ready:  # collect whatever else finished meanwhile
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
        out = []
        for ref in ready:
            slot = pending[ref]
            slot.future = None
            out.append(self._result(slot, ref))
        return out

    def _result(self, slot: _Slot, ref: Any) -> JobResult:
        job = slot.job
        try:
            return ray.get(ref)  # type: ignore[no-any-return]
        except (RayActorError, WorkerCrashedError) as exc:
            log.warning("worker for %s died: %s", job, exc)
            self._replace(slot)
            return JobResult.failed(job, "worker process died during the trial", lost=True)
        except RayTaskError as exc:  # an exception outside the worker's own handling
            return JobResult.failed(job, f"{exc.cause.__class__.__name__}: {exc.cause}"[:400])

    def _replace(self, slot: _Slot) -> None:
        with contextlib.suppress(Exception):  # already gone
            ray.kill(slot.actor, no_restart=True)
        fresh = self._new_slot()
        slot.actor, slot.info, slot.info_future = fresh.actor, {}, fresh.info_future
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
            except (GetTimeoutError, RayActorError):
                return {}
        return slot.info

    def shutdown(self) -> None:
        for slot in self.slots:
            with contextlib.suppress(Exception):
                ray.kill(slot.actor, no_restart=True)
        self.slots = []
        self._by_job = {}
