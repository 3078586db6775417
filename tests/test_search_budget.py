"""Budgets and seeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from automl_cnn import search
from automl_cnn.engine.outcome import TrialAttrs

pytestmark = pytest.mark.slow
SPACES = Path(__file__).resolve().parent.parent / "search_spaces"


def test_time_budget_stops_cleanly_and_still_delivers(ray_session: None, tmp_path: Path, store: str) -> None:
    budget = 40.0
    result = search(
        "digits",
        SPACES / "tiny.yaml",
        time_budget=budget,
        workers=2,
        out=tmp_path / "out",
        tracking_uri=store,
        progress=False,
    )
    assert result.wall_seconds <= budget + 10
    assert sum(result.counts.values()) >= 3
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert result.model_uri.endswith("@champion")
    assert all(r.outcome in ("completed", "pruned", "failed") for r in result.trials)


def test_seed_reproduces_proposals_and_training(ray_session: None, tmp_path: Path, store: str) -> None:
    def run(tag: str):  # type: ignore[no-untyped-def]
        return search(
            "digits",
            SPACES / "tiny.yaml",
            trials=4,
            workers=1,
            seed=11,
            pruner="none",
            out=tmp_path / tag,
            tracking_uri=store,
            progress=False,
        )

    a, b = run("a"), run("b")
    assert [r.candidate for r in a.trials] == [r.candidate for r in b.trials]
    assert [r.seed for r in a.trials] == [r.seed for r in b.trials]
    assert len({r.seed for r in a.trials}) == 4  # every trial has its own seed
    assert [[e.val_acc for e in r.history] for r in a.trials] == [[e.val_acc for e in r.history] for r in b.trials]
    assert a.test_accuracy == b.test_accuracy

    c = search(
        "digits",
        SPACES / "tiny.yaml",
        trials=4,
        workers=1,
        seed=12,
        pruner="none",
        out=tmp_path / "c",
        tracking_uri=store,
        progress=False,
    )
    assert [r.candidate for r in c.trials] != [r.candidate for r in a.trials]


def test_study_in_a_database_storage(ray_session: None, tmp_path: Path, store: str) -> None:
    """--storage takes an SQL URL (PostgreSQL on a cluster; SQLite here) instead of the journal."""
    import optuna

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = search(
        "digits",
        SPACES / "tiny.yaml",
        trials=3,
        workers=2,
        storage=url,
        out=tmp_path / "out",
        tracking_uri=store,
        progress=False,
        warm_start="none",
    )
    assert not (tmp_path / "out" / "study.journal").exists()
    (name,) = optuna.get_all_study_names(url)
    study = optuna.load_study(study_name=name, storage=url)
    assert len(study.trials) == 3
    assert {TrialAttrs.read(t).mlflow_run_id for t in study.trials} == {r.run_id for r in result.trials}


def test_projected_training_time_goes_by_the_latest_epochs_not_the_warm_up() -> None:
    """The time a trial would take, which decides whether it may go on under a time budget."""
    import dataclasses

    from automl_cnn.engine.records import TrialRecord
    from automl_cnn.model.measures import EpochResult
    from automl_cnn.space.presets import PRESETS

    rec = TrialRecord(number=0, seed=0, run_id="r", candidate=PRESETS["lenet5"].value)  # 15 epochs
    assert rec.projected_seconds() is None

    def epoch(n: int, seconds: float) -> EpochResult:
        return EpochResult(n, 1.0, 0.5, 1.0, 0.5, seconds, 1e-3)

    def after(*seconds: float) -> TrialRecord:
        return dataclasses.replace(rec, history=tuple(epoch(n, s) for n, s in enumerate(seconds, 1)))

    assert after(12.0).projected_seconds() == 12.0 * 15  # warm-up and a busy start
    assert after(12.0, 6.0).projected_seconds() == 18.0 + 13 * 6.0  # the pace of the latest epochs from here on
    assert after(12.0, 6.0, 6.5, 5.5).projected_seconds() == 30.0 + 11 * 6.0  # median of the last three


def test_cpus_per_trial_sets_the_workers_and_their_threads(ray_session: None, tmp_path: Path, store: str) -> None:
    """Two CPUs per trial on a two-CPU runtime: one worker, training with two threads."""
    from mlflow.tracking import MlflowClient

    result = search(
        "digits",
        SPACES / "tiny.yaml",
        trials=2,
        cpus_per_trial=2,
        warm_start="none",
        out=tmp_path / "out",
        tracking_uri=store,
        progress=False,
    )
    trained = [r for r in result.trials if r.where]
    assert trained and all(r.where["threads"] == 2 for r in trained)
    assert len({r.where["pid"] for r in trained}) == 1
    client = MlflowClient(store)
    assert client.get_run(result.parent_run_id).data.params["config.workers"] == "1"
    assert client.get_run(trained[0].run_id).data.tags["automl_cnn.worker.threads"] == "2"
