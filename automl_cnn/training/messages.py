"""The messages between an executor and a trial worker: a job to start, and what one call returns.

Plain frozen records, so they cross a process boundary (Ray pickles them) the same way they
pass between objects in one process. Failures come back as a :class:`JobResult` with
``error`` set, never as an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from automl_cnn.model.measures import EpochResult


@dataclass(frozen=True)
class JobSpec:
    """Start ``job``: train ``candidate`` (``Candidate.to_dict()``) with ``seed`` on ``data``."""

    job: str
    candidate: dict[str, Any]
    seed: int
    data: Any  # TrainData, or an executor's reference to it (a Ray ObjectRef)
    checkpoint: bytes | None = None  # continue after this epoch checkpoint
    want_checkpoint: bool = False  # return a checkpoint with every epoch
    threads: int | None = None  # CPU threads for this job (default: the worker's share)
    # start this many halvings below the candidate's batch size, the learning rate scaled with it
    # (a final fit of a trial that ran out of memory: ``EpochResult.oom_backoffs`` of its last epoch)
    oom_backoffs: int = 0
    # the result of the job's last epoch carries its Outputs (a trial the driver may deliver or
    # ensemble); a final fit also keeps an average of its weights (``Outputs.ema_weights``)
    outputs: bool = False
    average: bool = False
    fraction: float = 1.0  # the first epoch trains on this share of the training split (a data-size fidelity)
    # start from these weights (a state dict of the candidate's network) instead of a random init:
    # weights only, the optimiser, schedule and epoch count start fresh (a final fit continuing
    # from its trial's weights); ignored where ``checkpoint`` is given, which holds the weights
    init_weights: dict[str, Any] | None = None


@dataclass(frozen=True)
class Outputs:
    """What a finished job leaves behind: its weights and its class probabilities on the job's
    scoring split (validation for a trial, the check split for a final fit), in that split's
    order; with ``JobSpec.average``, the same for the average of its weights."""

    weights: dict[str, Any]
    eval_probs: np.ndarray  # float16, images x classes
    ema_weights: dict[str, Any] | None = None
    ema_eval_probs: np.ndarray | None = None


@dataclass(frozen=True)
class JobResult:
    """What one call on a worker produced: an epoch, the trained weights, or an error."""

    job: str | None
    epoch: EpochResult | None = None
    done: bool = False  # the epoch was the job's last
    checkpoint: bytes | None = None
    weights: dict[str, Any] | None = None
    outputs: Outputs | None = None
    error: str | None = None
    lost: bool = False  # the worker process died (the job may be retried from its checkpoint)

    @classmethod
    def failed(cls, job: str | None, error: str, lost: bool = False) -> JobResult:
        return cls(job=job, error=error, lost=lost)
