"""The command line as a user runs it: bad input gets one line and exit 2, nothing written."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from servers import free_port, wait_http

from automl_cnn.cli import main

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"


def _run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["--data", "no/such/folder"],
            "dataset 'no/such/folder' not found: give an existing path or one of: digits, mnist5k",
        ),
        (["--data", "digits", "--space", "nope"], "search space 'nope' not found; give a YAML path or one of:"),
        (
            ["--data", "digits", "--time-budget", "ten minutes"],
            "argument --time-budget: expected a duration like 90s, 10m or 1h, got 'ten minutes'",
        ),
        (["--data", "digits", "--sampler", "bayes"], "argument --sampler: invalid choice: 'bayes'"),
        (["--data", "digits", "--trials", "0"], "argument --trials: expected a positive integer, got '0'"),
        (["--data", "digits", "--image-size", "3x4x5"], "argument --image-size: expected a size like 32 or 32x48"),
        (["--data", "digits", "--split", "1,2"], "argument --split: expected three fractions like 0.7,0.15,0.15"),
        (["--data", "digits", "--memory-budget", "lots"], "argument --memory-budget: expected a size like 512MB"),
        (["--data", "digits", "--stream", "--in-memory"], "argument --in-memory: not allowed with argument --stream"),
        (["--data", "digits", "--executor", "dask"], "argument --executor: invalid choice: 'dask'"),
        (["--data", "digits", "--objective", "params"], "the first objective must be accuracy"),
        (["--data", "digits", "--warm-start", "nope"], "unknown warm start 'nope'; use one of: classics"),
        (
            ["--data", "digits", "--tracking-uri", "http://127.0.0.1:9"],
            "cannot reach the MLflow server at http://127.0.0.1:9",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    args: list[str], words: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _out, err = _run_main(["search", *args], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert words in lines[0]
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no runs/ folder, no mlflow.db


def test_usage_errors_point_to_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run_main(["search", "--data", "digits", "--split", "1,2"], capsys)
    assert (code, err) == (
        2,
        "error: argument --split: expected three fractions like 0.7,0.15,0.15, got '1,2' "
        "(see 'automl-cnn search --help')\n",
    )


def test_search_help_shows_the_groups_every_default_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run_main(["search", "--help"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert any("--time-budget" in line for line in lines[:40])  # on the first screen
    titles = [line[:-1] for line in lines if re.fullmatch(r"[a-z]+:", line)]
    assert titles == ["options", "budget", "search", "data", "final", "limits", "cluster", "tracking", "examples"]
    # each option's entry (its flag line to the next flag line) names its default
    body = out[: out.index("\nexamples:")]
    entries = re.split(r"\n  (?=-)", body)[1:]
    flags = [entry.split()[0].rstrip(",") for entry in entries]
    assert len(flags) > 40 and "--cpus-per-trial" in flags and "--no-progress" in flags
    for flag, entry in zip(flags, entries, strict=True):
        if flag not in ("-h", "--data"):
            assert "default" in " ".join(entry.split()), entry
    examples = out[out.index("examples:") :].splitlines()[1:]
    assert len([e for e in examples if e.strip().startswith("automl-cnn search --data")]) == 3


def test_ui_without_a_store_names_the_default_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = _run_main(["ui"], capsys)
    assert code == 2
    assert (
        err
        == f"error: no MLflow store at sqlite:///{tmp_path / 'mlflow.db'}; run a search first or pass --tracking-uri\n"
    )


def test_deleted_experiment_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(store)
    client.delete_experiment(client.create_experiment("old"))
    monkeypatch.chdir(tmp_path)
    args = ["--data", "digits", "--space", str(SPACES / "tiny.yaml"), "--trials", "1", "--no-progress"]
    code, _, err = _run_main(["search", *args, "--tracking-uri", store, "--experiment", "old"], capsys)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == ["error: MLflow experiment 'old' is deleted; restore it in the UI or pass --experiment NEW_NAME"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]  # no run folder
    assert client.search_runs([client.get_experiment_by_name("old").experiment_id]) == []


def test_malformed_space_file_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("blocks:\n  kernel_size: [0]\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = _run_main(["search", "--data", "digits", "--space", str(bad)], capsys)
    assert code == 2
    assert err.strip() == f"error: {bad}: blocks.kernel_size: 0 is below the minimum 1; use sizes such as 3, 5, 7"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def _cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.mark.slow
def test_cli_search_with_defaults_writes_store_and_model_in_the_working_directory(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "automl_cnn",
            "search",
            "--data",
            "digits",
            "--space",
            str(SPACES / "tiny.yaml"),
            "--trials",
            "4",
            "--workers",
            "2",
            "--max-epochs",
            "2",
            "--no-progress",
        ],
        cwd=tmp_path,
        env=_cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    registered = r"^registered model +models:/automl-cnn-digits-1x8x8-[0-9a-f]{8}@champion \(version 1\): promoted: "
    assert "test accuracy" in proc.stdout and re.search(registered + "there was no champion yet$", proc.stdout, re.M)
    assert (tmp_path / "mlflow.db").is_file()
    assert list((tmp_path / "mlartifacts").rglob("MLmodel"))
    outs = list((tmp_path / "runs").glob("digits-*"))
    assert len(outs) == 1 and (outs[0] / "model.json").is_file()
    for line in ("trial-0:", "final fit of trial"):
        assert line in proc.stdout
    summary = proc.stdout[proc.stdout.index("best architecture") :]
    counts = re.search(r"^trials +(\d+) completed, (\d+) pruned, (\d+) failed$", summary, re.M)
    assert counts and sum(map(int, counts.groups())) == 4, summary
    for pattern in (
        r"^validation accuracy \d{1,3}\.\d% \(\d{1,3}\.\d–\d{1,3}\.\d\)$",  # with its 95% interval
        r"^test accuracy +\d{1,3}\.\d% \(\d{1,3}\.\d–\d{1,3}\.\d\)$",
        r"^ +\(95% Wilson intervals over \d+ validation and \d+ test images\)$",
        r"^wall time +\d+ s$",
        rf"^model folder +{re.escape(str(outs[0]))}$",
        rf"^MLflow +sqlite:///{re.escape(str(tmp_path))}/mlflow\.db \(experiment \d+, run [0-9a-f]{{32}}\)$",
    ):
        assert re.search(pattern, summary, re.M), (pattern, summary)
    with (outs[0] / "trials.csv").open() as f:  # --max-epochs 2 caps the space's 3 epochs
        rows = list(csv.DictReader(f))
    completed = [int(row["epochs"]) for row in rows if row["outcome"] == "completed"]
    assert completed and set(completed) == {2} and max(int(row["epochs"]) for row in rows) == 2

    # `automl-cnn ui` serves the same store
    port = free_port()
    ui = subprocess.Popen(
        [sys.executable, "-m", "automl_cnn", "ui", "--port", str(port)],
        cwd=tmp_path,
        env=_cli_env(),
        stdout=(tmp_path / "ui.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc=ui)
        url = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search?max_results=10"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read().decode()
        assert '"name": "automl-cnn"' in body or '"name":"automl-cnn"' in body, body
    finally:
        os.killpg(ui.pid, 15)
        ui.wait(timeout=30)


def test_an_impossible_resource_request_is_refused_at_once_with_nothing_written(tmp_path: Path) -> None:
    import time

    start = time.monotonic()
    argv = ["search", "--data", "digits", "--space", "tiny", "--trials", "1", "--executor", "inprocess"]
    proc = subprocess.run(
        [sys.executable, "-m", "automl_cnn", *argv, "--cpus-per-trial", "512", "--out", str(tmp_path / "run")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and time.monotonic() - start < 60
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --cpus-per-trial 512 is more than")
    assert list(tmp_path.iterdir()) == []  # no MLflow store, no run folder


@pytest.mark.slow
def test_on_ray_a_gpu_request_without_gpus_is_refused_or_waited_for_then_ends(tmp_path: Path) -> None:
    """No GPU here: refused at once; with --wait-for-resources (an autoscaling cluster) it waits,
    says what for, and ends with one line once the wait is over."""
    import time

    argv = [sys.executable, "-m", "automl_cnn", "search", "--data", "digits", "--space", "tiny", "--trials", "2",
            "--gpus-per-trial", "1", "--no-progress"]  # fmt: skip
    start = time.monotonic()
    refused = subprocess.run([*argv, "--out", str(tmp_path / "a")], cwd=tmp_path, capture_output=True, text=True,
                             timeout=120)  # fmt: skip
    assert refused.returncode == 2 and time.monotonic() - start < 60, refused.stderr[-2000:]
    assert refused.stderr.strip().splitlines()[-1].startswith("error: --gpus-per-trial 1 is more than the Ray cluster")
    start = time.monotonic()
    waited = subprocess.run(
        [*argv, "--wait-for-resources", "15s", "--out", str(tmp_path / "b")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert waited.returncode == 2 and time.monotonic() - start < 60, waited.stderr[-2000:]
    assert "waiting for resources: 2 worker(s) need 1 CPU and 1 GPU each" in waited.stdout
    last = waited.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no worker could be placed on the Ray cluster for 1")
    assert "--wait-for-resources" in last
    state = json.loads((tmp_path / "b" / "run.json").read_text())
    assert state["state"] != "finished"  # resumable later, when the cluster has grown
