"""A driver host that shares its process table with a Ray node but not its ``/tmp/ray`` (a container
started with ``--pid=host``; network namespaces on one machine without PID namespaces of their own),
on simulated hosts (see tests/netns.py).

Ray finds "local" raylets by their command lines, so such a host sees the head's raylet as its
own, and ``ray.init`` used to attach to it and die in C++ ("Failed to connect to socket ...
sockets/raylet"). The driver now counts a raylet as local only where its socket can be reached:
it joins the cluster as a zero-resource node of its own and attaches to that one; the search
runs and the node leaves when it ends.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from compose_hosts import ROOT, dotenv, healthy, run_service, service, service_env
from netns import network, skip_reason

pytestmark = pytest.mark.slow
HOSTS = ["ray-head", "side"]

_SEES = """
import json, os
from ray._private.services import find_node_ids
print(json.dumps(dict(raylets=sorted(find_node_ids()), own_tmp_ray=sorted(os.listdir("/tmp/ray")))))
"""


def test_a_driver_sharing_the_heads_process_table_joins_as_a_node_of_its_own() -> None:
    why = skip_reason()
    if why:
        pytest.skip(why)
    work = Path(tempfile.mkdtemp(prefix="acnn-pids-", dir="/tmp"))
    logs = work / "logs"
    logs.mkdir()
    env = dotenv()
    head_svc = service("ray-head", env)
    driver_env = service_env({"environment": head_svc["environment"]})  # the cluster's token only
    out = work / "run"
    try:
        with network(HOSTS, work / "hosts", cwd=str(ROOT), shared_pids=["side"]) as hosts:
            run_service(hosts["ray-head"], head_svc, logs)
            healthy(hosts["ray-head"], head_svc)
            side = hosts["side"]
            seen = side.run(["python", "-c", _SEES], driver_env)
            sees = json.loads(seen.stdout.strip().splitlines()[-1])
            assert sees["raylets"] and sees["own_tmp_ray"] == [], sees  # the head's raylet, not its sockets

            started = time.monotonic()
            argv = ["automl-cnn", "search", "--data", "digits", "--space", "search_spaces/tiny.yaml", "--trials", "1",
                    "--ray-address", "ray-head:6379", "--tracking-uri", f"sqlite:///{work}/mlflow.db",
                    "--out", str(out), "--no-progress"]  # fmt: skip
            done = side.run(argv, driver_env, timeout=400)
            took = time.monotonic() - started
            said = done.stdout + done.stderr
            (logs / "driver.log").write_text(said)
            assert "Failed to connect to socket" not in said and "*** SIG" not in said, said[-3000:]
            assert done.returncode == 0, said[-3000:]
            state = json.loads((out / "run.json").read_text())
            assert state["state"] == "finished"
            records = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
            assert [r["outcome"] for r in records] == ["completed"], records
            # the node it joined as has left: no raylet of its own is left on the side host
            listed = subprocess.run(["ip", "netns", "pids", side.ns], capture_output=True, text=True).stdout.split()
            names = {Path(f"/proc/{pid}/comm").read_text().strip() for pid in listed if Path(f"/proc/{pid}").exists()}
            assert "raylet" not in names, names
            print(f"search from the shared-process-table host in {took:.0f} s")
    finally:
        dest = ROOT / "test-artifacts" / "shared-process-table"
        for log in sorted(logs.glob("*.log")):  # kept beside the test artifacts for a failure
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, dest / log.name)
        shutil.rmtree(work, ignore_errors=True)
