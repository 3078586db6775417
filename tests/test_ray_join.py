"""Which addresses make the driver join the cluster as a zero-resource node, and which raylets count
as this host's (the join itself runs for real in tests/test_multihost.py, on a host that is no Ray
node, and in tests/test_shared_process_table.py, on a host that sees another's raylet)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from automl_cnn.services import ray_join


@pytest.mark.parametrize("address", [None, "", "auto", "ray://head:10001"])
def test_no_join_for_a_local_runtime_auto_or_ray_client(address: str | None) -> None:
    assert not ray_join.needs_join(address)


def test_a_host_without_raylets_joins_without_asking_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_join, "_local_node_ids", lambda: set())
    monkeypatch.setattr(ray_join, "_cluster_node_ids", lambda address: pytest.fail("no GCS call needed"))
    assert ray_join.needs_join("head:6379")


def test_a_host_running_another_clusters_raylet_still_joins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_join, "_local_node_ids", lambda: {"aa"})
    monkeypatch.setattr(ray_join, "_cluster_node_ids", lambda address: {"bb", "cc"})
    assert ray_join.needs_join("head:6379")
    monkeypatch.setattr(ray_join, "_cluster_node_ids", lambda address: {"aa", "cc"})
    assert not ray_join.needs_join("head:6379")  # a node of this cluster: attach to it


def test_only_raylets_whose_socket_this_host_reaches_count_as_local(tmp_path: Path) -> None:
    """A host sharing its process table with another (``--pid=host``) sees that host's raylets
    by their command lines, but not their sockets: those are not this host's nodes."""
    program = tmp_path / "raylet"  # what Ray looks for: a process whose program is named raylet
    program.symlink_to(sys.executable)
    reachable = tmp_path / "sockets" / "raylet"
    reachable.parent.mkdir()
    reachable.touch()
    sleep = [str(program), "-c", "import time; time.sleep(60)"]
    raylets = {  # node id: (its address, its socket)
        "aa" * 14: ("127.0.0.1", reachable),  # this host's
        "bb" * 14: ("127.0.0.1", tmp_path / "elsewhere" / "raylet"),  # a socket in another /tmp/ray
        "cc" * 14: ("192.0.2.1", reachable),  # another host's address (its socket has the same path)
    }
    fakes = [
        subprocess.Popen([*sleep, f"--node_id={node}", f"--node_ip_address={ip}", f"--raylet_socket_name={sock}"])
        for node, (ip, sock) in raylets.items()
    ]
    try:
        deadline = time.monotonic() + 10
        while "aa" * 14 not in (found := ray_join._local_node_ids()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "aa" * 14 in found and not found & {"bb" * 14, "cc" * 14}
    finally:
        for fake in fakes:
            fake.kill()
            fake.wait()


def test_the_driver_attaches_to_this_hosts_node_by_its_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_join, "_local_node_ids", lambda: {"aa"})
    monkeypatch.setattr(ray_join, "_cluster_nodes", lambda address: {"aa": "10.0.0.7", "hh": "10.0.0.1"})
    assert ray_join.attach_options("head:6379") == {"_node_ip_address": "10.0.0.7"}
    assert ray_join.attach_options("ray://head:10001") == {}
    assert ray_join.attach_options("auto") == {}
    monkeypatch.setattr(ray_join, "_local_node_ids", lambda: set())
    assert ray_join.attach_options("head:6379") == {}  # Ray's own choice, which reports what is wrong
