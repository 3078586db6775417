"""A trial worker: holds one Trainer at a time and runs it one epoch per call.

Plain Python: :mod:`automl_cnn.services.ray_executor` runs it as a Ray actor and
:mod:`automl_cnn.services.inprocess` calls it directly. Every call returns a
:class:`~automl_cnn.training.messages.JobResult`; failures inside a trial come back with ``error``
set instead of raising, so the driver records them and goes on. An epoch that runs out of memory
backs off to half the batch size inside the :class:`Trainer` (the same on Ray and in-process);
its :class:`~automl_cnn.model.measures.EpochResult` says the batch size it trained with.
"""

from __future__ import annotations

import gc
import os
import platform
import traceback
from typing import Any

import torch

from automl_cnn.errors import TrialError
from automl_cnn.model.architecture import Candidate
from automl_cnn.training.messages import JobResult, JobSpec
from automl_cnn.training.oom import first_line, is_out_of_memory
from automl_cnn.training.trainer import Trainer


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TrialError):
        return str(exc)
    if is_out_of_memory(exc):  # outside an epoch (building the model, moving the data)
        return "out of memory: " + first_line(exc)
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {os.path.basename(last[0].filename)}:{last[0].lineno})" if last else ""
    return f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}{where}"


class TrialWorker:
    """Runs one job at a time for an executor.

    Starting a worker freezes the process's heap (``gc.freeze()``): what is alive then (modules,
    the data) is never scanned by the cyclic collector again, so the collection each release runs
    walks only what jobs made. In a Ray actor that is the whole process; in-process (the
    in-process executor, the Python API) it freezes the caller's heap too. Reference counting
    still frees every frozen object; only cycles among them are never collected.
    """

    def __init__(self, threads: int | None = None, device: str | None = None) -> None:
        self.threads = max(1, int(threads)) if threads else torch.get_num_threads()
        torch.set_num_threads(self.threads)
        self.device = device
        self.trainer: Trainer | None = None
        self.job: str | None = None
        self.outputs = False  # the current job's last epoch returns its Outputs
        # what is alive now (modules, the data) lives as long as the worker: the collection at
        # each release then scans only what jobs made (0.2-0.4 s a call otherwise, twice a trial)
        gc.freeze()

    def info(self) -> dict[str, Any]:
        """Where this worker runs: host, process, device."""
        dev = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        return {"host": platform.node(), "pid": os.getpid(), "device": dev, "threads": self.threads}

    def begin(self, spec: JobSpec) -> JobResult:
        """Start a job (a trial or a final fit) and run its first epoch (or the next one after
        ``spec.checkpoint``). ``spec.threads``: CPU threads for this job (default: this worker's
        share), at most the node's cores: a final fit takes the cores idle search workers leave."""
        self.release()
        self._use_threads(spec.threads or self.threads)
        self.job = spec.job
        try:
            candidate = Candidate.from_dict(spec.candidate)
            self.trainer = Trainer(candidate, spec.data, spec.seed, self.device, average=spec.average)
            self.outputs = spec.outputs
            self.trainer.use_backoffs(spec.oom_backoffs)
            if spec.checkpoint is not None:  # holds the batch size it trained with
                self.trainer.restore(spec.checkpoint)
            elif spec.init_weights is not None:  # weights only: a fresh optimiser and schedule
                self.trainer.start_from(spec.init_weights)
        except Exception as exc:
            self.release()
            return JobResult.failed(spec.job, _reason(exc))
        return self.step(spec.want_checkpoint, spec.fraction)

    @staticmethod
    def _use_threads(threads: int) -> None:
        torch.set_num_threads(max(1, min(threads, os.cpu_count() or threads)))

    def step(self, want_checkpoint: bool = False, fraction: float = 1.0, threads: int | None = None) -> JobResult:
        """Run the next epoch of the current job, on ``fraction`` of its training split;
        ``threads``: CPU threads from this epoch on (default: as before; at most the node's
        cores), for a job left running alone on cores other jobs freed."""
        if threads:
            self._use_threads(threads)
        job, trainer = self.job, self.trainer
        if trainer is None:
            return JobResult.failed(job, "no job is running on this worker")
        try:
            epoch = trainer.run_epoch(fraction)
        except Exception as exc:
            self.release()
            return JobResult.failed(job, _reason(exc))
        checkpoint = trainer.checkpoint() if want_checkpoint else None
        outputs = trainer.outputs() if trainer.done and self.outputs else None
        return JobResult(job=job, epoch=epoch, done=trainer.done, checkpoint=checkpoint, outputs=outputs)

    def weights(self) -> JobResult:
        """The current job's network weights (CPU tensors), with its :class:`Outputs`."""
        if self.trainer is None:
            return JobResult.failed(self.job, "no job is running on this worker")
        outputs = self.trainer.outputs()
        return JobResult(job=self.job, weights=outputs.weights, outputs=outputs)

    def release(self) -> None:
        """Drop the current job and give its memory back (GPU memory too)."""
        had_job = self.job is not None  # begin() sets it before building the Trainer, which may fail
        self.trainer = None
        self.job = None
        if had_job:
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
