"""Secrets stay secret: a password in the storage URL or the tracking URI is masked wherever a URL
is shown or kept, and a real search (PostgreSQL holding the study and MLflow's store, an MLflow
server running compose's basic-auth command) writes it nowhere: not in its run folder, MLflow's
artifacts or database, the Optuna database, its output, nor any server's command line."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from servers import free_port, process, wait_http

from automl_cnn.engine.config import SearchConfig, flat_settings
from automl_cnn.errors import UserInputError
from automl_cnn.services.credentials import mask_password, resume_url, split_credentials, tracking_credentials

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "search_spaces" / "tiny.yaml"
PG_USER, ML_USER = "automl", "admin"


# -- masking, in every place a URL is kept ---------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://automl:pw@db:5432/optuna", "postgresql://automl:***@db:5432/optuna"),
        ("http://admin:s3cret@mlflow:5000", "http://admin:***@mlflow:5000"),
        ("https://admin:a%40b@mlflow.example.org/", "https://admin:***@mlflow.example.org/"),
        ("postgresql://u:p@ss/w@db/optuna", "postgresql://u:***@db/optuna"),  # a raw @ or / in it
        ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
        ("mysql+pymysql://u:pw@db/x", "mysql+pymysql://u:***@db/x"),
        ("postgresql://u@db/x?password=pw&sslmode=require", "postgresql://u@db/x?password=***&sslmode=require"),
        ("postgresql://automl@db/optuna", "postgresql://automl@db/optuna"),  # PGPASSWORD: nothing to mask
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        (None, None),
    ],
)
def test_one_masking_for_every_url(url: str | None, shown: str | None) -> None:
    assert mask_password(url) == shown
    assert mask_password(shown) == shown  # masking twice changes nothing


def test_run_json_and_mlflow_params_keep_no_password() -> None:
    cfg = SearchConfig.from_settings(
        tracking_uri="http://admin:ml-secret@mlflow:5000",
        storage="postgresql://automl:pg-secret@db:5432/optuna",
        warm_start="none",
    )
    for record in (flat_settings(cfg.to_record()), cfg.to_params()):  # run.json keeps it by group
        text = json.dumps(record, default=str)
        assert "ml-secret" not in text and "pg-secret" not in text
        assert record["tracking_uri"] == "http://admin:***@mlflow:5000"
        assert record["storage"] == "postgresql://automl:***@db:5432/optuna"
    assert SearchConfig.from_dict(cfg.to_dict()) == cfg  # to_dict itself stays whole: the Python API's form


def test_a_servers_credentials_travel_in_mlflows_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    assert tracking_credentials("http://admin:p%40ss@mlflow:5000/") == "http://mlflow:5000/"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "admin" and os.environ["MLFLOW_TRACKING_PASSWORD"] == "p@ss"
    assert tracking_credentials("sqlite:///x.db") == "sqlite:///x.db"
    assert split_credentials("http://admin:***@mlflow:5000") == ("http://mlflow:5000", "admin", None)


def test_resume_asks_again_for_a_masked_password(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PGPASSWORD", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    storage, tracking = "postgresql://automl:***@db/optuna", "http://admin:***@mlflow:5000"
    with pytest.raises(UserInputError, match=r"pass --storage with the full URL \(or set PGPASSWORD\)"):
        resume_url(storage, None, "--storage")
    with pytest.raises(UserInputError, match=r"pass --tracking-uri .*MLFLOW_TRACKING_PASSWORD"):
        resume_url(tracking, None, "--tracking-uri")
    assert resume_url(storage, "postgresql://automl:pw@db/optuna", "--storage") == "postgresql://automl:pw@db/optuna"
    assert resume_url("sqlite:///s.db", None, "--storage") == "sqlite:///s.db"
    assert resume_url(None, None, "--storage") is None
    monkeypatch.setenv("PGPASSWORD", "pw")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw")
    assert resume_url(storage, None, "--storage") == "postgresql://automl@db/optuna"
    assert resume_url(tracking, None, "--tracking-uri") == "http://admin@mlflow:5000"


# -- a real search, then a search for its passwords ------------------------------------------------
@dataclass
class Scan:
    """Looks for the secrets in files, records and text, counting what it looked at."""

    needles: dict[str, bytes]
    seen: dict[str, int] = field(default_factory=dict)
    found: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, passwords: dict[str, str]) -> Scan:
        needles = {}
        for name, pw in passwords.items():
            needles[name] = pw.encode()
            needles[f"{name} (basic auth)"] = base64.b64encode(f"{ML_USER}:{pw}".encode())
        return cls(needles)

    def text(self, kind: str, where: str, data: bytes | str) -> None:
        blob = data.encode(errors="replace") if isinstance(data, str) else data
        self.seen[kind] = self.seen.get(kind, 0) + 1
        self.found += [f"{name} in {kind} {where}" for name, n in self.needles.items() if n in blob]
        if blob[:2] == b"PK":  # zip archives (pt2 models, torch files): their members, unpacked
            errors = (zipfile.BadZipFile, OSError, RuntimeError, ValueError)
            with contextlib.suppress(*errors), zipfile.ZipFile(io.BytesIO(blob)) as archive:
                for member in archive.namelist():
                    self.text("zip member", f"{where}!{member}", archive.read(member))

    def tree(self, root: Path) -> None:
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                with contextlib.suppress(OSError):
                    self.text("file", str(path), path.read_bytes())


def _postgres_bin(name: str) -> str | None:
    found = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
    return str(found) if found else None


def _unprivileged() -> tuple[list[str], tuple[int, int] | None]:
    """How to run PostgreSQL, which refuses root: as we are, or (as root) as ``nobody``."""
    if os.geteuid() != 0:
        return [], None
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("running as root, and there is no user 'nobody' to run PostgreSQL as")
    if not shutil.which("setpriv"):
        pytest.skip("running as root, and util-linux's setpriv is missing to run PostgreSQL as nobody")
    ids = (nobody.pw_uid, nobody.pw_gid)
    return ["setpriv", f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups"], ids


@contextlib.contextmanager
def postgres(password: str) -> Iterator[tuple[int, Path]]:
    """A PostgreSQL cluster on 127.0.0.1 (a free port) with databases ``mlflow`` and ``optuna``,
    user ``automl`` logging in with ``password`` (SCRAM); yields its port and its folder."""
    names = ("initdb", "pg_ctl", "postgres")
    binaries = {name: path for name in names if (path := _postgres_bin(name))}
    if len(binaries) < len(names):
        pytest.skip(f"needs PostgreSQL's server binaries (missing: {sorted(set(names) - set(binaries))})")
    psycopg = pytest.importorskip("psycopg", reason="needs psycopg (the dev extra installs it)")
    prefix, ids = _unprivileged()
    work = Path(tempfile.mkdtemp(prefix="acnn-pg-", dir="/tmp"))
    if ids is not None:
        os.chown(work, *ids)
    port, data = free_port(), work / "data"
    pwfile = work / "pwfile"
    pwfile.write_text(password + "\n")
    shutil.chown(pwfile, work.owner(), work.group())
    try:
        init = [binaries["initdb"], "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}", "--auth=scram-sha-256"]
        done = subprocess.run([*prefix, *init, "-E", "UTF8", "--locale=C"], capture_output=True, text=True, cwd=work)
        pwfile.unlink()
        assert done.returncode == 0, done.stdout + done.stderr
        options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={work}"
        start = [binaries["pg_ctl"], "-D", str(data), "-l", str(work / "postgres.log"), "-o", options, "-w", "start"]
        done = subprocess.run([*prefix, *start], capture_output=True, text=True, cwd=work, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr + (work / "postgres.log").read_text()
        with psycopg.connect(
            host="127.0.0.1", port=port, user=PG_USER, password=password, dbname="postgres", autocommit=True
        ) as conn:
            for db in ("mlflow", "optuna"):
                conn.execute(f"CREATE DATABASE {db}")
        yield port, work
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*prefix, binaries["pg_ctl"], "-D", str(data), "-m", "immediate", "stop"], cwd=work)
        shutil.rmtree(work, ignore_errors=True)


def _database_rows(port: int, password: str, scan: Scan) -> None:
    """Every row of every table of both databases, as text."""
    import psycopg

    for db in ("mlflow", "optuna"):
        with psycopg.connect(host="127.0.0.1", port=port, user=PG_USER, password=password, dbname=db) as conn:
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchall()
            for (table,) in tables:
                for (row,) in conn.execute(f'SELECT t::text FROM "{table}" t'):
                    scan.text("database row", f"{db}.{table}", row)


def _compose_mlflow_command(tmp: Path, pg_port: int, port: int) -> tuple[list[str], dict[str, str]]:
    """docker-compose.yml's mlflow service as a process here: its command and environment as
    written (``${...}`` from a .env), with the compose host, port, volume and bind address
    swapped for this machine's."""
    svc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["mlflow"]
    swaps = {
        "postgres:5432": f"127.0.0.1:{pg_port}",
        ":5000": f":{port}",
        "/mlartifacts": str(tmp / "mlartifacts"),
        "0.0.0.0": "127.0.0.1",
        "$$": "$",
    }

    def swap(arg: str) -> str:
        if arg == "5000":
            return str(port)
        for old, new in swaps.items():
            arg = arg.replace(old, new)
        return arg

    return [swap(str(a)) for a in svc["command"]], {k: str(v) for k, v in svc["environment"].items()}


def _dotenv_fill(env: dict[str, str], dotenv: dict[str, str]) -> dict[str, str]:
    import re

    return {k: re.sub(r"\$\{([A-Z0-9_]+)(?::\?[^}]*)?\}", lambda m: dotenv[m.group(1)], v) for k, v in env.items()}


def _cmdlines() -> dict[int, bytes]:
    """The command line of every process on this machine."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                out[int(entry.name)] = (entry / "cmdline").read_bytes()
    return out


def _cli(args: list[str], cwd: Path, log: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``automl-cnn ARGS``; its stdout and stderr also kept as files under ``cwd``."""
    done = subprocess.run(
        [sys.executable, "-m", "automl_cnn", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    (cwd / f"{log}.stdout").write_text(done.stdout)
    (cwd / f"{log}.stderr").write_text(done.stderr)
    return done


def _clean_env(**extra: str) -> dict[str, str]:
    drop = ("MLFLOW_TRACKING_", "PGPASSWORD", "MLFLOW_AUTH_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, "PYTHONUNBUFFERED": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", **extra}


def _killed_then_resumed(cwd: Path, run: Path, search: list[str], urls: dict[str, str], pg_password: str) -> None:
    """The search, SIGKILLed once a trial finished; resume refuses until both passwords are given
    again (one line naming the fix), then finishes it."""
    log = (cwd / "search.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "automl_cnn", *search], cwd=cwd, env=_clean_env(), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 300
        while not ((run / "trials.jsonl").exists() and (run / "trials.jsonl").read_text().strip()):
            assert proc.poll() is None, (cwd / "search.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no trial finished"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    refused = _cli(["resume", str(run), "--no-progress"], cwd, "resume-refused", _clean_env())
    assert refused.returncode == 2 and _error(refused.stderr).endswith(
        "without its password; pass --storage with the full URL (or set PGPASSWORD) to resume"
    ), refused.stderr
    refused = _cli(["resume", str(run), "--storage", urls["storage"]], cwd, "resume-refused-2", _clean_env())
    assert refused.returncode == 2 and _error(refused.stderr).endswith(
        "pass --tracking-uri with the full URL (or set MLFLOW_TRACKING_PASSWORD) to resume"
    ), refused.stderr
    # the storage's password from PostgreSQL's variable, the tracking URI's on the command line
    args = ["resume", str(run), "--no-progress", "--tracking-uri", urls["tracking"]]
    resumed = _cli(args, cwd, "resume", _clean_env(PGPASSWORD=pg_password))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout


def _error(stderr: str) -> str:
    """The one error line of a refused command."""
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


def _mlflow_records(tracking: str, scan: Scan, experiment: str) -> str:
    """Every run's params and tags, every logged model's, the registered model's versions'
    tags and descriptions; returns the registered model's name."""
    from mlflow.tracking import MlflowClient

    with mock.patch.dict(os.environ):  # the credentials, for this block only
        client = MlflowClient(tracking_credentials(tracking))
        return _records_of(client, scan, experiment)


def _records_of(client: Any, scan: Scan, experiment: str) -> str:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert len(runs) >= 4  # the search, its trials, the final fit
    for run in runs:
        for kind, values in (("param", run.data.params), ("tag", run.data.tags)):
            for key, value in values.items():
                scan.text(f"run {kind}", f"{run.info.run_id} {key}", f"{key}={value}")
        scan.text("run", run.info.run_id, json.dumps(run.to_dictionary(), default=str))
    for model in client.search_logged_models([exp.experiment_id]):
        scan.text("logged model", model.model_id, json.dumps(model.to_dictionary(), default=str))
    names = [m.name for m in client.search_registered_models()]
    assert len(names) == 1
    for version in client.search_model_versions(f"name = '{names[0]}'"):
        scan.text("model version", version.version, f"{version.description} {json.dumps(version.tags)}")
        scan.text("model version", version.version, str(version.source) + str(version.run_id))
    return names[0]


@pytest.mark.slow
def test_a_search_writes_its_passwords_nowhere(tmp_path: Path) -> None:
    passwords = {"PostgreSQL password": f"pg-{secrets.token_hex(12)}", "MLflow password": f"ml-{secrets.token_hex(12)}"}
    pg_password, ml_password = passwords.values()
    scan = Scan.of(passwords)
    _scanner_finds_what_it_looks_for(scan, tmp_path)
    with postgres(pg_password) as (pg_port, pg_folder):
        port = free_port()
        command, environment = _compose_mlflow_command(tmp_path, pg_port, port)
        dotenv = {
            "POSTGRES_PASSWORD": pg_password,
            "MLFLOW_ADMIN_USERNAME": ML_USER,
            "MLFLOW_ADMIN_PASSWORD": ml_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        }
        path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        server_env = {"PATH": path, "TMPDIR": str(tmp_path), **_dotenv_fill(environment, dotenv)}
        with process(command, tmp_path / "mlflow-server.log", env=server_env, cwd=tmp_path) as server:
            wait_http(f"http://127.0.0.1:{port}/health", proc=server)
            urls = {
                "tracking": f"http://{ML_USER}:{ml_password}@127.0.0.1:{port}",
                "storage": f"postgresql://{PG_USER}:{pg_password}@127.0.0.1:{pg_port}/optuna",
            }
            _search_and_scan(tmp_path, urls, scan, pg_port, pg_password)
            scan.tree(pg_folder)  # PostgreSQL's own files: its data, its log
    assert not scan.found, scan.found


def _scanner_finds_what_it_looks_for(scan: Scan, tmp: Path) -> None:
    """The scan is not blind: a password in a file, in a zip member and as basic auth is found."""
    canary = Scan(scan.needles)
    pw = next(iter(scan.needles.values())).decode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("inner/data.txt", f"url=x://u:{pw}@h " * 50)
    folder = tmp / "canary"
    folder.mkdir()
    (folder / "model.zip").write_bytes(buffer.getvalue())
    (folder / "plain.txt").write_text(f"postgresql://u:{pw}@h/db")
    canary.tree(folder)
    canary.text("header", "Authorization", base64.b64encode(f"{ML_USER}:{pw}".encode()))
    assert len(canary.found) == 3, canary.found
    shutil.rmtree(folder)


def _search_and_scan(tmp: Path, urls: dict[str, str], scan: Scan, pg_port: int, pg_password: str) -> None:
    cwd, run = tmp / "cwd", tmp / "run"
    cwd.mkdir()
    search = ["search", "--data", "digits", "--space", str(TINY), "--trials", "4", "--executor", "inprocess"]
    search += ["--warm-start", "none", "--no-progress", "--experiment", "secrets", "--out", str(run)]
    search += ["--tracking-uri", urls["tracking"], "--storage", urls["storage"]]
    _killed_then_resumed(cwd, run, search, urls, pg_password)
    for pid, cmdline in _cmdlines().items():  # every process (the servers'), as `ps` shows them
        scan.text("command line", str(pid), cmdline)
    state = json.loads((run / "run.json").read_text())
    assert state["state"] == "finished"  # and it kept the URLs masked, not dropped
    assert state["config"]["tracking"]["storage"] == mask_password(urls["storage"]) != urls["storage"]
    assert state["config"]["tracking"]["tracking_uri"] == mask_password(urls["tracking"]) != urls["tracking"]
    assert f"MLflow              {split_credentials(urls['tracking'])[0]} " in (cwd / "resume.stdout").read_text()
    registered = _mlflow_records(urls["tracking"], scan, "secrets")
    assert registered.startswith("automl-cnn-digits-")
    _database_rows(pg_port, pg_password, scan)
    scan.tree(tmp)  # the run folder, MLflow's artifacts, every output and log, the servers' files
    counts = scan.seen
    assert counts["file"] >= 40 and counts["zip member"] >= 10, counts
    assert counts["database row"] >= 300 and counts["run param"] >= 100 and counts["run tag"] >= 30, counts
    assert counts["model version"] >= 2 and counts["command line"] >= 3, counts
    outputs = [p.name for p in cwd.iterdir() if p.suffix in (".stdout", ".stderr", ".log")]
    assert len(outputs) >= 7, outputs
