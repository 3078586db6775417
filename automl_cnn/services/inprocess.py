"""The in-process executor: the same trial workers as the Ray pool, called directly.

Every call runs when :meth:`wait` is asked for results, slot by slot, in this process: no Ray,
no pickling, exceptions and breakpoints where you can see them. It is what the driver's unit
tests run on, and a way to debug a space (``automl-cnn search --executor inprocess``).
:meth:`lose_worker` stands in for a worker process that dies, as a Ray actor can.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from automl_cnn.training.messages import JobResult, JobSpec
from automl_cnn.training.worker import TrialWorker

LOST = "worker process died during the trial"


@dataclass
class _Slot:
    worker: TrialWorker
    job: str | None = None
    call: Callable[[], JobResult] | None = None
    dead: bool = False  # its worker died: the next call answers as a lost worker's


class InProcessExecutor:
    def __init__(self, n_workers: int = 1, threads: int = 1, device: str | None = "cpu") -> None:
        self.threads, self.device = threads, device
        self.slots = [_Slot(self._worker()) for _ in range(n_workers)]

    def _worker(self) -> TrialWorker:
        return TrialWorker(threads=self.threads, device=self.device)

    def _slot(self, job: str) -> _Slot:
        return next(s for s in self.slots if s.job == job)

    @property
    def free(self) -> int:
        return sum(1 for s in self.slots if s.job is None)

    @property
    def jobs(self) -> list[str]:
        return [s.job for s in self.slots if s.job is not None]

    def put(self, data: Any) -> Any:
        return data

    def threads_for(self, concurrent: int) -> int:
        return max(1, self.threads * len(self.slots) // max(1, min(concurrent, len(self.slots))))

    def submit(self, spec: JobSpec) -> None:
        slot = next(s for s in self.slots if s.job is None)
        slot.job = spec.job
        slot.call = lambda: slot.worker.begin(spec)

    def advance(
        self, job: str, want_checkpoint: bool = False, fraction: float = 1.0, threads: int | None = None
    ) -> None:
        slot = self._slot(job)
        slot.call = lambda: slot.worker.step(want_checkpoint, fraction, threads)

    def request_weights(self, job: str) -> None:
        slot = self._slot(job)
        slot.call = slot.worker.weights

    def release(self, job: str) -> None:
        for slot in self.slots:
            if slot.job == job:
                slot.worker.release()
                slot.job, slot.call = None, None

    def wait(self, timeout: float) -> list[JobResult]:
        out = []
        for slot in self.slots:
            if slot.call is None:
                continue
            call, slot.call = slot.call, None
            if slot.dead:  # as on Ray: the call fails, a fresh worker takes the free slot
                out.append(JobResult.failed(slot.job, LOST, lost=True))
                slot.worker, slot.job, slot.dead = self._worker(), None, False
            else:
                out.append(call())
        return out

    def where(self, job: str) -> dict[str, Any]:
        return {**self._slot(job).worker.info(), "executor": "inprocess"} if job in self.jobs else {}

    def waiting(self) -> str | None:
        return None  # its workers are this process

    def lose_worker(self, job: str) -> None:
        """The process running ``job`` dies: its next call fails as a lost worker's does on Ray
        (the job may be retried from its checkpoint), and a fresh worker takes the slot."""
        self._slot(job).dead = True

    def shutdown(self) -> None:
        for slot in self.slots:
            slot.worker.release()
        self.slots = []
