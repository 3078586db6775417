"""Starting real servers (mlflow server, mlflow models serve) as processes for the tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 180.0, proc: subprocess.Popen | None = None) -> None:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"nothing answered {url} within {timeout:.0f} s")


@contextmanager
def process(
    args: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[subprocess.Popen]:  # type: ignore[type-arg]
    """Run ``args`` in its own process group; stop the whole group afterwards."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)


def mlflow_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlflow", *args]


def served_predictions(model_uri: str, tracking_uri: str, x: np.ndarray, log: Path) -> np.ndarray:
    """Class probabilities from ``mlflow models serve`` of ``model_uri`` for images ``x`` (uint8)."""
    port = free_port()
    cmd = mlflow_cmd("models", "serve", "-m", model_uri, "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port))
    with process(cmd, log, env={"MLFLOW_TRACKING_URI": tracking_uri}) as proc:
        wait_http(f"http://127.0.0.1:{port}/ping", proc=proc)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": (x.astype(np.float32) / 255.0).tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as resp:
            body = json.loads(resp.read())
    return np.asarray(body["predictions"], dtype=np.float32)
