"""Writers whose queued work must reach the disk or the store even when the process leaves
through ``os._exit``.

A driver that loses its Ray head leaves with ``os._exit`` (its main thread may be stuck in a Ray
call for good; see :class:`~automl_cnn.services.ray_runtime.HeadWatch`), which skips every
``finally`` and every thread. The background writers (epoch checkpoints and ``run.json``,
MLflow's batches) register their ``flush`` here while they run; :func:`flush_all` calls them
before such an exit, each in a thread of its own, all within one bounded wait, so a writer stuck
on a dead store cannot keep the process alive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

FLUSH_LIMIT_S = 20.0  # the most a hard exit waits for queued writes

_flushes: dict[int, Callable[[], None]] = {}
_lock = threading.Lock()


def register(flush: Callable[[], None]) -> Callable[[], None]:
    """Have :func:`flush_all` call ``flush`` until the returned function is called."""
    with _lock:
        key = max(_flushes, default=0) + 1
        _flushes[key] = flush

    def unregister() -> None:
        with _lock:
            _flushes.pop(key, None)

    return unregister


def flush_all(limit_s: float = FLUSH_LIMIT_S) -> list[str]:
    """Call every registered flush, in parallel, waiting at most ``limit_s`` in all; the problems
    (a flush that failed or did not finish in time), one line each."""
    with _lock:
        flushes = list(_flushes.values())
    problems: list[str] = []

    def run(flush: Callable[[], None]) -> None:
        try:
            flush()
        except BaseException as exc:  # the process is leaving: report, never raise
            problems.append(f"{getattr(flush, '__qualname__', flush)}: {exc}")

    threads = [threading.Thread(target=run, args=(f,), name="hard-exit-flush", daemon=True) for f in flushes]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + limit_s
    for thread, flush in zip(threads, flushes, strict=True):
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            problems.append(f"{getattr(flush, '__qualname__', flush)}: not done after {limit_s:.0f} s")
    return problems
