"""A real search (local Ray, SQLite MLflow store, Optuna study) on digits with tiny.yaml."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from automl_cnn import load_images, load_model, split_data

pytestmark = pytest.mark.slow


def _children(client: MlflowClient, result) -> list:  # type: ignore[no-untyped-def]
    runs = client.search_runs(
        [result.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'", max_results=500
    )
    return [r for r in runs if "automl_cnn.trial" in r.data.tags]


def test_every_trial_is_a_child_run_with_params_and_epoch_curves(digits_search) -> None:  # type: ignore[no-untyped-def]
    result = digits_search
    client = MlflowClient(result.tracking_uri)
    children = _children(client, result)
    assert len(children) == 8 == len(result.trials)
    outcomes = {r.data.tags["automl_cnn.outcome"] for r in children}
    assert outcomes <= {"completed", "pruned", "failed"}
    assert "completed" in outcomes
    for run in children:
        params = run.data.params
        assert {"n_blocks", "block1.filters", "train.learning_rate", "train.batch_size", "seed"} <= set(params)
        assert run.info.status in ("FINISHED", "KILLED", "FAILED")
        if run.data.tags["automl_cnn.outcome"] == "failed":
            assert run.data.tags["automl_cnn.reason"]
            continue
        assert run.data.metrics["params"] > 0 and run.data.metrics["flops"] > 0
        assert run.data.metrics["duration_seconds"] > 0
        epochs = int(run.data.metrics["epochs_run"])
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            history = client.get_metric_history(run.info.run_id, key)
            assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(1, epochs + 1))
        if run.data.tags["automl_cnn.outcome"] == "pruned":
            assert "stopped early" in run.data.tags["automl_cnn.reason"]
            assert epochs < int(params["train.epochs"])
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["data.fingerprint"] == load_images("digits").fingerprint()
    assert parent.data.metrics["test_accuracy"] == pytest.approx(result.test_accuracy)
    assert sum(int(parent.data.metrics[f"trials_{k}"]) for k in ("completed", "pruned", "failed")) == 8
    p = parent.data.params
    assert p["data.split_seed"] == "3" and p["config.sampler"] == "tpe" and p["config.pruner"] == "asha"
    assert p["config.trials"] == "8" and p["config.workers"] == "2" and p["space.name"] == "tiny"
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(result.val_accuracy)
    assert 0 < parent.data.metrics["wall_seconds"] <= result.wall_seconds + 1
    mlflow.set_tracking_uri(result.tracking_uri)
    space = mlflow.artifacts.load_text(f"runs:/{result.parent_run_id}/search_space.yaml")
    assert space == (result.out_dir / "space.yaml").read_text() and "name: tiny" in space


def test_winner_is_registered_and_every_copy_predicts_the_same(digits_search) -> None:  # type: ignore[no-untyped-def]
    result = digits_search
    client = MlflowClient(result.tracking_uri)
    version = client.get_model_version_by_alias(result.model_uri.split("/")[1].split("@")[0], "champion")
    assert str(version.version) == result.model_version
    assert "validation accuracy" in (version.description or "")

    bundle = split_data(load_images("digits"), seed=3)
    x_test, y_test = bundle.test_split()
    x = x_test.astype(np.float32) / 255.0
    expected = result.model.predict_proba(x_test)
    # the held-out test score is the in-memory model's accuracy on the split the search never saw
    assert result.test_accuracy == pytest.approx(float((expected.argmax(1) == y_test).mean()))

    mlflow.set_tracking_uri(result.tracking_uri)
    info = mlflow.models.get_model_info(result.model_uri)
    assert info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 1, 8, 8)
    assert info.signature.outputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 10)
    assert info.saved_input_example_info is not None  # an input example is stored with the model
    served = mlflow.pytorch.load_model(result.model_uri)
    with torch.no_grad():
        got = served(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)

    from_folder = load_model(result.out_dir)
    np.testing.assert_allclose(from_folder.predict_proba(x_test), expected, atol=1e-6)
    assert from_folder.class_names == result.model.class_names

    scripted = torch.jit.load(str(result.out_dir / "model.torchscript.pt"))
    with torch.no_grad():
        np.testing.assert_allclose(scripted(torch.from_numpy(x)).numpy(), expected, atol=1e-5)


def test_output_folder_holds_weights_architecture_torchscript_and_report(digits_search) -> None:  # type: ignore[no-untyped-def]
    out = digits_search.out_dir
    for name in ("model.safetensors", "model.json", "model.torchscript.pt", "report.md", "space.yaml", "trials.csv"):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    assert "## Architecture" in report and "| layer | type | output shape | parameters |" in report
    # the delivered test score with its 95% interval over the test split
    from automl_cnn.deliver.result import with_interval

    assert with_interval(digits_search.test_accuracy, digits_search.test_images) in report
    assert digits_search.candidate.architecture.describe() in report


def test_study_is_told_the_truth_about_each_trial(digits_search) -> None:  # type: ignore[no-untyped-def]
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(digits_search.out_dir / "study.journal")))
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    expected = {
        "completed": optuna.trial.TrialState.COMPLETE,
        "pruned": optuna.trial.TrialState.PRUNED,
        "failed": optuna.trial.TrialState.FAIL,
    }
    for rec in digits_search.trials:
        trial = study.trials[rec.number]
        assert trial.state == expected[rec.outcome]
        if rec.outcome == "completed":
            assert trial.value == rec.history[-1].val_acc
        if rec.outcome == "pruned":  # stopped at that fidelity: PRUNED, with the last epoch reached
            assert max(trial.intermediate_values) == len(rec.history) < rec.candidate.training.epochs
            assert trial.intermediate_values[len(rec.history)] == rec.history[-1].val_acc


def test_two_workers_train_trials_at_the_same_time(digits_search) -> None:  # type: ignore[no-untyped-def]
    trained = [r for r in digits_search.trials if r.history and r.where]
    assert len({r.where["pid"] for r in trained}) == 2  # two Ray actor processes
    overlapping = [
        (a.number, b.number)
        for a in trained
        for b in trained
        if a.number < b.number and a.started < b.started + b.seconds and b.started < a.started + a.seconds
    ]
    assert overlapping, [(r.number, r.started, r.seconds) for r in trained]
