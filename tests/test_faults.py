"""Fault tolerance with real processes: a worker killed mid-trial, the driver killed mid-search."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from runfolders import ended_trials, mid_trials
from stores import mlflow_store

from automl_cnn.engine.outcome import TrialAttrs
from automl_cnn.engine.search.warmstart import load_study

pytestmark = pytest.mark.slow
SLOW = Path(__file__).resolve().parent / "spaces" / "slow.yaml"


@pytest.fixture
def ray_tmp() -> Iterator[str]:
    """A Ray temp folder of the test's own, so its processes can be told from any other Ray's."""
    folder = tempfile.mkdtemp(prefix="rf", dir="/tmp")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _env(ray_tmp: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": ray_tmp}


def _cli(args: list[str], cwd: Path, ray_tmp: str) -> subprocess.Popen:  # type: ignore[type-arg]
    return subprocess.Popen(
        [sys.executable, "-m", "automl_cnn", *args],
        cwd=cwd,
        env=_env(ray_tmp),
        stdout=(cwd / "out.log").open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for(predicate, timeout: float = 240.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise TimeoutError("condition not reached")


def _search_args(run: Path, trials: int, *extra: str) -> list[str]:
    """A slow digits search on two workers, no early stopping, no warm starts and no ensemble
    (faults in the trials are the subject; one final fit is enough)."""
    return [
        "search", "--data", "digits", "--space", str(SLOW), "--trials", str(trials), "--workers", "2",
        "--pruner", "none", "--warm-start", "none", "--ensemble", "off", "--out", str(run), "--no-progress", *extra,
    ]  # fmt: skip


def _worker_pids(ray_tmp: str) -> list[int]:
    """Trial workers of the Ray runtime living in ``ray_tmp`` (found by the log files they hold)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    pids = []
    for line in out.splitlines():
        if "ray::RayTrialWorker" not in line:
            continue
        pid = int(line.split()[0])
        try:
            files = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if any(f.startswith(ray_tmp) for f in files):
            pids.append(pid)
    return pids


def _no_running_runs(store: str) -> None:
    client = MlflowClient(store)
    for exp in client.search_experiments():
        running = [r.info.run_name for r in client.search_runs([exp.experiment_id]) if r.info.status == "RUNNING"]
        assert not running, running


def test_worker_killed_mid_trial_is_retried_from_its_checkpoint(tmp_path: Path, ray_tmp: str) -> None:
    run = tmp_path / "run"
    args = _search_args(run, 3)
    proc = _cli(args, tmp_path, ray_tmp)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")

    def busy_worker_with_checkpoint() -> int | None:
        """The pid of a worker whose trial has saved a checkpoint and has epochs left (so it is
        mid-trial, and still will be when killed: the trial is checked again after the slow
        look-ups, right before the kill)."""
        for number in mid_trials(run, 25):
            found = client.search_runs(["1"], filter_string=f"tags.`automl_cnn.trial` = '{number}'")
            pid = found[0].data.tags.get("automl_cnn.worker.pid") if found else None
            if pid and int(pid) in _worker_pids(ray_tmp) and number in mid_trials(run, 25):
                return int(pid)
        return None

    try:
        deadline = time.monotonic() + 240
        victim = None
        while victim is None and time.monotonic() < deadline:
            victim = busy_worker_with_checkpoint()
            time.sleep(0.2)
        assert victim is not None, "no trial reached a checkpoint"
        os.kill(victim, signal.SIGKILL)
        assert proc.wait(timeout=400) == 0, (tmp_path / "out.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    log = (tmp_path / "out.log").read_text()
    assert "its worker died; retry 1/2 from epoch" in log
    records = list(ended_trials(run).values())
    retried = [r for r in records if r["retries"] >= 1]
    assert retried and all(r["outcome"] == "completed" for r in retried)
    assert len(records) == 3 and all(r["outcome"] in ("completed", "pruned", "failed") for r in records)
    # the retried trial's curve has each epoch once, as if nothing happened
    assert [e["epoch"] for e in retried[0]["history"]] == list(range(1, 26))
    study = load_study(run)
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in study.trials)
    _no_running_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_driver_killed_then_resumed_finishes_the_same_search(tmp_path: Path, ray_tmp: str) -> None:
    run = tmp_path / "run"
    store = mlflow_store(tmp_path / "mlflow.db")
    args = _search_args(run, 4, "--model-name", "faults", "--max-epochs", "15")
    proc = _cli(args, tmp_path, ray_tmp)
    try:
        # wait until one trial finished and another is part-way, with epochs left to train
        _wait_for(lambda: len(ended_trials(run)) >= 1 and bool(mid_trials(run, 15)))
        os.kill(proc.pid, signal.SIGKILL)  # the driver only: no clean-up of any kind
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = ended_trials(run)
    interrupted = mid_trials(run, 15 + 2)  # every unfinished trial with a checkpoint
    assert before and interrupted
    _wait_for(lambda: not _worker_pids(ray_tmp), timeout=60)  # Ray ends the dead driver's workers

    resumed = subprocess.run(
        [sys.executable, "-m", "automl_cnn", "resume", str(run), "--no-progress"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resumed from epoch" in resumed.stdout
    after = ended_trials(run)
    # the budget of 4 trials, as a whole; a trial the driver was killed in before it sampled its candidate has no record
    unsampled = {t.number for t in load_study(run).trials if TrialAttrs.read(t).candidate is None}
    assert sorted(after) == sorted({0, 1, 2, 3} - unsampled) and len(unsampled) <= 1
    for number, rec in before.items():  # no finished trial was run again
        assert after[number] == rec
    lines = (run / "trials.jsonl").read_text().splitlines()
    assert len(lines) == len(after)
    for number in interrupted:  # continued from its checkpoint: every epoch once
        assert [e["epoch"] for e in after[number]["history"]] == list(range(1, 16))
    client = MlflowClient(store)
    versions = client.search_model_versions("name = 'faults'")
    assert len(versions) == 1 and client.get_model_version_by_alias("faults", "champion").version == versions[0].version
    study = load_study(run)
    assert len(study.trials) == 4 and all(t.state != optuna.trial.TrialState.RUNNING for t in study.trials)
    _no_running_runs(store)
    assert json.loads((run / "run.json").read_text())["state"] == "finished"
    again = subprocess.run(
        [sys.executable, "-m", "automl_cnn", "resume", str(run)], cwd=tmp_path, capture_output=True, text=True
    )
    assert again.returncode == 2 and "already finished" in again.stderr


def test_interrupted_search_closes_its_runs_and_resumes(tmp_path: Path, ray_tmp: str) -> None:
    """`kill PID` (SIGTERM) or Ctrl-C: exit 130, no MLflow run left RUNNING, and `resume`
    continues the interrupted trials instead of discarding them."""
    run = tmp_path / "run"
    store = mlflow_store(tmp_path / "mlflow.db")
    args = _search_args(run, 3)
    proc = _cli(args, tmp_path, ray_tmp)
    try:
        _wait_for(lambda: bool(mid_trials(run, 25)))
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=120) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    _no_running_runs(store)
    study = load_study(run)
    assert any(t.state == optuna.trial.TrialState.RUNNING for t in study.trials)  # kept for resume
    resumed = subprocess.run(
        [sys.executable, "-m", "automl_cnn", "resume", str(run), "--no-progress"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(ray_tmp),
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resumed from epoch" in resumed.stdout
    assert len(ended_trials(run)) == 3
    _no_running_runs(store)
