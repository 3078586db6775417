"""A driver on a host that is not a node of the cluster it drives.

Ray attaches a driver to a raylet on its own host: ``ray.init(address=HOST:PORT)`` from a
laptop, a CI runner or the compose ``search`` container (none runs a raylet) fails after a
minute with "No node info found" or, where another cluster's raylet runs on the same host, dies
in C++ trying its socket. Such a driver joins the cluster for the lifetime of the search as a
node with no CPUs and no GPUs (``ray start --address=... --num-cpus=0 --num-gpus=0``): no
trial is ever placed on it, but it holds the driver's objects (the dataset travels from it to
the workers) and its address is one the cluster can reach. It leaves when the search ends.
(Ray Client, ``--ray-address ray://HOST:10001``, is the other route; it needs no local node.)
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from automl_cnn.errors import UserInputError

JOIN_TIMEOUT_S = 90.0


def _cluster_nodes(address: str) -> dict[str, str]:
    """The alive nodes of the cluster whose GCS is at ``address``: hex id -> node IP."""
    from ray._raylet import GcsClient  # type: ignore[attr-defined]
    from ray.core.generated.gcs_pb2 import GcsNodeInfo  # type: ignore[attr-defined]

    client = GcsClient(address=address)
    infos = client.get_all_node_info(timeout=15, state_filter=GcsNodeInfo.GcsNodeState.ALIVE)
    return {node_id.hex(): info.node_manager_address for node_id, info in infos.items()}


def _cluster_node_ids(address: str) -> set[str]:
    """Hex ids of the alive nodes of the cluster whose GCS is at ``address``."""
    return set(_cluster_nodes(address))


def _local_node_ids() -> set[str]:
    """Ids of the raylets of this host: running here, on one of its addresses, with a socket it reaches.

    Ray finds local raylets by their command lines. A host that shares its process table with
    another (a container started with ``--pid=host``, or network namespaces on one machine)
    sees that host's raylets too, but neither their address nor their ``/tmp/ray``: attaching to
    one of them dies in C++ ("Failed to connect to socket"). The socket's path alone does not
    tell: a node that joins a cluster takes the cluster's session name, so its socket has the
    same path as the head's.
    """
    from ray._private import services

    psutil = services.psutil  # the copy Ray ships (on the path only once ray is imported)
    addresses = {addr.address for nic in psutil.net_if_addrs().values() for addr in nic}
    found = set()
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            cmdline = proc.info["cmdline"] or []
            if not services._is_raylet_process(cmdline):
                continue
            flags = dict(arg.split("=", 1) for line in cmdline for arg in line.split(" ") if "=" in arg)
            socket = flags.get("--raylet_socket_name", "")
            here = flags.get("--node_ip_address") in addresses and socket and os.path.exists(socket)
            if flags.get("--node_id") and here:
                found.add(flags["--node_id"])
    return found


def is_node_of(address: str) -> bool:
    """Whether a raylet of the cluster at ``address`` runs on this host."""
    local = _local_node_ids()
    if not local:
        return False
    try:
        return bool(local & _cluster_node_ids(address))
    except Exception:  # the GCS does not answer: ray.init reports it in its own words
        return True


def _plain(address: str | None) -> bool:
    """A ``HOST:PORT`` address: not ``auto``, not ``ray://``, not malformed (``ray.init`` explains those)."""
    return bool(address) and re.fullmatch(r"[^:/\s]+:\d+", address or "") is not None


def needs_join(address: str | None) -> bool:
    """A plain ``HOST:PORT`` address whose cluster has no node here (anything else goes to
    ``ray.init`` as given)."""
    return _plain(address) and not is_node_of(str(address))


def attach_options(address: str | None) -> dict[str, str]:
    """``ray.init`` options naming the node of this host to attach to: by its IP, since Ray would
    otherwise prefer the head among the raylets it sees, which on a host sharing its process
    table may be another host's. Empty where Ray's own choice is the only one."""
    if not _plain(address):
        return {}
    local = _local_node_ids()
    with contextlib.suppress(Exception):  # the GCS does not answer: ray.init reports it in its own words
        nodes = _cluster_nodes(str(address))
        ips = sorted({nodes[node_id] for node_id in local if node_id in nodes})
        if len(ips) == 1:
            return {"_node_ip_address": ips[0]}
    return {}


@contextlib.contextmanager
def joined(address: str, timeout_s: float = JOIN_TIMEOUT_S) -> Iterator[None]:
    """This host is a zero-resource node of the cluster at ``address`` inside the block."""
    ray_cli = str(Path(sys.executable).parent / "ray")
    log = tempfile.NamedTemporaryFile(prefix="automl-cnn-ray-join-", suffix=".log", delete=False)  # noqa: SIM115
    before = _local_node_ids()
    proc = subprocess.Popen(
        [ray_cli, "start", f"--address={address}", "--num-cpus=0", "--num-gpus=0",
         "--disable-usage-stats", "--block"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        _wait_joined(address, proc, before, Path(log.name), timeout_s)
        yield
    finally:
        _leave(proc)
        log.close()
        with contextlib.suppress(OSError):
            os.unlink(log.name)


def _wait_joined(
    address: str,
    proc: subprocess.Popen,  # type: ignore[type-arg]
    before: set[str],
    log: Path,
    timeout_s: float,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UserInputError(
                f"this host could not join the Ray cluster at {address} as a driver node "
                f"({_last_line(log)}); check the address, the token (RAY_AUTH_TOKEN) and that this host "
                "can reach the cluster's nodes, or use --ray-address ray://HOST:10001 (Ray Client)"
            )
        new = _local_node_ids() - before
        if new:
            with contextlib.suppress(Exception):
                if new & _cluster_node_ids(address):
                    return
        time.sleep(0.5)
    _leave(proc)
    raise UserInputError(
        f"this host did not join the Ray cluster at {address} within {timeout_s:.0f} s "
        f"({_last_line(log)}); check that the cluster's nodes can reach this host, or use "
        "--ray-address ray://HOST:10001 (Ray Client)"
    )


def _last_line(log: Path) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "no output"


def _leave(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    """Stop the node started here (``ray start --block`` stops its own processes on SIGTERM)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
