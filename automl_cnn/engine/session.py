"""One search's context, held once: what every phase (driver, final fit, delivery, recovery,
warm start) needs, instead of a dozen arguments passed from phase to phase.

The session is frozen: its parts are services with state of their own (the study, the executor,
the tracker, the run folder's state), but which parts make up this run never changes. Each phase
takes the session plus its own inputs, as Optuna's ``Trial(study, trial_id)`` reaches the
sampler, the pruner and the storage through its study.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from automl_cnn.data.bundle import DataBundle
from automl_cnn.engine.budget import Budget
from automl_cnn.engine.config import SearchConfig
from automl_cnn.engine.fidelity import DataLadder, ladder_for
from automl_cnn.engine.progress import Progress
from automl_cnn.engine.runstate import RunState
from automl_cnn.metrics import Yardstick, resolve
from automl_cnn.services.executor import Executor
from automl_cnn.services.tracking import MlflowTracker
from automl_cnn.space.schema import SearchSpace


def split_id(bundle: DataBundle) -> str:
    """What makes two searches' validation scores comparable: the split of the same data."""
    fractions = "/".join(f"{share:g}" for share in bundle.fractions)
    return f"seed {bundle.split_seed}, fractions {fractions}, test {len(bundle.test_idx)}"


@dataclass(frozen=True)
class Plan:
    """A checked request: the settings, the space, the data and where it all goes. Everything
    that can be wrong with the input is found while making it; nothing is written before."""

    config: SearchConfig
    space: SearchSpace
    bundle: DataBundle
    out: Path
    data_spec: str  # how the data was named, for resume
    resume_state: RunState | None = None
    started: float | None = None  # time.monotonic() when the request came in: the run's clock starts there


@dataclass(frozen=True)
class Resources:
    """What this run's trials get: how many at once, and the GPUs each takes."""

    workers: int
    gpus_per_trial: float


@dataclass(frozen=True)
class SearchSession:
    """One run's context: the checked request (config, space, data, folder), the services it
    talks to (study, executor, tracker, progress panel, MLflow parent run) and its budget."""

    config: SearchConfig
    space: SearchSpace
    bundle: DataBundle
    out: Path
    state: RunState
    study: optuna.Study
    executor: Executor
    tracker: MlflowTracker
    progress: Progress
    budget: Budget  # the run's clock and time budget: every time question asks it
    parent_run: str
    resources: Resources
    resumed: bool = False

    # -- derived, computed once ------------------------------------------------------------------
    @functools.cached_property
    def search_data(self) -> Any:
        """The train and validation splits, where the executor's workers read them."""
        return self.executor.put(dataclasses.replace(self.bundle.search_data(), metric=self.metric[0]))

    @functools.cached_property
    def refit_data(self) -> Any:
        """The final fit's data: train + the selection half of validation, scored on the check
        half (:meth:`DataBundle.refit_data`), where the executor's workers read them."""
        return self.executor.put(dataclasses.replace(self.bundle.refit_data(), metric=self.metric[0]))

    @functools.cached_property
    def data_ladder(self) -> DataLadder | None:
        """The shares of the training split the trials' epochs train on (None: all of it)."""
        return ladder_for(self.config.search.data_fidelity, self.config.search.pruner, len(self.bundle.train_idx))

    @property
    def eval_share(self) -> float:
        """Scoring validation, as a share of a full-data trial epoch's work (forward and
        backward cost about three forward passes)."""
        n_train, n_val = len(self.bundle.train_idx), len(self.bundle.val_idx)
        return n_val / (3 * n_train + n_val)

    @functools.cached_property
    def metric(self) -> tuple[str, str]:
        """The score this search optimises (``accuracy``, ``balanced_accuracy`` or ``macro_f1``:
        ``--metric``, ``auto`` resolved on the training split's class sizes), and why."""
        return resolve(self.config.search.metric, self.bundle.counts()["train"])

    def yardstick(self, labels: Any) -> Yardstick:
        """The search's metric on images with ``labels``: scores and compares models there."""
        return Yardstick(self.metric[0], np.asarray(labels))

    @property
    def objectives(self) -> tuple[str, ...]:
        return self.config.search.objectives

    @property
    def multi_objective(self) -> bool:
        return len(self.config.search.objectives) > 1

    @property
    def split_id(self) -> str:
        return split_id(self.bundle)

    def final_speedup(self, n_fits: int) -> float:
        """How much faster a final fit trains than a trial did, from the threads idle workers
        leave: measured here, two threads train a small CNN 1.7x as fast as one; counted as at
        most 1.5x, to be safe. GPUs gain nothing."""
        if self.resources.gpus_per_trial > 0:
            return 1.0
        return float(min(1.5, self.executor.threads_for(n_fits) ** 0.6))
