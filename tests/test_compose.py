"""docker-compose.yml, checked without a Docker engine: its shape, and its commands against the
CLIs that run them (automl-cnn's own parser, `ray start --help`, `mlflow server --help`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from automl_cnn.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
SECRETS = ("RAY_AUTH_TOKEN", "POSTGRES_PASSWORD")


class _ComposeLoader(yaml.SafeLoader):
    pass


_ComposeLoader.add_constructor("!reset", lambda loader, node: None)


def _load(name: str) -> dict[str, Any]:
    return yaml.load((ROOT / name).read_text(), Loader=_ComposeLoader)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load("docker-compose.yml")


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"ray-head", "ray-worker", "mlflow", "postgres", "search"}


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), (name, image)
    base = re.search(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert base and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base.group(1))


def test_ports_are_published_on_loopback_only(compose: dict[str, Any]) -> None:
    published = [p for svc in compose["services"].values() for p in svc.get("ports", [])]
    assert published
    assert all(str(p).startswith("127.0.0.1:") for p in published)


def test_long_running_services_have_health_checks(compose: dict[str, Any]) -> None:
    for name in ("postgres", "mlflow", "ray-head", "ray-worker"):
        assert compose["services"][name]["healthcheck"]["test"], name


def test_image_pins_exact_versions_within_the_project_ranges() -> None:
    """Driver, Ray nodes and MLflow server share one image whose Ray, MLflow, Optuna and torch
    are pinned exactly (mismatched Ray nodes or MLflow schemas break a cluster), each inside
    the range pyproject.toml allows."""
    import tomllib

    from packaging.requirements import Requirement

    assert "-c docker/constraints.txt" in (ROOT / "Dockerfile").read_text()
    pins = dict(
        line.split("==")
        for line in (ROOT / "docker" / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ranges = {r.name: r.specifier for r in map(Requirement, project["dependencies"])}
    for package in ("ray", "mlflow", "optuna", "torch", "torchvision"):
        assert pins[package] in ranges[package], (package, pins[package], ranges[package])
    assert pins["mlflow-skinny"] == pins["mlflow"]


def test_secrets_come_from_the_env_file(compose: dict[str, Any]) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    example = (ROOT / ".env.example").read_text()
    for var in SECRETS:
        assert f"${{{var}:?" in text  # a clear error when .env lacks it
        assert re.search(rf"^{var}=", example, re.M)
    for svc in compose["services"].values():  # no literal secret anywhere
        for key, value in (svc.get("environment") or {}).items():
            if key in SECRETS:
                assert str(value).startswith("${"), key
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_ray_workers_scale_and_reserve_gpus(compose: dict[str, Any]) -> None:
    worker = compose["services"]["ray-worker"]
    assert "container_name" not in worker  # `--scale ray-worker=N` needs generated names
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert _load("docker-compose.cpu.yml")["services"]["ray-worker"]["deploy"] is None


def test_ray_services_use_token_auth(compose: dict[str, Any]) -> None:
    for name in ("ray-head", "ray-worker", "search"):
        env = compose["services"][name]["environment"]
        assert env["RAY_AUTH_MODE"] == "token"
        assert env["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN")


def _help(*cmd: str) -> str:
    return subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=120).stdout


def _flags(command: list[str]) -> set[str]:
    return {arg.split("=")[0] for arg in command if arg.startswith("--")}


def test_ray_and_mlflow_commands_exist_in_their_clis(compose: dict[str, Any]) -> None:
    ray = str(Path(sys.executable).parent / "ray")
    ray_help = _help(ray, "start")
    for name in ("ray-head", "ray-worker"):
        cmd = compose["services"][name]["command"]
        assert cmd[:2] == ["ray", "start"]
        for flag in _flags(cmd):
            assert flag in ray_help, (name, flag)
    cmd = compose["services"]["mlflow"]["command"]
    assert cmd[:2] == ["mlflow", "server"]
    mlflow_help = _help(sys.executable, "-m", "mlflow", "server")
    for flag in _flags(cmd):
        assert flag in mlflow_help, flag


def test_search_command_parses_and_points_at_the_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    cmd = services["search"]["command"]
    assert cmd[0] == "automl-cnn"
    args = build_parser().parse_args(cmd[1:])  # the real CLI parser: an unknown flag fails here
    head_port = next(a.split("=")[1] for a in services["ray-head"]["command"] if a.startswith("--port="))
    assert args.ray_address == f"ray-head:{head_port}"
    mlflow_cmd = services["mlflow"]["command"]
    assert args.tracking_uri == f"http://mlflow:{mlflow_cmd[mlflow_cmd.index('--port') + 1]}"
    assert args.storage.startswith("postgresql://automl:${POSTGRES_PASSWORD")
    assert args.storage.endswith("@postgres:5432/optuna")
    assert "CREATE DATABASE optuna" in (ROOT / "docker" / "postgres-init.sql").read_text()
    assert (ROOT / args.space).is_file()
    assert set(services["search"]["depends_on"]) >= {"ray-head", "mlflow"}
    worker_address = next(a for a in services["ray-worker"]["command"] if a.startswith("--address="))
    assert worker_address == f"--address=ray-head:{head_port}"
