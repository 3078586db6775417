"""Starting (or joining) the Ray runtime the workers live in."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator

import ray

from automl_cnn.errors import UserInputError
from automl_cnn.services.executor import cpu_count
from automl_cnn.services.hard_exit import flush_all
from automl_cnn.services.ray_join import attach_options, joined, needs_join


@contextlib.contextmanager
def ray_runtime(address: str | None = None, run: str | None = None) -> Iterator[dict[str, float]]:
    """Yield the cluster's resources; start a local runtime (and stop it after) unless one is
    running already or ``address`` names a cluster to join. On a cluster, a head that stops
    answering ends this process (see :class:`HeadWatch`); ``run`` is the folder it names."""
    if ray.is_initialized():
        yield cluster_resources()
        return
    # a Ray job's driver (``ray job submit``, a KubeRay RayJob) finds its cluster in RAY_ADDRESS
    address = address or os.environ.get("RAY_ADDRESS") or None
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    kwargs: dict[str, object] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "configure_logging": True,
    }
    # "token authentication is enabled for this Ray cluster": good news about our own local
    # runtime, not a warning for the user
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    ray_logger = logging.getLogger("ray")
    level = ray_logger.level
    ray_logger.setLevel(logging.ERROR)  # start-up notes (token set-up, dashboard) are not ours to show
    main_thread = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main_thread else None
    stack = contextlib.ExitStack()
    try:
        if address and needs_join(address):  # a driver host that is no node of the cluster
            stack.enter_context(joined(address))
        if address:
            _connect(address, {**kwargs, **attach_options(address)})
        else:
            ray.init(num_cpus=cpu_count(), **kwargs)  # type: ignore[arg-type]
    except UserInputError:
        stack.close()
        raise
    except Exception as exc:  # ConnectionError, AuthenticationError, RuntimeError...
        stack.close()
        raise _cannot_connect(exc, address) from None
    finally:
        ray_logger.setLevel(level)
        # ray.init replaces the caller's SIGTERM handler (the CLI's), even when it then fails: put a
        # handler the caller set back always, and the default one too when no runtime came up
        if callable(sigterm) or (sigterm is not None and not ray.is_initialized()):
            signal.signal(signal.SIGTERM, sigterm)
    with stack:
        watch = HeadWatch.start_for(address, run)
        try:
            yield cluster_resources()
        finally:
            if watch is not None:
                watch.stop()
            ray.shutdown()


def _cannot_connect(exc: Exception, address: str | None) -> UserInputError:
    """The one line saying why ``ray.init`` failed and what to do."""
    first = _reason(exc)
    where = f"the Ray cluster at {address}" if address else "a local Ray runtime"
    said = first if isinstance(exc, ConnectionAbortedError) else str(exc)  # not a traceback's paths
    if _refused(said):
        fix = "set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the cluster's token"
    elif address:  # Ray reports a refused token as a plain connection failure
        fix = (
            "start it with 'ray start --head' or fix --ray-address; a cluster with token "
            "authentication needs RAY_AUTH_MODE=token and its token in RAY_AUTH_TOKEN"
        )
    else:
        fix = "check 'ray status'"
    return UserInputError(f"cannot connect to {where} ({first[:240]}); {fix}")


CLIENT_TRIES = 3  # Ray Client: a client server the head could not start in time is tried again


def _connect(address: str, kwargs: dict[str, object]) -> None:
    """``ray.init(address)``. Through Ray Client the head starts a server process per driver;
    one that does not come up in time (a busy head) fails the init while a second try works."""
    for attempt in range(1, CLIENT_TRIES + 1):
        try:
            ray.init(address=address, **kwargs)  # type: ignore[arg-type]
            return
        except ConnectionAbortedError as exc:  # "Initialization failure from server: <traceback>"
            why = _reason(exc)
            if not address.startswith("ray://") or attempt == CLIENT_TRIES or _refused(why):
                raise  # a refused token stays refused: only a server that did not come up is retried
            logging.getLogger(__name__).warning("Ray Client: %s; trying again", why)
            time.sleep(2.0 * attempt)


def _refused(reason: str) -> bool:
    """Whether Ray's reason is about authentication (a token missing or wrong): final, not retried."""
    return "auth" in reason.lower()


def _reason(exc: BaseException) -> str:
    """One line saying why: an error's first line, or where that only introduces a traceback
    (Ray Client's "Initialization failure from server:"), the traceback's last line."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return exc.__class__.__name__
    if lines[0].endswith(":") and len(lines) > 1:
        return f"{lines[0]} {lines[-1]}"
    return lines[0]


def cluster_resources() -> dict[str, float]:
    """The cluster's total resources, plus ``node_CPU`` / ``node_GPU``: the most any one live
    node has (an actor is placed on one node)."""
    out = {k: float(v) for k, v in ray.cluster_resources().items()}
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for kind in ("CPU", "GPU"):
        out[f"node_{kind}"] = max((float(r.get(kind, 0)) for r in nodes), default=out.get(kind, 0.0))
    return out


HEAD_LOST_AFTER_S = 10.0  # well before Ray's own end (its GCS clients give up after 60 s)
HEAD_LOST_EXIT = 3


class HeadWatch(threading.Thread):
    """Ends the driver when the cluster's head (its GCS) stops answering.

    Without it a driver whose head died hangs in ``ray.wait`` until Ray's GCS client gives up
    and kills the process with a C++ log. This ends it sooner, with one line saying how to
    continue on a new head, and exit status 3. Before it leaves, the writes still queued in the
    background writers (checkpoints, ``run.json``, MLflow; services/hard_exit.py) are made,
    within a bounded wait. The run folder is then as a killed driver leaves it (every file in it
    is replaced whole, never half-written), which ``automl-cnn resume`` continues from.
    """

    def __init__(self, gcs: str, run: str | None, after: float = HEAD_LOST_AFTER_S) -> None:
        super().__init__(name="head-watch", daemon=True)
        host, _, port = gcs.rpartition(":")
        self.where, self.gcs, self.run_dir, self.after = gcs, (host, int(port)), run, after
        self._stopped = threading.Event()

    @classmethod
    def start_for(cls, address: str | None, run: str | None) -> HeadWatch | None:
        """A started watch of the connected cluster's head; None for a local runtime or Ray Client."""
        if not address or address.startswith("ray://"):
            return None
        try:
            gcs = ray.get_runtime_context().gcs_address
        except Exception:  # no GCS address to watch: Ray's own handling applies
            return None
        if not gcs or ":" not in gcs:
            return None
        watch = cls(gcs, run)
        watch.start()
        return watch

    def stop(self) -> None:
        self._stopped.set()

    def answers(self) -> bool:
        try:
            with socket.create_connection(self.gcs, timeout=3.0):
                return True
        except OSError:
            return False

    def message(self, silent_s: float) -> str:
        run = self.run_dir or "RUN"
        return (
            f"error: lost the Ray head at {self.where} (no answer for {silent_s:.0f} s); the search stopped "
            f"and can continue on a new head: automl-cnn resume {run} --ray-address NEW_HEAD:6379"
        )

    def run(self) -> None:
        silent_since: float | None = None
        while not self._stopped.wait(2.0):
            if self.answers():
                silent_since = None
                continue
            silent_since = silent_since or time.monotonic()
            silent = time.monotonic() - silent_since
            if silent >= self.after and not self._stopped.is_set():
                sys.stderr.write(self.message(silent) + "\n")
                for problem in flush_all():  # queued checkpoints, run.json and MLflow writes
                    sys.stderr.write(f"warning: a write queued before the head was lost: {problem}\n")
                sys.stderr.flush()
                os._exit(HEAD_LOST_EXIT)  # the main thread may be stuck in a Ray call for good
