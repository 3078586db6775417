"""docker-compose.yml's services as processes on the simulated hosts of :mod:`netns`.

A service's ``command`` runs as written in a host named after the service, with its
``environment`` (``${VAR}`` filled in from a test ``.env`` made from ``.env.example``), its
named volumes bound to folders of the test, and the compose host names resolving to the other
hosts. PostgreSQL's image runs no ``command``: its entrypoint is played by ``initdb``,
``postgres`` and the image's init scripts, as an unprivileged user, with the same settings.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from netns import Host

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = str(Path(sys.executable).parent)


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def dotenv() -> dict[str, str]:
    """A ``.env`` as a user makes it from ``.env.example``: every variable set to a fresh secret."""
    names = re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), flags=re.M)
    values = {name: secrets.token_hex(16) for name in names}
    for name in names:  # user names stay readable
        if name.endswith("_USERNAME") or name.endswith("_USER"):
            values[name] = "admin"
    return values


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:?message}``, ``${VAR:-default}`` and ``$$``."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        if name in env and (env[name] or op not in (":-", ":?")):
            return env[name]
        if op == ":-":
            return arg
        raise KeyError(f"compose needs {name}: {arg}")

    pattern = r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:\?|:-|\?|-)([^}]*))?\}"
    out = re.sub(pattern, one, value.replace("$$", "\0"))
    return out.replace("\0", "$")


def _fill(obj: Any, env: dict[str, str]) -> Any:
    if isinstance(obj, str):
        return interpolate(obj, env)
    if isinstance(obj, list):
        return [_fill(x, env) for x in obj]
    if isinstance(obj, dict):
        return {k: _fill(v, env) for k, v in obj.items()}
    return obj


def service(name: str, env: dict[str, str]) -> dict[str, Any]:
    """The service with every ``${...}`` filled in (anchors merged by the YAML loader)."""
    return _fill(compose()["services"][name], env)  # type: ignore[no-any-return]


def service_env(svc: dict[str, Any]) -> dict[str, str]:
    """The process environment of a service's container: its ``environment`` on top of the image's."""
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    base = {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/root", "LANG": "C.UTF-8"}
    if os.environ.get("PYTHONPATH"):  # the code under test (a checkout run without installing it)
        base["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return {**base, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", **{k: str(v) for k, v in env.items()}}


def volume_binds(svc: dict[str, Any], volumes: Path) -> dict[str, Path]:
    """Named volumes (``name:/path``) as test folders; bind mounts of files are left out."""
    binds: dict[str, Path] = {}
    for spec in svc.get("volumes") or []:
        source, target = str(spec).split(":")[:2]
        if "/" not in source:
            (volumes / source).mkdir(parents=True, exist_ok=True)
            binds[target] = volumes / source
    return binds


def command(svc: dict[str, Any]) -> list[str]:
    cmd = svc["command"]
    return list(cmd) if isinstance(cmd, list) else ["sh", "-c", cmd]


def healthy(host: Host, svc: dict[str, Any], timeout: float = 180) -> None:
    """Run the service's health check in its host until it passes."""
    test = svc["healthcheck"]["test"]
    argv = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else list(test[1:])
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        done = host.run(argv, service_env(svc), timeout=60)
        if done.returncode == 0:
            return
        last = (done.stdout + done.stderr).strip()[-300:]
        time.sleep(2)
    raise AssertionError(f"{host.name} not healthy after {timeout:.0f} s: {last}")


def start_postgres(host: Host, svc: dict[str, Any], logs: Path) -> None:
    """The postgres image's entrypoint: a cluster owned by an unprivileged user, the user and
    password of ``POSTGRES_USER``/``POSTGRES_PASSWORD``, database ``POSTGRES_DB``, the image's
    init scripts, password logins from any address."""
    env = svc["environment"]
    data = host.root / "pgdata"
    sockets = "/var/run/postgresql"  # the image's socket folder: pg_isready finds it (bound by the test)
    for folder in (data, host.binds[sockets]):
        folder.mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, "nobody", "nogroup")
    os.chmod(host.root, 0o755)
    pwfile = host.root / "pwfile"
    pwfile.write_text(env["POSTGRES_PASSWORD"] + "\n")
    shutil.chown(pwfile, "nobody", "nogroup")
    base = service_env(svc)
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    init = host.run(
        [*as_nobody, "initdb", "-D", str(data), "-U", env["POSTGRES_USER"], f"--pwfile={pwfile}",
         "--auth-local=trust", "--auth-host=scram-sha-256"], base, timeout=120,
    )  # fmt: skip
    assert init.returncode == 0, init.stdout + init.stderr
    pwfile.unlink()
    with open(data / "pg_hba.conf", "a") as hba:
        hba.write("host all all all scram-sha-256\n")
    host.popen(
        [*as_nobody, "postgres", "-D", str(data), "-c", "listen_addresses=*",
         "-c", f"unix_socket_directories={sockets}"],
        base, logs / "postgres.log",
    )  # fmt: skip
    psql = ["psql", "-h", sockets, "-U", env["POSTGRES_USER"], "-v", "ON_ERROR_STOP=1"]
    deadline = time.monotonic() + 60
    while host.run([*psql, "-d", "postgres", "-c", "select 1"], base).returncode != 0:
        assert time.monotonic() < deadline, (logs / "postgres.log").read_text()[-500:]
        time.sleep(0.5)
    made = host.run([*psql, "-d", "postgres", "-c", f'CREATE DATABASE "{env["POSTGRES_DB"]}"'], base)
    assert made.returncode == 0, made.stderr
    for spec in svc.get("volumes") or []:
        source, target = str(spec).split(":")[:2]
        if target.startswith("/docker-entrypoint-initdb.d/") and source.endswith(".sql"):
            script = host.run([*psql, "-d", env["POSTGRES_DB"], "-f", str(ROOT / source)], base)
            assert script.returncode == 0, script.stderr


def run_service(host: Host, svc: dict[str, Any], logs: Path, extra: list[str] | None = None) -> subprocess.Popen:  # type: ignore[type-arg]
    """Start the service's command as written (plus ``extra`` arguments) in ``host``."""
    return host.popen([*command(svc), *(extra or [])], service_env(svc), logs / f"{host.name}.log")
