"""`automl-cnn ui` and what the MLflow UI reads from the store: the address of the trials view,
the experiment's kind and saved view, and the dataset input on the search's runs (no Ray)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import webbrowser
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from sessions import plan_for, session_for
from stores import mlflow_store

from automl_cnn import cli
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.search.driver import SearchDriver
from automl_cnn.services.tracking import MlflowTracker

VIEW_TAG = "mlflow.sharedViewState.automl-cnn-trials"


def _args(*argv: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(["ui", *argv])


def _view_state(client: MlflowClient, experiment_id: str) -> dict[str, object]:
    envelope = json.loads(client.get_experiment(experiment_id).tags[VIEW_TAG])
    assert envelope["name"] == "automl-cnn trials" and isinstance(envelope["createdAt"], int)
    state = json.loads(envelope["state"])
    assert isinstance(state, dict)
    return state


def test_ui_prints_the_trials_view_and_serves_the_store(tmp_path: Path) -> None:
    store = mlflow_store(tmp_path / "mlflow.db")
    MlflowTracker(store, "other")
    experiment_id = MlflowTracker(store, "digits-searches").experiment_id
    url, argv = cli.ui_command(_args("--tracking-uri", store, "--experiment", "digits-searches", "--port", "5077"))
    assert url == (
        f"http://127.0.0.1:5077/#/experiments/{experiment_id}/runs"
        "?workflowType=machine_learning&viewStateShareKey=automl-cnn-trials"
    )
    assert argv is not None and argv[:4] == [sys.executable, "-m", "mlflow", "ui"]
    options = dict(zip(argv[4::2], argv[5::2], strict=True))
    assert options == {
        "--backend-store-uri": store,
        "--host": "127.0.0.1",
        "--port": "5077",
        "--artifacts-destination": str(tmp_path / "mlartifacts"),
    }


def test_ui_on_all_interfaces_prints_an_address_this_machine_reaches(tmp_path: Path) -> None:
    store = mlflow_store(tmp_path / "mlflow.db")
    MlflowTracker(store, "automl-cnn")
    url, _argv = cli.ui_command(_args("--tracking-uri", store, "--host", "0.0.0.0"))
    assert url.startswith("http://127.0.0.1:5000/#/experiments/")


def test_ui_of_a_tracking_server_prints_that_servers_address_and_starts_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    looked_up: list[tuple[str, str]] = []

    def experiment(uri: str, name: str) -> tuple[str, bool]:
        looked_up.append((uri, name))
        return "7", True

    monkeypatch.setattr(cli, "_trials_experiment", experiment)
    url, argv = cli.ui_command(_args("--tracking-uri", "https://mlflow.example.org/", "--experiment", "team"))
    assert looked_up == [("https://mlflow.example.org/", "team")]
    assert argv is None
    assert url == (
        "https://mlflow.example.org/#/experiments/7/runs?workflowType=machine_learning&viewStateShareKey=automl-cnn-trials"
    )


def test_ui_without_the_experiment_is_one_line_naming_the_fix_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = mlflow_store(tmp_path / "mlflow.db")
    MlflowTracker(store, "automl-cnn")
    capsys.readouterr()  # MLflow's notes on creating the store
    code = cli.main(["ui", "--tracking-uri", store, "--experiment", "nope"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        f"error: no MLflow experiment 'nope' in {store}; run a search first, or pass the --experiment its search used\n"
    )
    assert MlflowClient(store).get_experiment_by_name("nope") is None


def test_ui_prints_the_address_then_serves_without_a_browser_when_not_in_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = mlflow_store(tmp_path / "mlflow.db")
    MlflowTracker(store, "automl-cnn")
    served: list[tuple[list[str], str, str | None]] = []
    monkeypatch.setattr(cli, "_serve", lambda cmd, health, browse: served.append((cmd, health, browse)) or 0)
    assert cli.main(["ui", "--tracking-uri", store, "--port", "5078"]) == 0
    lines = capsys.readouterr().out.splitlines()
    url, cmd = cli.ui_command(_args("--tracking-uri", store, "--port", "5078"))
    assert lines == [
        "the trials of experiment 'automl-cnn', best final_val_accuracy first, grouped by dataset:",
        f"  {url}",
        "MLflow UI on http://127.0.0.1:5078 (Ctrl-C to stop)",
    ]
    assert served == [(cmd, "http://127.0.0.1:5078/health", None)]  # captured output is no terminal


def test_ui_without_the_saved_view_prints_the_clicks_that_rank_the_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = mlflow_store(tmp_path / "mlflow.db")
    MlflowTracker(store, "automl-cnn")
    monkeypatch.setattr(cli, "_trials_experiment", lambda uri, name: ("1", False))  # a read-only server
    monkeypatch.setattr(cli, "_serve", lambda cmd, health, browse: 0)
    assert cli.main(["ui", "--tracking-uri", store]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0]
        == "the runs of experiment 'automl-cnn': http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning"
    )
    assert out[1] == (
        "  to rank the trials: Sort -> final_val_accuracy, descending; Columns -> final_val_accuracy, params, "
        "flops, automl_cnn.outcome"
    )


def test_a_browser_opens_only_when_it_is_a_graphical_one(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[tuple[str, str]] = []

    def record(self: webbrowser.GenericBrowser, url: str, new: int = 0, autoraise: bool = True) -> bool:
        opened.append((self.name, url))
        return True

    monkeypatch.setattr(webbrowser.GenericBrowser, "open", record)
    monkeypatch.setattr(webbrowser.BackgroundBrowser, "open", record)
    # a graphical browser runs in the background; lynx, w3m, ... would take over the terminal
    for browser, url in (
        (webbrowser.BackgroundBrowser("firefox"), "http://a"),
        (webbrowser.GenericBrowser("w3m"), "http://b"),
    ):
        monkeypatch.setattr(webbrowser, "get", lambda using=None, found=browser: found)
        cli._open_browser(url)

    def none(using: str | None = None) -> webbrowser.BaseBrowser:
        raise webbrowser.Error("could not locate runnable browser")

    monkeypatch.setattr(webbrowser, "get", none)
    cli._open_browser("http://c")  # no browser at all: no error
    assert opened == [("firefox", "http://a")]


def test_the_experiment_opens_as_model_training_with_the_trials_view(store: str) -> None:
    tracker = MlflowTracker(store, "automl-cnn")
    tags = tracker.client.get_experiment(tracker.experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    state = _view_state(tracker.client, tracker.experiment_id)
    assert (state["orderByKey"], state["orderByAsc"]) == ("metrics.`final_val_accuracy`", False)
    assert state["groupBy"] == {
        "aggregateFunction": "max",
        "groupByKeys": [{"mode": "dataset", "groupByData": "dataset"}],
    }
    columns = state["selectedColumns"]
    assert isinstance(columns, list)
    for column in ("metrics.`final_val_accuracy`", "metrics.`params`", "metrics.`flops`", "tags.`automl_cnn.outcome`"):
        assert column in columns


def test_a_kind_or_view_the_user_changed_is_kept_when_a_search_reopens_the_experiment(store: str) -> None:
    tracker = MlflowTracker(store, "automl-cnn")
    tracker.client.set_experiment_tag(tracker.experiment_id, "mlflow.experimentKind", "genai_development")
    tracker.client.set_experiment_tag(tracker.experiment_id, VIEW_TAG, "{}")
    again = MlflowTracker(store, "automl-cnn")
    tags = again.client.get_experiment(again.experiment_id).tags
    assert again.experiment_id == tracker.experiment_id
    assert (tags["mlflow.experimentKind"], tags[VIEW_TAG]) == ("genai_development", "{}")


def test_an_experiment_made_before_is_tagged_when_a_search_opens_it(store: str) -> None:
    client = MlflowClient(store)
    experiment_id = client.create_experiment("older")
    assert "mlflow.experimentKind" not in client.get_experiment(experiment_id).tags
    MlflowTracker(store, "older")
    assert client.get_experiment(experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    assert _view_state(client, experiment_id)["orderByKey"] == "metrics.`final_val_accuracy`"


def test_the_search_and_every_trial_record_the_dataset_the_view_columns_are_logged(tmp_path: Path) -> None:
    store = mlflow_store(tmp_path / "mlflow.db")
    plan = plan_for(tmp_path, trials=2, pruner="none", tracking_uri=store)
    with session_for(plan) as s:
        records = SearchDriver(s, lambda _records: math.inf).run()
        parent, bundle = s.parent_run, s.bundle
    client = MlflowClient(store)
    assert len(records) == 2 and all(isinstance(r, TrialRecord) for r in records)
    for run_id in (parent, *(r.run_id for r in records)):
        (given,) = client.get_run(run_id).inputs.dataset_inputs
        assert [(t.key, t.value) for t in given.tags] == [("mlflow.data.context", "train")]
        ds = given.dataset
        assert (ds.name, ds.digest, ds.source_type) == ("digits", bundle.fingerprint(), "code")
        assert json.loads(ds.source) == {"tags": {"automl_cnn.data": "digits"}}
        profile = json.loads(ds.profile)
        assert (profile["train_images"], profile["val_images"], profile["test_images"]) == (
            len(bundle.train_idx),
            len(bundle.val_idx),
            len(bundle.test_idx),
        )
        assert profile["input_shape"].startswith("1x8x8")
        assert profile["normalisation_mean"] == pytest.approx(list(bundle.mean), abs=1e-6)
        assert profile["normalisation_std"] == pytest.approx(list(bundle.std), abs=1e-6)
        names = [c["name"] for c in json.loads(ds.schema)["mlflow_colspec"]]
        assert names == ["image", "label"]
    experiment_id = client.get_run(parent).info.experiment_id
    completed = next(r for r in records if r.outcome == "completed")
    trial = client.get_run(completed.run_id).data
    for column in _view_state(client, experiment_id)["selectedColumns"]:  # type: ignore[union-attr]
        kind, name = column.split(".", 1)
        logged = {"metrics": trial.metrics, "tags": trial.tags}.get(kind)
        if logged is not None:  # attributes (Dataset, Models) are MLflow's own
            assert name.strip("`") in logged, column
    assert trial.metrics["final_val_accuracy"] == pytest.approx(completed.val_acc)
