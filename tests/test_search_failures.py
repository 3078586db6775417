"""Failures inside a search are recorded on their trial; the search completes."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from automl_cnn import search

pytestmark = pytest.mark.slow
SPACE = Path(__file__).resolve().parent / "spaces" / "failures.yaml"

IMPOSSIBLE = {"blocks": 4, **{f"block{i}.pooling": "max" for i in range(1, 5)}, "train.learning_rate": 0.05}
DIVERGENT = {"blocks": 1, "block1.pooling": "none", "train.learning_rate": 10.0}
GOOD = {"blocks": 1, "block1.pooling": "max", "train.learning_rate": 0.05}


def test_impossible_and_nan_trials_are_recorded_and_the_search_completes(
    ray_session: None, tmp_path: Path, store: str
) -> None:
    result = search(
        "digits",
        SPACE,
        trials=4,
        workers=2,
        pruner="none",
        enqueue=(IMPOSSIBLE, DIVERGENT, GOOD),
        out=tmp_path / "out",
        tracking_uri=store,
        progress=False,
    )
    by_number = {r.number: r for r in result.trials}
    impossible, divergent = by_number[0], by_number[1]
    assert impossible.outcome == "failed"
    assert "not trained: block 4: max pooling by 2 would shrink the 1x1 feature map below 1x1" in impossible.reason
    assert impossible.history == ()  # never trained
    assert divergent.outcome == "failed"
    assert "NaN/inf loss" in divergent.reason
    assert result.counts["completed"] >= 1
    assert result.model_uri.endswith("@champion")
    assert result.candidate.training.learning_rate == 0.05

    # the study knows them as failed, the MLflow runs carry the reasons
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "out" / "study.journal")))
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    states = {t.number: t.state for t in study.trials}
    assert states[0] == states[1] == optuna.trial.TrialState.FAIL
    client = MlflowClient(store)
    for rec in (impossible, divergent):
        run = client.get_run(rec.run_id)
        assert run.info.status == "FAILED"
        assert run.data.tags["automl_cnn.outcome"] == "failed"
        assert run.data.tags["automl_cnn.reason"] == rec.reason
    assert not [r for r in client.search_runs([result.experiment_id]) if r.info.status == "RUNNING"]
