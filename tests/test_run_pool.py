"""Trial runs opened ahead (services/run_pool.py), against a real MLflow store: a taken run is
named, tagged and parameterised as one created at launch, the pool refills, unused runs are
deleted when the search leaves, and a killed driver's are deleted by the resume's recovery."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from automl_cnn.engine.search.recovery import _close_orphan_runs
from automl_cnn.services.run_pool import RESERVED, RunPool, runs_ahead
from automl_cnn.services.tracking import MlflowTracker
from automl_cnn.services.tracking_writer import BatchWriter


def _tracker(tmp_path: Path) -> MlflowTracker:
    return MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "pool")


def _children(tracker: MlflowTracker, parent: str) -> dict[str, Any]:
    runs = tracker.client.search_runs([tracker.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'")
    return {r.info.run_name: r for r in runs}


def test_a_pool_is_kept_only_where_launches_are_frequent() -> None:
    assert [runs_ahead(n) for n in (1, 8, 15, 16, 64, 256, 1024)] == [0, 0, 0, 1, 4, 16, 16]


def test_a_run_taken_from_the_pool_is_logged_as_one_opened_at_launch(tmp_path: Path) -> None:
    tracker = _tracker(tmp_path)
    parent = tracker.start_run("search", {}, {})
    with tracker.batched(runs_ahead=3, parent=parent):
        tracker.flush()  # the three are open
        assert {r.info.run_name for r in _children(tracker, parent).values()} == {RESERVED}
        opened = tracker.client.search_runs([tracker.experiment_id], f"attributes.run_name = '{RESERVED}'")
        assert len(opened) == 3
        ids = [tracker.start_run(f"trial-{n}", {"lr": 0.1, "blocks": n}, {"automl_cnn.trial": str(n)}, parent=parent)
               for n in range(5)]  # fmt: skip
        assert len(set(ids)) == 5
        assert set(ids[:3]) == {r.info.run_id for r in opened}  # the first three were opened ahead
        direct = tracker.start_run("not-a-trial", {}, {})  # no parent: never from the pool
        assert direct not in {r.info.run_id for r in opened}
        tracker.end_run(ids[0], "FINISHED")
    children = _children(tracker, parent)
    assert sorted(children) == [f"trial-{n}" for n in range(5)]  # no run left opened ahead
    first = children["trial-0"]
    assert first.info.run_id == ids[0] and first.info.status == "FINISHED"
    assert first.data.params == {"lr": "0.1", "blocks": "0"}
    assert first.data.tags["automl_cnn.trial"] == "0" and first.data.tags["mlflow.runName"] == "trial-0"
    deleted = tracker.client.search_runs(
        [tracker.experiment_id], f"attributes.run_name = '{RESERVED}'", run_view_type=2
    )  # DELETED_ONLY
    assert len(deleted) == 3  # refilled after each of the 3 taken, unused at the end, deleted


def test_runs_a_killed_driver_left_opened_ahead_are_deleted_by_recovery(tmp_path: Path) -> None:
    tracker = _tracker(tmp_path)
    parent = tracker.start_run("search", {}, {})
    writer = BatchWriter(tracker.client)
    RunPool(writer, tracker.experiment_id, parent, size=2)
    writer.close()  # the driver dies here: the pool is never closed
    trial = tracker.start_run("trial-0", {}, {"automl_cnn.trial": "0"}, parent=parent)
    assert len(_children(tracker, parent)) == 2  # trial-0 and the reserved ones (one name)
    _close_orphan_runs(SimpleNamespace(tracker=tracker, parent_run=parent), keep={trial})  # type: ignore[arg-type]
    left = tracker.client.search_runs([tracker.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'")
    assert [(r.info.run_id, r.info.status) for r in left] == [(trial, "RUNNING")]
