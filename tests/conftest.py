"""Shared fixtures: one real local Ray runtime per test session, a fresh MLflow store per test."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from stores import mlflow_store

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
ROOT = Path(__file__).resolve().parent.parent
SPACES = ROOT / "search_spaces"
TEST_SPACES = Path(__file__).resolve().parent / "spaces"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` skip cleanly on a machine without CUDA (the same code paths run on
    the CPU in the other tests)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A real local Ray runtime with two CPUs, shared by every test that searches."""
    import ray

    for name in ("mlflow", "alembic", "ray"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A real MLflow tracking store (SQLite) in the test's temporary folder."""
    return mlflow_store(tmp_path / "mlflow.db")


@pytest.fixture(scope="session")
def digits_search(ray_session: None, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One real search on digits with tiny.yaml, shared by the tests that inspect its results."""
    from automl_cnn import search

    tmp = tmp_path_factory.mktemp("digits_search")
    result = search(
        "digits",
        SPACES / "tiny.yaml",
        trials=8,
        workers=2,
        seed=3,
        out=tmp / "out",
        tracking_uri=mlflow_store(tmp / "mlflow.db"),
        experiment="tests",
        progress=False,
    )
    return result


@pytest.fixture(scope="session")
def ensemble_search(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A fixed-seed one-worker search (in-process, so exactly reproducible) on digits whose
    ensemble beats its winner on the check half: it delivers an ensemble of three trials."""
    from automl_cnn import search

    tmp = tmp_path_factory.mktemp("ensemble_search")
    return search(
        "digits",
        SPACES / "tiny.yaml",
        trials=10,
        workers=1,
        pruner="none",
        warm_start="none",
        executor="inprocess",
        seed=1,
        out=tmp / "out",
        tracking_uri=mlflow_store(tmp / "mlflow.db"),
        experiment="tests",
        progress=False,
    )
