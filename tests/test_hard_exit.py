"""A driver that loses its Ray head leaves through os._exit; the writes still queued in the
background writers are made first, within a bounded wait (services/hard_exit.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from automl_cnn.services import hard_exit

HEAD_LOST_EXIT = 3


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_head_watch_exit_writes_the_queued_checkpoint_first(tmp_path: Path) -> None:
    """A write queued (and slower than the watch's first poll) is on disk when the process has
    left with the head-lost status; before the flush it was lost with the process."""
    out = tmp_path / "trial-0.pt"
    script = textwrap.dedent(
        f"""
        import pathlib, time
        from automl_cnn.engine.background import BackgroundFiles
        from automl_cnn.services.ray_runtime import HeadWatch

        files = BackgroundFiles()
        def slow_write():
            time.sleep(4.0)  # still writing when the watch gives up on the head (after 2 s)
            pathlib.Path({str(out)!r}).write_bytes(b"weights")
        files.submit(("checkpoint", 0), slow_write)
        HeadWatch("127.0.0.1:{_closed_port()}", "RUN", after=0.0).start()
        time.sleep(60)  # the main thread is stuck, as in a Ray call that never returns
        """
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == HEAD_LOST_EXIT, done.stderr
    assert "lost the Ray head at 127.0.0.1" in done.stderr
    assert out.read_bytes() == b"weights"
    assert time.monotonic() - started < 30


def test_flush_all_reports_a_stuck_or_failing_writer_and_returns_in_time() -> None:
    stuck = threading.Event()
    done: list[str] = []

    def never_done() -> None:
        stuck.wait(30)

    def failing() -> None:
        raise OSError("disk full")

    def fine() -> None:
        done.append("written")

    unregister = [hard_exit.register(f) for f in (never_done, failing, fine)]
    try:
        started = time.monotonic()
        problems = hard_exit.flush_all(limit_s=0.5)
        assert time.monotonic() - started < 3
    finally:
        stuck.set()
        for u in unregister:
            u()
    assert done == ["written"]
    assert any("never_done" in p and "not done after" in p for p in problems)
    assert any("failing" in p and "disk full" in p for p in problems)
    assert len(problems) == 2
    assert hard_exit.flush_all(limit_s=0.1) == []  # unregistered: nothing left to flush
