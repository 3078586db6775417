"""A trial worker: holds one Trainer at a time and runs it one epoch per call.

Plain Python, so it can be unit-tested directly; :mod:`automl_cnn.services.ray_executor` runs it as a Ray
actor. Every call returns a plain dict; failures inside a trial come back as
``{"error": reason}`` instead of raising, so the driver records them and goes on.
"""

from __future__ import annotations

import gc
import os
import platform
import traceback
from typing import Any

import torch

from automl_cnn.data.bundle import TrainData
from automl_cnn.errors import TrialError
from automl_cnn.model.architecture import Candidate
from automl_cnn.training.trainer import Trainer


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TrialError):
        return str(exc)
    if isinstance(exc, torch.OutOfMemoryError):
        return "out of memory: " + str(exc).splitlines()[0][:300]
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {os.path.basename(last[0].filename)}:{last[0].lineno})" if last else ""
    return f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}{where}"


class TrialWorker:
    def __init__(self, threads: int | None = None, device: str | None = None) -> None:
        self.threads = max(1, int(threads)) if threads else torch.get_num_threads()
        torch.set_num_threads(self.threads)
        self.device = device
        self.trainer: Trainer | None = None
        self.job: str | None = None

    def info(self) -> dict[str, Any]:
        """Where this worker runs: host, process, device."""
        try:
            import ray

            node = ray.get_runtime_context().get_node_id()
        except Exception:  # not inside Ray
            node = ""
        dev = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        return {"host": platform.node(), "pid": os.getpid(), "node_id": node, "device": dev, "threads": self.threads}

    def begin(
        self,
        job: str,
        candidate: dict[str, Any],
        seed: int,
        data: TrainData,
        checkpoint: bytes | None = None,
        want_checkpoint: bool = False,
        threads: int | None = None,
    ) -> dict[str, Any]:
        """Start a job (a trial or a final fit) and run its first epoch (or the next one after
        ``checkpoint``). ``threads``: CPU threads for this job (default: this worker's share),
        at most the node's cores: a final fit takes the cores idle search workers leave."""
        self.release()
        torch.set_num_threads(min(threads, os.cpu_count() or threads) if threads else self.threads)
        self.job = job
        try:
            self.trainer = Trainer(Candidate.from_dict(candidate), data, seed, self.device)
            if checkpoint is not None:
                self.trainer.restore(checkpoint)
        except Exception as exc:
            self.release()
            return {"job": job, "error": _reason(exc)}
        return self.step(want_checkpoint)

    def step(self, want_checkpoint: bool = False) -> dict[str, Any]:
        """Run the next epoch of the current job."""
        job, trainer = self.job, self.trainer
        if trainer is None:
            return {"job": job, "error": "no job is running on this worker"}
        try:
            result = trainer.run_epoch()
        except Exception as exc:
            self.release()
            return {"job": job, "error": _reason(exc)}
        out: dict[str, Any] = {"job": job, "epoch": result.to_dict(), "done": trainer.done}
        if want_checkpoint:
            out["checkpoint"] = trainer.checkpoint()
        return out

    def weights(self) -> dict[str, Any]:
        """The current job's network weights (CPU tensors)."""
        if self.trainer is None:
            return {"job": self.job, "error": "no job is running on this worker"}
        return {"job": self.job, "weights": self.trainer.cpu_state_dict()}

    def release(self) -> None:
        """Drop the current job and give its memory back (GPU memory too)."""
        self.trainer = None
        self.job = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
