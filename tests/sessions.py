"""Real sessions on the in-process executor, for unit tests of the orchestration tier.

Everything is real (the digits data, an Optuna study in the run folder's journal, an MLflow
SQLite store, trial workers training small networks) except that trials run in this process
instead of on Ray actors.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from stores import mlflow_store

from automl_cnn.app import make_plan, open_session
from automl_cnn.engine.config import SearchConfig
from automl_cnn.engine.runstate import RunState
from automl_cnn.engine.search.dedupe import Known
from automl_cnn.engine.search.warmstart import apply_warm_starts
from automl_cnn.engine.session import Plan, Resources, SearchSession
from automl_cnn.services.inprocess import InProcessExecutor
from automl_cnn.services.tracking import MlflowTracker
from automl_cnn.training.messages import JobResult

HERE = Path(__file__).resolve().parent
TINY = HERE.parent / "search_spaces" / "tiny.yaml"
FAILURES = HERE / "spaces" / "failures.yaml"
SINGLE = HERE / "spaces" / "single.yaml"  # one candidate: every later proposal repeats it


_STORE = Path(tempfile.mkdtemp(prefix="automl-cnn-unit-")) / "mlflow.db"  # one store for all: ~2 s saved a test


def base_settings(tmp_path: Path) -> dict[str, Any]:
    """The unit tests' settings: in process, no presets, quiet, one shared MLflow store."""
    return {
        "seed": 0,
        "progress": False,
        "warm_start": "none",
        "executor": "inprocess",
        "out": tmp_path / "out",
        "tracking_uri": mlflow_store(_STORE),
        "experiment": "unit",
    }


def plan_for(tmp_path: Path, space: Path = TINY, resume: RunState | None = None, **settings: Any) -> Plan:
    return make_plan("digits", space, SearchConfig.from_settings(**{**base_settings(tmp_path), **settings}), resume)


@contextlib.contextmanager
def session_for(
    plan: Plan, executor: InProcessExecutor | None = None, pruner: optuna.pruners.BasePruner | None = None
) -> Iterator[SearchSession]:
    """An open session on ``plan``; ``pruner`` replaces the configured one."""
    tracker = MlflowTracker(plan.config.resolved_tracking_uri(), plan.config.tracking.experiment)
    resources = Resources(workers=plan.config.cluster.workers or 1, gpus_per_trial=0.0)
    with open_session(plan, tracker, resources, executor or InProcessExecutor(resources.workers)) as s:
        if pruner is not None:
            s.study.pruner = pruner
        if not s.resumed:
            apply_warm_starts(s, Known())  # --enqueue and presets, as a search does
        yield s


class InterruptingExecutor(InProcessExecutor):
    """Raises KeyboardInterrupt (as Ctrl-C would) after ``after_results`` results."""

    def __init__(self, after_results: int) -> None:
        super().__init__(1)
        self.left = after_results

    def wait(self, timeout: float) -> list[JobResult]:
        results = super().wait(timeout)
        self.left -= len(results)
        if self.left < 0:
            raise KeyboardInterrupt
        return results
