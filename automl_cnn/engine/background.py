"""File writes off the driver's decision path: one thread writes them, in order per key.

Saving a trial's checkpoint after each epoch is two fsynced files; with hundreds of trials
reporting every few seconds, the driver spent much of its time waiting on the disk while results
waited on it. While a search runs, :class:`BackgroundFiles` takes those writes: per key only the
latest operation is kept (a checkpoint overwritten before it was written is skipped; a checkpoint
dropped before it was written is never written), and every operation is done before
:meth:`BackgroundFiles.flush` or :meth:`BackgroundFiles.close` returns. A write that fails is
raised by the next call, never dropped.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Hashable

from automl_cnn.services.hard_exit import register

_STOP = object()


class BackgroundFiles:
    """One writer thread for file operations keyed by what they write (see the module)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[object] = queue.Queue()
        self._pending: dict[Hashable, Callable[[], None]] = {}
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="automl-cnn-files", daemon=True)
        self._thread.start()
        self._unregister = register(self.flush)  # a driver leaving by os._exit writes these first

    def submit(self, key: Hashable, operation: Callable[[], None]) -> None:
        """Do ``operation`` soon, in place of any not yet done for ``key``."""
        self._raise()
        with self._lock:
            queued = key in self._pending
            self._pending[key] = operation
        if not queued:
            self._queue.put(key)

    def flush(self) -> None:
        """Return once every operation submitted so far is done."""
        self._queue.join()
        self._raise()

    def close(self) -> None:
        """Do what is left, then stop the thread."""
        self._unregister()
        self._queue.put(_STOP)
        self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _work(self) -> None:
        while True:
            key = self._queue.get()
            try:
                if key is _STOP:
                    return
                with self._lock:
                    operation = self._pending.pop(key, None)
                if operation is not None and self._error is None:
                    operation()
            except BaseException as exc:  # raised in the driver's thread at its next call
                self._error = exc
            finally:
                self._queue.task_done()
