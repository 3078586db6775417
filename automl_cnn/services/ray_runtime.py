"""Starting (or joining) the Ray runtime the workers live in."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator

import ray

from automl_cnn.errors import UserInputError
from automl_cnn.services.executor import cpu_count
from automl_cnn.services.ray_join import joined, needs_join


@contextlib.contextmanager
def ray_runtime(address: str | None = None) -> Iterator[dict[str, float]]:
    """Yield the cluster's resources; start a local runtime (and stop it after) unless one is
    running already or ``address`` names a cluster to join."""
    if ray.is_initialized():
        yield cluster_resources()
        return
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
            ray.init(address=address, **kwargs)  # type: ignore[arg-type]
        else:
            ray.init(num_cpus=cpu_count(), **kwargs)  # type: ignore[arg-type]
    except UserInputError:
        stack.close()
        raise
    except Exception as exc:  # ConnectionError, AuthenticationError, RuntimeError...
        stack.close()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        where = f"the Ray cluster at {address}" if address else "a local Ray runtime"
        if "auth" in str(exc).lower():
            fix = "set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the cluster's token"
        elif address:  # Ray reports a refused token as a plain connection failure
            fix = (
                "start it with 'ray start --head' or fix --ray-address; a cluster with token "
                "authentication needs RAY_AUTH_MODE=token and its token in RAY_AUTH_TOKEN"
            )
        else:
            fix = "check 'ray status'"
        raise UserInputError(f"cannot connect to {where} ({first[:160]}); {fix}") from None
    finally:
        ray_logger.setLevel(level)
        # ray.init replaces the caller's SIGTERM handler (the CLI's), even when it then fails: put a
        # handler the caller set back always, and the default one too when no runtime came up
        if callable(sigterm) or (sigterm is not None and not ray.is_initialized()):
            signal.signal(signal.SIGTERM, sigterm)
    with stack:
        try:
            yield cluster_resources()
        finally:
            ray.shutdown()


def cluster_resources() -> dict[str, float]:
    """The cluster's total resources, plus ``node_CPU`` / ``node_GPU``: the most any one live
    node has (an actor is placed on one node)."""
    out = {k: float(v) for k, v in ray.cluster_resources().items()}
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for kind in ("CPU", "GPU"):
        out[f"node_{kind}"] = max((float(r.get(kind, 0)) for r in nodes), default=out.get(kind, 0.0))
    return out
