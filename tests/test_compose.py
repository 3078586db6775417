"""docker-compose.yml, checked without a Docker engine: its shape, and its commands against the
CLIs that run them (automl-cnn's own parser, `ray start --help`, `mlflow server --help`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from automl_cnn.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
SECRETS = ("RAY_AUTH_TOKEN", "POSTGRES_PASSWORD", "MLFLOW_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY")
SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET")


class _ComposeLoader(yaml.SafeLoader):
    pass


_ComposeLoader.add_constructor("!reset", lambda loader, node: None)


def _load(name: str) -> dict[str, Any]:
    return yaml.load((ROOT / name).read_text(), Loader=_ComposeLoader)


def _dotenv() -> dict[str, str]:
    """``.env.example`` as a ``.env`` (its placeholder values)."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"^[A-Z][A-Z0-9_]*=", line))


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR:?message}`` and ``$$``."""
    filled = re.sub(r"\$\{([A-Z0-9_]+)(?::\?[^}]*)?\}", lambda m: env[m.group(1)], value.replace("$$", "\0"))
    return filled.replace("\0", "$")


def _argv(command: list[str]) -> list[str]:
    """The program a service runs: ``command`` itself, or what ``sh -c SCRIPT $0 ...`` execs."""
    return command[4:] if command[:2] == ["sh", "-c"] else command


def _commands(compose: dict[str, Any]) -> dict[str, str]:
    """Every command line of every service (its command and its health check), as text."""
    out = {}
    for name, svc in compose["services"].items():
        out[f"{name} command"] = " ".join(map(str, svc.get("command") or []))
        out[f"{name} healthcheck"] = " ".join(map(str, (svc.get("healthcheck") or {}).get("test") or []))
    return out


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
    example = _dotenv()
    for var in SECRETS:
        assert f"${{{var}:?" in text  # a clear error when .env lacks it
        assert var in example
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    assert used == set(example), (used, set(example))  # every variable of .env is used, and only those
    for svc in compose["services"].values():  # no literal secret anywhere
        for key, value in (svc.get("environment") or {}).items():
            if any(word in key for word in SECRET_WORDS):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]+\}", str(value)), key
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_no_password_on_any_command_line(compose: dict[str, Any]) -> None:
    """`ps` and `docker inspect` show command lines: secrets travel in the environment only."""
    values = [v for k, v in _dotenv().items() if any(word in k for word in SECRET_WORDS)]
    for where, line in _commands(compose).items():
        for var in re.findall(r"\$\{([^}:?]+)", line):  # compose would paste the value in
            assert not any(word in var for word in SECRET_WORDS), (where, var)
        assert not re.search(r"://[^/\s:@]*:[^/\s@]*@", line), where  # no user:password@ in a URL
        assert not any(value in line for value in values), where
    for name in ("mlflow", "search"):  # the PostgreSQL clients take the password from PGPASSWORD
        assert compose["services"][name]["environment"]["PGPASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    cpu = _load("docker-compose.cpu.yml")["services"]
    assert all("command" not in svc and "environment" not in svc for svc in cpu.values())


def test_the_mlflow_server_runs_the_basic_auth_app(compose: dict[str, Any], tmp_path: Path) -> None:
    """Its shell prelude, run as compose runs it, hands `mlflow server` an auth config whose users live
    in the backend store's database and whose admin comes from .env; no secret is written to it."""
    import importlib.util

    svc = compose["services"]["mlflow"]
    argv = _argv(svc["command"])
    assert argv[argv.index("--app-name") + 1] == "basic-auth"
    assert importlib.util.find_spec("flask_wtf"), "install mlflow[auth] (the dev extra has it)"
    assert '"mlflow[auth]"' in (ROOT / "Dockerfile").read_text()  # the image can run it too
    assert "flask-wtf==" in (ROOT / "docker" / "constraints.txt").read_text()
    env = _dotenv()
    service_env = {k: _interpolate(str(v), env) for k, v in svc["environment"].items()}
    assert service_env["MLFLOW_AUTH_ADMIN_USERNAME"] == env["MLFLOW_ADMIN_USERNAME"]
    assert service_env["MLFLOW_AUTH_ADMIN_PASSWORD"] == env["MLFLOW_ADMIN_PASSWORD"]
    show = (
        "import json, os; from mlflow.server.auth.config import read_auth_config; "
        "print(json.dumps({**read_auth_config()._asdict(), 'ini': os.environ['MLFLOW_AUTH_CONFIG_PATH']}))"
    )
    script = [_interpolate(a, env) for a in svc["command"][:4]]
    done = subprocess.run(
        [*script, sys.executable, "-c", show],
        env={"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path), **service_env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    config = json.loads(done.stdout.strip().splitlines()[-1])
    assert config["database_uri"] == argv[argv.index("--backend-store-uri") + 1]
    assert config["admin_username"] == env["MLFLOW_ADMIN_USERNAME"]
    assert config["admin_password"] == env["MLFLOW_ADMIN_PASSWORD"]
    assert config["authorization_function"] == "mlflow.server.auth:authenticate_request_basic_auth"
    ini = Path(config["ini"]).read_text()
    assert Path(config["ini"]).parent == tmp_path and env["MLFLOW_ADMIN_PASSWORD"] not in ini


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
    cmd = _argv(compose["services"]["mlflow"]["command"])
    assert cmd[:2] == ["mlflow", "server"]
    mlflow_help = _help(sys.executable, "-m", "mlflow", "server")
    for flag in _flags(cmd):
        assert flag in mlflow_help, flag


def test_search_command_parses_and_points_at_the_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    cmd = _argv(services["search"]["command"])
    assert cmd[0] == "automl-cnn"
    args = build_parser().parse_args(cmd[1:])  # the real CLI parser: an unknown flag fails here
    head_port = next(a.split("=")[1] for a in services["ray-head"]["command"] if a.startswith("--port="))
    assert args.ray_address == f"ray-head:{head_port}"
    mlflow_cmd = _argv(services["mlflow"]["command"])
    assert args.tracking_uri == f"http://mlflow:{mlflow_cmd[mlflow_cmd.index('--port') + 1]}"
    assert args.storage == "postgresql://automl@postgres:5432/optuna"  # the password: PGPASSWORD
    env = services["search"]["environment"]  # the MLflow server's admin, as basic auth
    assert env["MLFLOW_TRACKING_USERNAME"].startswith("${MLFLOW_ADMIN_USERNAME:?")
    assert env["MLFLOW_TRACKING_PASSWORD"].startswith("${MLFLOW_ADMIN_PASSWORD:?")
    assert "CREATE DATABASE optuna" in (ROOT / "docker" / "postgres-init.sql").read_text()
    assert (ROOT / args.space).is_file()
    assert set(services["search"]["depends_on"]) >= {"ray-head", "mlflow"}
    worker_address = next(a for a in services["ray-worker"]["command"] if a.startswith("--address="))
    assert worker_address == f"--address=ray-head:{head_port}"
