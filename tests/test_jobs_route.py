"""The Ray Jobs route on simulated hosts (see tests/netns.py): a laptop that is no Ray node submits
the search as a Ray job to the head's job server (``ray job submit --address http://HEAD:8265``),
with the cluster's token authentication on, streams its logs, and finds the job SUCCEEDED and
its runs and the ``champion`` alias on the MLflow server.

The head runs docker-compose.yml's ``ray-head`` command as written (one more CPU appended, so the
driver's reserved CPU leaves one for the trials); the MLflow server is a plain ``mlflow server``
on a host of its own (tests/test_multihost.py covers the compose MLflow and PostgreSQL services).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from compose_hosts import ROOT, VENV_BIN, dotenv, run_service, service, service_env
from netns import Host, network, skip_reason

pytestmark = pytest.mark.slow
HOSTS = ["ray-head", "mlflow", "laptop"]
SUBMISSION = "automl-cnn-search-1"


def _mlflow_up(host: Host, env: dict[str, str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    probe = ["python", "-c", _ANSWERS.format(url="http://mlflow:5000/health")]
    while host.run(probe, env, timeout=30).returncode != 0:
        assert time.monotonic() < deadline, "the MLflow server did not answer"
        time.sleep(1)


def _job_server_up(host: Host, env: dict[str, str], timeout: float = 180) -> None:
    """The head's job server answers (it starts after the GCS; a job waits for the raylet)."""
    probe = ["python", "-c", _ANSWERS.format(url="http://ray-head:8265/api/version")]
    deadline = time.monotonic() + timeout
    while host.run(probe, env, timeout=30).returncode != 0:
        assert time.monotonic() < deadline, "the head's job server did not answer on port 8265"
        time.sleep(1)


_ANSWERS = """
import urllib.error, urllib.request
try:
    urllib.request.urlopen("{url}", timeout=5)
except urllib.error.HTTPError:
    pass  # it answers (a 401 without the token)
"""


def _search_argv(out: Path) -> list[str]:
    """The search as the job runs it: the image's installed package, the run folder on storage every
    node mounts (here the test's own folder, which every simulated host sees)."""
    return ["automl-cnn", "search", "--data", "digits", "--space", "search_spaces/tiny.yaml", "--trials", "2",
            "--workers", "1", "--tracking-uri", "http://mlflow:5000", "--experiment", "jobs-route",
            "--out", str(out), "--no-progress"]  # fmt: skip


_CHECKS = """
import json, urllib.error, urllib.request
from mlflow import MlflowClient
from ray.job_submission import JobSubmissionClient
status = JobSubmissionClient("http://ray-head:8265").get_job_status("{submission}").value
try:  # the job server without the cluster's token
    anonymous = urllib.request.urlopen("http://ray-head:8265/api/jobs/", timeout=10).status
except urllib.error.HTTPError as exc:
    anonymous = exc.code
c = MlflowClient("http://mlflow:5000")
exp = c.get_experiment_by_name("jobs-route")
runs = c.search_runs([exp.experiment_id], max_results=1000)
trials = [r for r in runs if r.data.tags.get("automl_cnn.trial") is not None]
hosts = sorted(set(r.data.tags.get("automl_cnn.worker.host", "") for r in trials))
champion = c.get_model_version_by_alias("{model}", "champion").version
print(json.dumps(dict(status=status, anonymous=anonymous, trials=len(trials), hosts=hosts, champion=champion)))
"""


@contextlib.contextmanager
def _cluster(work: Path, env: dict[str, str]) -> Iterator[dict[str, Host]]:
    """The compose head (one more CPU, for the driver's reserved one) and a plain MLflow server."""
    head_svc = service("ray-head", env)
    logs = work / "logs"
    with network(HOSTS, work / "hosts", cwd=str(ROOT)) as hosts:
        run_service(hosts["ray-head"], head_svc, logs, ["--num-cpus=2"])
        store = work / "mlflow"
        hosts["mlflow"].popen(
            ["mlflow", "server", "--backend-store-uri", f"sqlite:///{store}/mlflow.db",
             "--artifacts-destination", str(store / "artifacts"), "--serve-artifacts",
             "--host", "0.0.0.0", "--port", "5000", "--allowed-hosts", "mlflow:5000"],
            service_env({}), logs / "mlflow.log",
        )  # fmt: skip
        _mlflow_up(hosts["laptop"], service_env({}))
        _job_server_up(hosts["laptop"], service_env({}))
        yield hosts


def test_a_laptop_submits_the_search_as_a_ray_job() -> None:
    why = skip_reason()
    if why:
        pytest.skip(why)
    work = Path(tempfile.mkdtemp(prefix="acnn-jobs-", dir="/tmp"))
    (work / "logs").mkdir()
    env = dotenv()
    laptop_env = service_env(service("search", env))  # the cluster's token, in the environment only
    out = work / "runs" / "digits"
    try:
        with _cluster(work, env) as hosts:
            started = time.monotonic()
            submit = [f"{VENV_BIN}/ray", "job", "submit", "--address", "http://ray-head:8265", "--submission-id",
                      SUBMISSION, "--entrypoint-num-cpus", "1", "--", *_search_argv(out)]  # fmt: skip
            done = hosts["laptop"].run(submit, laptop_env, timeout=400)  # it streams the job's logs
            took = time.monotonic() - started
            said = done.stdout + done.stderr
            (work / "logs" / "submit.log").write_text(said)
            assert done.returncode == 0, said[-4000:]
            assert f"Job '{SUBMISSION}' succeeded" in said, said[-3000:]
            assert "final fit of trial" in said  # the driver's own output, followed from the laptop

            state = json.loads((out / "run.json").read_text())
            assert state["state"] == "finished" and state["model_uri"]
            model = state["model_uri"].split("/")[1].split("@")[0]
            query = hosts["laptop"].run(
                ["python", "-c", _CHECKS.format(submission=SUBMISSION, model=model)], laptop_env
            )
            assert query.returncode == 0, query.stderr[-2000:]
            found = json.loads(query.stdout.strip().splitlines()[-1])
            assert found["status"] == "SUCCEEDED", found  # through the Jobs API, with the token
            assert found["anonymous"] in (401, 403), found  # the job server is behind the cluster's token
            assert found["trials"] == 2 and found["champion"], found
            assert found["hosts"] == ["ray-head"], found  # trained on the cluster, not on the laptop
            print(f"job submitted, run and checked in {took:.0f} s: {found}")
    finally:
        dest = ROOT / "test-artifacts" / "jobs-route"
        for log in sorted((work / "logs").glob("*.log")):  # kept beside the test artifacts for a failure
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, dest / log.name)
        shutil.rmtree(work, ignore_errors=True)
