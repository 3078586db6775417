"""Which addresses make the driver join the cluster as a zero-resource node (the join itself runs
for real in tests/test_multihost.py, on a host that is no Ray node)."""

from __future__ import annotations

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
