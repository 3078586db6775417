"""The registered champion served by a real MLflow model server and browsed in a real MLflow UI."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from servers import free_port, process, served_predictions, wait_http

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def test_mlflow_models_serve_answers_with_the_same_predictions(digits_search, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    x_test, _ = digits_search.data.test_split()
    log = tmp_path / "serve.log"
    served = served_predictions(digits_search.model_uri, digits_search.tracking_uri, x_test[:16], log)
    np.testing.assert_allclose(served, digits_search.model.predict_proba(x_test[:16]), atol=1e-5)


def test_a_served_ensemble_answers_as_the_delivered_model(ensemble_search, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert ensemble_search.is_ensemble
    x_test, _ = ensemble_search.data.test_split()
    log = tmp_path / "serve.log"
    served = served_predictions(ensemble_search.model_uri, ensemble_search.tracking_uri, x_test[:32], log)
    np.testing.assert_allclose(served, ensemble_search.model.predict_proba(x_test[:32]), atol=1e-5)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _render(url: str, profile: Path, screenshot: Path | None = None) -> str:
    """The page's DOM after its scripts ran, from headless Chromium (and a screenshot). A fresh
    profile each time: no earlier visit's saved table settings change what a first visit shows."""
    base = [
        _chromium() or "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1920,1080",
        "--virtual-time-budget=25000",
    ]
    if screenshot is not None:
        shot = [*base, f"--user-data-dir={profile}-shot", f"--screenshot={screenshot}", url]
        subprocess.run(shot, capture_output=True, timeout=120, check=False)
    dump = [*base, f"--user-data-dir={profile}", "--dump-dom", url]
    return subprocess.run(dump, capture_output=True, text=True, timeout=120, check=False).stdout


def _text(dom: str) -> str:
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", dom, flags=re.S)
    return html.unescape(" ".join(re.sub(r"<[^>]+>", " ", text).split()))


def _rows(dom: str) -> dict[str, int]:
    """Row id -> position of each row of the runs table (a row is drawn once per pinned part)."""
    rows = {}
    for tag in re.findall(r"<div[^>]*\brole=\"row\"[^>]*>", dom):
        row_id, index = re.search(r'row-id="([^"]+)"', tag), re.search(r'row-index="(\d+)"', tag)
        if row_id and index:
            rows[html.unescape(row_id.group(1))] = int(index.group(1))
    return rows


def _printed_url(log: Path, proc: subprocess.Popen, timeout: float = 120.0) -> str:  # type: ignore[type-arg]
    """The address `automl-cnn ui` prints before it starts the UI."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"^  (http://\S+)$", log.read_text(), re.M)
        if found:
            return found.group(1)
        assert proc.poll() is None, log.read_text()
        time.sleep(0.5)
    raise TimeoutError(f"automl-cnn ui printed no address within {timeout:.0f} s: {log.read_text()}")


def test_mlflow_ui_shows_experiment_trials_and_registered_model(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if _chromium() is None:  # checked before the search it browses is run
        if os.environ.get("CI"):  # the README's test command installs it: a CI without it must not pass quietly
            pytest.fail("Debian's chromium is missing; the README's test command (tools/ensure-chromium) installs it")
        pytest.skip(
            "needs Debian's chromium; the README's test command installs it when run as root (tools/ensure-chromium)"
        )
    result = request.getfixturevalue("digits_search")
    bundle = result.data
    port = free_port()
    cmd = [sys.executable, "-m", "automl_cnn", "ui", "--tracking-uri", result.tracking_uri, "--experiment", "tests"]
    ARTIFACTS.mkdir(exist_ok=True)
    shots = (ARTIFACTS / "mlflow-ui-trials.png", ARTIFACTS / "mlflow-ui-models.png")
    for shot in shots:
        shot.unlink(missing_ok=True)
    with process([*cmd, "--port", str(port), "--no-browser"], tmp_path / "ui.log") as proc:
        url = _printed_url(tmp_path / "ui.log", proc)
        wait_http(f"http://127.0.0.1:{port}/health", proc=proc)
        runs = _render(url, tmp_path / "chrome-runs", shots[0])
        models = _render(f"http://127.0.0.1:{port}/#/models", tmp_path / "chrome-models", shots[1])
    view = "workflowType=machine_learning&viewStateShareKey=automl-cnn-trials"
    assert url == f"http://127.0.0.1:{port}/#/experiments/{result.experiment_id}/runs?{view}"
    text = _text(runs)
    # the runs table in Model-training mode on the trials view, not the GenAI overview
    assert text.startswith(f"Runs - Experiment {result.experiment_id} - MLflow"), text[:2000]
    assert "Model registry" in text and "Overview" not in text and "Traces 0" not in text
    for control in ("automl-cnn trials", "Sort: final_val_accuracy", "Group by: dataset"):
        assert control in text, (control, text[:3000])
    # the search's parent run and all its trials, together in the group of the data they share
    group, rows = f"dataset.dataset.{bundle.name}.{bundle.fingerprint()}", _rows(runs)
    assert group in rows, sorted(rows)
    for run_id in (result.parent_run_id, *(t.run_id for t in result.trials)):
        assert f"{group}.{run_id}" in rows, (run_id, sorted(rows))
    assert re.search(r"\bsearch-digits-\d{8}-\d{6}\b", text) and f"{bundle.name} ({bundle.fingerprint()})" in text
    # ranked by validation accuracy, with the accuracy, parameters, FLOPs and outcome columns
    scored = sorted((t for t in result.trials if t.val_acc is not None), key=lambda t: rows[f"{group}.{t.run_id}"])
    accuracies = [t.val_acc for t in scored]
    assert len(accuracies) >= 2 and accuracies == sorted(accuracies, reverse=True)
    for column in ("final_val_accuracy", "best_val_accuracy", "params", "flops"):
        assert f'col-id="metrics.`{column}`"' in runs, column
    assert 'col-id="tags.`automl_cnn.outcome`"' in runs and re.search(r"\bcompleted\b", text)
    assert repr(accuracies[0]) in text  # the best trial's score, as MLflow shows it
    # the models page: the registered model with its alias
    name, version = result.model_uri[len("models:/") :].split("@")[0], result.model_version
    alias = rf"{re.escape(name)}\s+Version {version}\s+@\s*champion\s*:\s*Version {version}\b"
    assert re.search(alias, _text(models)), _text(models)[:3000]
    from PIL import Image

    for shot in shots:
        with Image.open(shot) as img:
            assert img.size == (1920, 1080)
