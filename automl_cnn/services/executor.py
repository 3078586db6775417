"""The executor protocol: the handful of calls the driver and the final fit make to run jobs.

A job is a trial or a final fit, run one epoch per call so the driver decides between epochs
(report, prune, checkpoint, stop). Two implementations: :class:`~automl_cnn.services.ray_executor.
RayExecutor` (a pool of Ray actors, local or on a cluster) and :class:`~automl_cnn.services.
inprocess.InProcessExecutor` (the same :class:`~automl_cnn.training.worker.TrialWorker` called
directly: for tests, for ``--workers 1`` debugging with ``pdb``, and for a machine without Ray).
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from automl_cnn.training.messages import JobResult, JobSpec


class Executor(Protocol):
    @property
    def free(self) -> int:
        """Slots with no job whose worker has started."""
        ...

    @property
    def jobs(self) -> list[str]:
        """The jobs holding a slot."""
        ...

    def put(self, data: Any) -> Any:
        """Make ``data`` (a TrainData) available to every worker; returns what a JobSpec carries."""
        ...

    def threads_for(self, concurrent: int) -> int:
        """CPU threads for each of ``concurrent`` jobs when they are all that runs."""
        ...

    def submit(self, spec: JobSpec) -> None:
        """Start a job on a free slot: it runs its first epoch (or the one after its checkpoint)."""
        ...

    def advance(
        self, job: str, want_checkpoint: bool = False, fraction: float = 1.0, threads: int | None = None
    ) -> None:
        """Run the job's next epoch, on ``fraction`` of its training split; ``threads``: its CPU
        threads from then on (default: unchanged)."""
        ...

    def request_weights(self, job: str) -> None:
        """Ask for the job's trained weights (the next result carries them)."""
        ...

    def release(self, job: str) -> None:
        """Drop the job and free its slot; a result still on its way is discarded, and an epoch
        still running is cut short (the slot does not wait for it)."""
        ...

    def wait(self, timeout: float) -> list[JobResult]:
        """Results ready within ``timeout`` seconds (maybe none)."""
        ...

    def where(self, job: str) -> dict[str, Any]:
        """Host, pid, node and device of the worker running ``job`` (empty if unknown)."""
        ...

    def waiting(self) -> str | None:
        """What the pool waits for while none of its workers can start (``None`` when some can)."""
        ...

    def shutdown(self) -> None: ...


def cpu_count() -> int:
    """The CPU cores this process may use (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1
