"""Losing the Ray head mid-search, on simulated hosts (see tests/netns.py), and continuing on a new one.

Hosts: ``head`` (a Ray head, docker-compose.yml's command), ``worker`` (a Ray worker node), ``db``
(PostgreSQL for the Optuna study, an ``mlflow server``), ``laptop`` (the driver, no Ray node of
its own; its run folder stands for the shared storage: only the driver writes it), and ``head2``
(the new head). The head host is switched off once a trial finished and another has a
checkpoint; the driver ends with one line naming ``automl-cnn resume RUN --ray-address``, exit 3.
A new head starts on ``head2``, the worker host reboots and joins it, and ``automl-cnn resume RUN
--ray-address head2:6379`` from the laptop finishes the search: finished trials are kept as they
were, an interrupted one continues from its checkpoint, the model is registered once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from compose_hosts import ROOT, healthy, run_service, service, service_env, start_postgres
from compose_hosts import dotenv as make_dotenv
from netns import Host, network, skip_reason
from runfolders import checkpointed, ended_trials, mid_trials

HOSTS = ["db", "head", "worker", "laptop", "head2"]
SLOW = ROOT / "tests" / "spaces" / "slow_long.yaml"
EPOCHS = 200  # the space's: a trial caught early still trains well past the 10-12 s the driver
# takes to notice a lost head (the worker host's trials train on meanwhile; at 25 epochs of about
# 0.1 s every trial had ended by then on a quiet machine, and no trial was left to resume)
LEFT = 180  # the head goes while a trial has at least this many epochs to train


def _nodes(host: Host, env: dict[str, str], head: str) -> int:
    """Alive nodes of the cluster whose head is ``head``, as ``ray status`` lists them."""
    done = host.run(["ray", "status", f"--address={head}:6379"], env, timeout=60)
    active = done.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
    return active.count("node_") if done.returncode == 0 else 0


def _wait(what: str, check, timeout: float, log: Path | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        tail = log.read_text()[-3000:] if log and log.exists() else ""
        assert time.monotonic() < deadline, f"{what} after {timeout:.0f} s\n{tail}"
        time.sleep(0.5)


def _search(out: Path) -> list[str]:
    return ["automl-cnn", "search", "--data", "digits", "--space", str(SLOW), "--trials", "6", "--workers", "2",
            "--max-epochs", str(EPOCHS), "--pruner", "none", "--warm-start", "none", "--ensemble", "off",
            "--ray-address", "head:6379", "--storage", "postgresql://automl@db:5432/optuna",
            "--tracking-uri", "http://db:5000", "--experiment", "head-loss", "--model-name", "headloss",
            "--out", str(out), "--no-progress"]  # fmt: skip


_VERSIONS = """
import json
from mlflow import MlflowClient
versions = MlflowClient("http://db:5000").search_model_versions("name='headloss'")
print(json.dumps(dict(versions=len(versions))))
"""


def _start_db(hosts: dict[str, Host], env: dict[str, str], work: Path) -> None:
    """PostgreSQL (the compose service's set-up: databases mlflow and optuna) and an MLflow server."""
    start_postgres(hosts["db"], service("postgres", env), work / "logs")
    store = work / "mlflow"
    hosts["db"].popen(
        ["mlflow", "server", "--backend-store-uri", f"sqlite:///{store}/mlflow.db",
         "--artifacts-destination", str(store / "artifacts"), "--serve-artifacts",
         "--host", "0.0.0.0", "--port", "5000", "--allowed-hosts", "db:5000"],
        service_env({}), work / "logs" / "mlflow.log",
    )  # fmt: skip


def _start_cluster(hosts: dict[str, Host], env: dict[str, str], logs: Path, head: str) -> None:
    """A Ray head on ``head`` and the worker host (rebooted) joined to it."""
    head_svc = service("ray-head", env)
    run_service(hosts[head], head_svc, logs)
    healthy(hosts[head], head_svc, timeout=120)
    worker = hosts["worker"]
    if worker.init_pid:
        worker.power_off()
    worker.power_on()
    run_service(worker, service("ray-worker", env), logs, ["--num-cpus=2", f"--address={head}:6379"])
    _wait(f"the worker did not join {head}", lambda: _nodes(hosts[head], service_env(head_svc), head) >= 2, 120)


_WATCH = """
import socket, time
from automl_cnn.services.ray_runtime import HeadWatch
with socket.socket() as closed:  # a port nothing listens on: a head that is gone
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
HeadWatch(f"127.0.0.1:{port}", "/runs/x", after=1.0).start()
time.sleep(30)
"""


def test_a_driver_whose_head_stops_answering_ends_with_the_resume_line() -> None:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", _WATCH], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr[-2000:]
    line = r"error: lost the Ray head at 127\.0\.0\.1:\d+ \(no answer for \d+ s\); the search stopped and "
    line += r"can continue on a new head: automl-cnn resume /runs/x --ray-address NEW_HEAD:6379"
    assert re.fullmatch(line, done.stderr.strip().splitlines()[-1]), done.stderr[-2000:]
    assert time.monotonic() - started < 20  # not a hang


@pytest.mark.slow
def test_a_search_whose_head_is_lost_continues_on_a_new_head() -> None:
    why = skip_reason()
    if why:
        pytest.skip(why)
    missing = [tool for tool in ("initdb", "postgres", "psql", "setpriv") if not shutil.which(tool)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (PostgreSQL, util-linux)")
    work = Path(tempfile.mkdtemp(prefix="acnn-headloss-", dir="/tmp"))
    os.chmod(work, 0o755)  # PostgreSQL runs as nobody below it
    logs = work / "logs"
    logs.mkdir()
    env = make_dotenv()
    laptop_env = {**service_env(service("search", env)), "PYTHONUNBUFFERED": "1"}
    out = work / "runs" / "digits"
    started = time.monotonic()
    try:
        binds = {"db": {"/var/run/postgresql": work / "pgsock"}}
        with network(HOSTS, work / "hosts", binds=binds, cwd=str(ROOT)) as hosts:
            _start_db(hosts, env, work)
            _start_cluster(hosts, env, logs, "head")
            print(f"cluster up in {time.monotonic() - started:.0f} s")
            laptop = hosts["laptop"]
            driver = laptop.popen(_search(out), laptop_env, logs / "driver.log")
            _wait("no trial finished while another had a checkpoint",
                  lambda: driver.poll() is None and len(ended_trials(out)) >= 1 and bool(mid_trials(out, EPOCHS, LEFT)),
                  240, logs / "driver.log")  # fmt: skip
            hosts["head"].power_off()  # the head host is lost, with the GCS and everything on it
            lost = time.monotonic()
            rc = driver.wait(timeout=90)
            said = (logs / "driver.log").read_text()
            last = said.strip().splitlines()[-1]
            assert rc == 3, said[-3000:]
            assert f"automl-cnn resume {out} --ray-address NEW_HEAD:6379" in last, said[-3000:]
            print(f"the driver ended {time.monotonic() - lost:.0f} s after the head was lost: {last}")
            state = json.loads((out / "run.json").read_text())  # whole, and not finished
            assert state["state"] != "finished"
            before = ended_trials(out)
            interrupted = [n for n in checkpointed(out) if n not in before]
            assert before and interrupted, (sorted(before), said[-2000:])

            laptop.power_off()  # the dead driver's zero-CPU node goes with it
            laptop.power_on()
            _start_cluster(hosts, env, logs, "head2")
            print(f"new head and worker up {time.monotonic() - lost:.0f} s after the loss")
            resumed_at = time.monotonic()
            resume = ["automl-cnn", "resume", str(out), "--ray-address", "head2:6379", "--no-progress"]
            done = laptop.run(resume, laptop_env, timeout=400)
            said = done.stdout + done.stderr
            (logs / "resume.log").write_text(said)
            assert done.returncode == 0, said[-4000:]
            print(f"resume finished in {time.monotonic() - resumed_at:.0f} s")
            assert "resumed from epoch" in done.stdout, said[-3000:]

            after = ended_trials(out)
            for number, rec in before.items():  # nothing finished was run again
                assert after[number] == rec
            assert len((out / "trials.jsonl").read_text().splitlines()) == len(after)
            for number in interrupted:  # continued from its checkpoint: every epoch once
                assert [e["epoch"] for e in after[number]["history"]] == list(range(1, EPOCHS + 1))
            state = json.loads((out / "run.json").read_text())
            assert state["state"] == "finished" and state["model_uri"]
            query = laptop.run(["python", "-c", _VERSIONS], laptop_env)
            assert query.returncode == 0, query.stderr[-2000:]
            assert json.loads(query.stdout.strip().splitlines()[-1]) == {"versions": 1}  # registered once
            print(f"head lost and search resumed on a new head in {time.monotonic() - started:.0f} s")
    finally:
        dest = ROOT / "test-artifacts" / "head-loss"
        for log in sorted(logs.glob("*.log")):  # kept beside the test artifacts for a failure
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, dest / log.name)
        shutil.rmtree(work, ignore_errors=True)


def test_resume_takes_the_ray_address_of_a_new_head() -> None:
    from automl_cnn.cli import build_parser

    args = build_parser().parse_args(["resume", "runs/x", "--ray-address", "head2:6379"])
    assert (args.command, args.ray_address) == ("resume", "head2:6379")
    assert build_parser().parse_args(["resume", "runs/x"]).ray_address is None  # the recorded one
