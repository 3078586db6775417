"""The registered champion served by a real MLflow model server and browsed in a real MLflow UI."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from servers import free_port, mlflow_cmd, process, wait_http

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def test_mlflow_models_serve_answers_with_the_same_predictions(digits_search, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    cmd = mlflow_cmd(
        "models", "serve", "-m", digits_search.model_uri, "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)
    )
    with process(cmd, tmp_path / "serve.log", env={"MLFLOW_TRACKING_URI": digits_search.tracking_uri}) as proc:
        wait_http(f"http://127.0.0.1:{port}/ping", proc=proc)
        x_test, _ = digits_search.data.test_split()
        x = (x_test[:16].astype(np.float32) / 255.0).tolist()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": x}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as resp:
            body = json.loads(resp.read())
    served = np.asarray(body["predictions"], dtype=np.float32)
    np.testing.assert_allclose(served, digits_search.model.predict_proba(x_test[:16]), atol=1e-5)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _render(url: str, profile: Path, screenshot: Path | None = None) -> str:
    """The page's text after its scripts ran, from headless Chromium (and a screenshot)."""
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
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
        "--virtual-time-budget=25000",
    ]
    if screenshot is not None:
        subprocess.run([*base, f"--screenshot={screenshot}", url], capture_output=True, timeout=120, check=False)
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=False).stdout
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", dom, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", text).split())


def test_mlflow_ui_shows_experiment_trials_and_registered_model(digits_search, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    if _chromium() is None:
        if os.environ.get("CI"):  # .ci/run installs it: a CI without it must not pass quietly
            pytest.fail("Debian's chromium is missing; .ci/run should have installed it")
        pytest.skip("needs Debian's chromium (apt-get install chromium; .ci/run installs it)")
    result = digits_search
    port = free_port()
    root = Path(result.tracking_uri[len("sqlite:///") :]).parent / "mlartifacts"
    cmd = mlflow_cmd(
        "server",
        "--backend-store-uri",
        result.tracking_uri,
        "--artifacts-destination",
        str(root),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    )
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "mlflow-ui-runs.png"
    shot.unlink(missing_ok=True)
    with process(cmd, tmp_path / "server.log") as proc:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health", proc=proc)
        runs = _render(f"{base}/#/experiments/{result.experiment_id}/runs", tmp_path / "chrome", shot)
        trial = next(r for r in result.trials if r.outcome == "completed")
        trial_page = _render(f"{base}/#/experiments/{result.experiment_id}/runs/{trial.run_id}", tmp_path / "chrome")
        models = _render(f"{base}/#/models", tmp_path / "chrome")
    parent_name = next(iter(re.findall(r"search-digits-\d{8}-\d{6}", runs)), "")
    assert parent_name, runs[:2000]
    assert re.search(r"\btests\b", runs)  # the experiment's name
    assert f"trial-{trial.number}" in trial_page and "val_accuracy" in trial_page
    assert "automl-cnn-digits" in models and "champion" in models
    from PIL import Image

    with Image.open(shot) as img:
        assert img.width >= 1000 and img.height >= 600
