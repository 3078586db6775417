"""deploy/kuberay/rayjob.yaml, checked without Kubernetes (none runs here): it runs the image and the
search command of docker-compose.yml, and every secret comes from a Kubernetes Secret."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from automl_cnn.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET", "USERNAME")


@pytest.fixture(scope="module")
def job() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "deploy" / "kuberay" / "rayjob.yaml").read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]  # type: ignore[no-any-return]


def _containers(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = job["spec"]
    cluster = spec["rayClusterSpec"]
    pods = {
        "head": cluster["headGroupSpec"]["template"],
        "submitter": spec["submitterPodTemplate"],
        **{f"worker {g['groupName']}": g["template"] for g in cluster["workerGroupSpecs"]},
    }
    return {name: pod["spec"]["containers"][0] for name, pod in pods.items()}


def _without_ray_address(argv: list[str]) -> list[str]:
    at = argv.index("--ray-address")
    return argv[:at] + argv[at + 2 :]


def test_it_is_a_rayjob_of_the_pinned_ray(job: dict[str, Any]) -> None:
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    pins = dict(line.split("==") for line in (ROOT / "docker/constraints.txt").read_text().split() if "==" in line)
    assert job["spec"]["rayClusterSpec"]["rayVersion"] == pins["ray"]
    assert job["spec"]["shutdownAfterJobFinishes"] is True


def test_every_pod_runs_the_compose_image(job: dict[str, Any], services: dict[str, Any]) -> None:
    images = {svc["image"] for svc in services.values() if svc.get("build")}
    assert len(images) == 1
    for name, container in _containers(job).items():
        assert container["image"] == next(iter(images)), name


def test_the_entrypoint_is_the_compose_search_command(job: dict[str, Any], services: dict[str, Any]) -> None:
    """The same arguments but --ray-address: a job's driver finds its cluster in RAY_ADDRESS."""
    entrypoint = shlex.split(job["spec"]["entrypoint"])
    compose_cmd = [str(a) for a in services["search"]["command"]]
    assert entrypoint == _without_ray_address(compose_cmd)
    args = build_parser().parse_args(entrypoint[1:])  # the real CLI: an unknown flag fails here
    assert args.ray_address is None
    head = _containers(job)["head"]
    mounts = {m["mountPath"] for m in head["volumeMounts"]}
    assert str(Path(args.out).parent) in mounts  # the run folder is on the volume, not the pod's disk
    assert (ROOT / args.space).is_file() and head["workingDir"] == "/app"  # the Dockerfile's WORKDIR
    assert "WORKDIR /app" in (ROOT / "Dockerfile").read_text()
    assert not job["spec"].get("entrypointNumCpus")  # so the driver runs on the head, which has its secrets


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def test_secrets_come_from_a_kubernetes_secret_as_compose_takes_them_from_env(
    job: dict[str, Any], services: dict[str, Any]
) -> None:
    containers = _containers(job)
    wanted = {
        "head": set(services["search"]["environment"]),  # the driver runs there
        "worker gpu": set(services["ray-worker"]["environment"]),
        "submitter": set(services["ray-worker"]["environment"]),  # `ray job submit` needs the token
    }
    for name, container in containers.items():
        env = _env(container)
        assert set(env) == wanted[name], name
        for var, item in env.items():
            if any(word in var for word in SECRET_WORDS):
                assert "value" not in item, (name, var)  # never literal
                ref = item["valueFrom"]["secretKeyRef"]
                assert ref["name"] == "automl-cnn" and ref["key"], (name, var)
            else:
                assert item["value"] == services["search"]["environment"][var], (name, var)
    text = (ROOT / "deploy" / "kuberay" / "rayjob.yaml").read_text()
    assert not re.search(r"://[^/\s:@]*:[^/\s@]*@", text)  # no user:password@ in a URL
    placeholders = [line.split("=", 1)[1] for line in (ROOT / ".env.example").read_text().splitlines() if "=" in line]
    assert not any(value in text for value in placeholders if len(value) > 6)
