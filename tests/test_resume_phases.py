"""A driver killed (SIGKILL) during the final fit, and again during delivery, resumes at that
step: no trial is started again, the final fit continues from its epoch checkpoint, finished
weights are reused, the model is registered once, and the time spent counts every phase."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from stores import mlflow_store

pytestmark = pytest.mark.slow
SPACE = Path(__file__).resolve().parent / "spaces" / "slow_final.yaml"


def _start(args: list[str], cwd: Path) -> subprocess.Popen:  # type: ignore[type-arg]
    return subprocess.Popen(
        [sys.executable, "-m", "automl_cnn", *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 300) -> float:  # type: ignore[no-untyped-def,type-arg]
    """SIGKILL ``proc`` once ``ready()`` holds; returns the seconds it ran."""
    start = time.monotonic()
    while not ready():
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() - start < timeout, "the driver never got there"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return time.monotonic() - start


def _state(run: Path) -> dict:  # type: ignore[type-arg]
    try:
        return json.loads((run / "run.json").read_text())  # type: ignore[no-any-return]
    except (OSError, json.JSONDecodeError):
        return {}


def test_a_driver_killed_in_the_final_fit_and_in_delivery_resumes_at_that_step(tmp_path: Path) -> None:
    run, store = tmp_path / "run", mlflow_store(tmp_path / "mlflow.db")
    search = ["search", "--data", "mnist5k", "--space", str(SPACE), "--trials", "2", "--executor", "inprocess",
              "--warm-start", "none", "--out", str(run), "--tracking-uri", store, "--no-progress"]  # fmt: skip
    ran = _kill_when(
        _start(search, tmp_path),
        lambda: _state(run).get("phase") == "final_fit" and (run / "checkpoints" / "final-0.json").is_file(),
    )
    trials_before = (run / "trials.jsonl").read_text().splitlines()
    killed = _state(run)
    final_epochs = json.loads((run / "checkpoints" / "final-0.json").read_text())
    epochs_done = len(final_epochs)
    assert epochs_done >= 1 and ran > 0
    # the time of every phase so far is on record: the trials' and the final fit's epochs
    trained = sum(json.loads(line)["seconds"] for line in trials_before) + sum(e["seconds"] for e in final_epochs)
    assert killed["elapsed"] >= trained, (killed["elapsed"], trained)

    resume = ["resume", str(run), "--no-progress"]
    proc = _start(resume, tmp_path)
    _kill_when(proc, lambda: _state(run).get("phase") == "delivering")
    out = proc.communicate()[0]
    assert f"final-0: resumed from epoch {epochs_done} (checkpoint of an earlier driver)" in out, out[-3000:]
    assert (run / "trials.jsonl").read_text().splitlines() == trials_before  # no trial started again
    fitted = json.loads((run / "checkpoints" / "final-0.weights.json").read_text())
    assert [e["epoch"] for e in fitted][:epochs_done] == [e["epoch"] for e in final_epochs]
    later = sum(e["seconds"] for e in fitted[epochs_done:])  # trained by the resumed driver
    assert _state(run)["elapsed"] >= killed["elapsed"] + later

    done = subprocess.run([sys.executable, "-m", "automl_cnn", *resume], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "resuming at the delivering (the trials are over; none is started)" in done.stdout
    assert "final-0: trained by an earlier driver of this run; its weights are reused" in done.stdout
    assert (run / "trials.jsonl").read_text().splitlines() == trials_before
    final = _state(run)
    assert final["state"] == "finished" and final["model_version"] == "1"
    client = MlflowClient(store)
    name = final["model_uri"].split("/")[1].split("@")[0]
    assert len(client.search_model_versions(f"name = '{name}'")) == 1  # registered once
    study_trials = json.loads(subprocess.run(
        [sys.executable, "-c", _COUNT_TRIALS, str(run / "study.journal")], capture_output=True, text=True,
        check=True).stdout)  # fmt: skip
    assert study_trials == len(trials_before)


def test_the_final_fit_continues_from_its_checkpoint_after_a_kill(tmp_path: Path) -> None:
    run, store = tmp_path / "run", mlflow_store(tmp_path / "mlflow.db")
    search = ["search", "--data", "mnist5k", "--space", str(SPACE), "--trials", "1", "--executor", "inprocess",
              "--warm-start", "none", "--out", str(run), "--tracking-uri", store, "--no-progress"]  # fmt: skip
    _kill_when(
        _start(search, tmp_path),
        lambda: len(json.loads((run / "checkpoints" / "final-0.json").read_text() or "[]")) >= 2
        if (run / "checkpoints" / "final-0.json").is_file() else False,
    )  # fmt: skip
    epochs_done = len(json.loads((run / "checkpoints" / "final-0.json").read_text()))
    done = subprocess.run([sys.executable, "-m", "automl_cnn", "resume", str(run), "--no-progress"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "resuming at the final fit (the trials are over; none is started)" in done.stdout
    assert f"final-0: resumed from epoch {epochs_done} (checkpoint of an earlier driver)" in done.stdout
    history = MlflowClient(store).get_metric_history(
        next(r.info.run_id for r in MlflowClient(store).search_runs(["1"], "tags.`automl_cnn.final_fit` = 'true'")
             if r.info.status == "FINISHED"), "train_loss")  # fmt: skip
    assert next(m.step for m in history) == epochs_done + 1  # the resumed fit trained only the epochs left


_COUNT_TRIALS = """
import json, sys, optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage
storage = JournalStorage(JournalFileBackend(sys.argv[1]))
print(json.dumps(sum(s.n_trials for s in optuna.get_all_study_summaries(storage))))
"""
