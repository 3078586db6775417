"""Running out of memory during training: how to recognise it, free what it left, and say it.

The trainer answers an out-of-memory error by rerunning the epoch with half the batch size (at
most :data:`MAX_OOM_BACKOFFS` times a job, as Ludwig does); only then does the trial fail.
"""

from __future__ import annotations

import gc

import torch

MAX_OOM_BACKOFFS = 2  # halvings of the batch size a job may take before it fails

# how an allocation failure reads: CUDA, MPS and XPU ("... out of memory ..."), and the CPU's
# allocator ("DefaultCPUAllocator: can't allocate memory: you tried to allocate ... bytes")
_OOM_TEXT = ("out of memory", "can't allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """``exc`` is an allocation failure (torch raises CPU ones as a plain RuntimeError)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(t in text for t in _OOM_TEXT)


def first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else exc.__class__.__name__


def free_memory(device: torch.device) -> None:
    """Give back what a failed step left: unreachable tensors, and the CUDA allocator's cache."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def halved(batch_size: int, times: int = 1) -> int:
    for _ in range(times):
        batch_size = max(1, batch_size // 2)
    return batch_size


def out_of_memory_message(batch_size: int, backoffs: int, first: int, what: str) -> str:
    """Why a trial failed after its back-offs, e.g. ``out of memory at batch size 16 after 2
    halvings (from 64): CUDA out of memory. Tried to allocate …``."""
    halvings = f"{backoffs} halving{'' if backoffs == 1 else 's'}"
    start = f" (from {first})" if backoffs else ""
    return f"out of memory at batch size {batch_size} after {halvings}{start}: {what}"
