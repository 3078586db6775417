"""The cluster topology of docker-compose.yml, as plain processes: a Ray head and a second Ray
node started with ``ray start`` on this machine (token authentication on), an ``mlflow server``
with proxied artifacts, and a search driven through ``--ray-address`` and ``--tracking-uri``."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from servers import free_port, mlflow_cmd, process, wait_http

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "search_spaces" / "tiny.yaml"
RAY = str(Path(sys.executable).parent / "ray")


@pytest.fixture
def cluster() -> Iterator[tuple[str, dict[str, str]]]:
    """A two-node Ray cluster on this machine; yields (address, environment for its clients)."""
    temp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's socket paths must fit
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus", "1", "--disable-usage-stats", "--node-ip-address", "127.0.0.1"]
    try:
        subprocess.run(
            [RAY, "start", "--head", "--port", str(port), "--include-dashboard=false", f"--temp-dir={temp}", *common],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [RAY, "start", f"--address={address}", *common], env=env, check=True, capture_output=True, timeout=120
        )
        yield address, env
    finally:
        _stop_processes_using(temp)  # only this cluster's (a plain `ray stop` would end every Ray here)
        shutil.rmtree(temp, ignore_errors=True)


def _stop_processes_using(folder: str) -> None:
    """SIGKILL every process whose command line or open files mention ``folder`` (Ray's agents
    rename themselves, so their command line no longer does)."""
    me = os.getpid()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == me:
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="ignore")
            files = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if folder in cmd or any(folder in f for f in files):
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGKILL)


def test_search_on_a_two_node_cluster_with_an_mlflow_server(cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    address, env = cluster
    # the health check docker-compose.yml gives each ray-worker holds on a node of this cluster
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    check = compose["services"]["ray-worker"]["healthcheck"]["test"][1].replace("ray-head:6379", address)
    assert subprocess.run(["sh", "-c", check], env={**env, "PATH": f"{Path(RAY).parent}:{env['PATH']}"}).returncode == 0

    # a wrong token: one line naming the fix, exit 2, nothing written
    store = f"sqlite:///{tmp_path / 'bad.db'}"
    args = ["--data", "digits", "--space", str(TINY), "--trials", "1", "--ray-address", address]
    bad = subprocess.run(
        [sys.executable, "-m", "automl_cnn", "search", *args, "--tracking-uri", store, "--out", str(tmp_path / "b")],
        cwd=tmp_path,
        env={**env, "RAY_AUTH_TOKEN": "0" * 64},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2, bad.stdout[-2000:] + bad.stderr[-2000:]
    lines = [line for line in bad.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and f"cannot connect to the Ray cluster at {address}" in lines[0], bad.stderr[-2000:]
    assert "RAY_AUTH_TOKEN" in lines[0]
    assert not (tmp_path / "b").exists() and not (tmp_path / "bad.db").exists()
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = mlflow_cmd(
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination",
        str(tmp_path / "server-artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    )
    with process(server, tmp_path / "server.log") as srv:
        wait_http(f"{uri}/health", proc=srv)
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "automl_cnn",
                "search",
                "--data",
                "digits",
                "--space",
                str(TINY),
                "--trials",
                "4",
                "--ray-address",
                address,
                "--tracking-uri",
                uri,
                "--experiment",
                "cluster",
                "--model-name",
                "cluster-cnn",
                "--out",
                str(tmp_path / "run"),
                "--no-progress",
                "--warm-start",
                "none",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert "with 2 worker(s)" in run.stdout
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("cluster")
        runs = client.search_runs([exp.experiment_id], max_results=100)
        trials = [r for r in runs if "automl_cnn.trial" in r.data.tags]
        assert len(trials) == 4
        nodes = {
            r.data.tags.get("automl_cnn.worker.node_id") for r in trials if r.data.tags.get("automl_cnn.worker.node_id")
        }
        assert len(nodes) == 2, nodes  # trials ran on both nodes
        parent = next(r for r in runs if r.data.tags.get("automl_cnn.role") == "search")
        plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
        assert "plots/confusion_matrix.png" in plots  # artifacts went through the server's proxy
        assert (tmp_path / "server-artifacts").is_dir() and any((tmp_path / "server-artifacts").rglob("MLmodel"))
        version = client.get_model_version_by_alias("cluster-cnn", "champion")
        assert version.run_id == parent.info.run_id
        assert not [r for r in runs if r.info.status == "RUNNING"]
