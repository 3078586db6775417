"""MLflow writes batched off the decision path (services/tracking_writer.py), against a real
MLflow store: what is logged is what was logged without batching, fewer calls reach the store,
a read through the tracker sees every write queued before it, and a failed write is raised."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from automl_cnn.model.measures import EpochResult
from automl_cnn.services.tracking import MlflowTracker
from automl_cnn.services.tracking_writer import BatchWriter, TrackingWriteError


def _tracker(tmp_path: Path) -> MlflowTracker:
    return MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "writer")


def _log_a_trial(tracker: MlflowTracker, epochs: int) -> str:
    run_id = tracker.start_run("trial-0", {"blocks": 2, "lr": 0.1, "layers": [1, 2]}, {"automl_cnn.outcome": "running"})
    for epoch in range(1, epochs + 1):
        tracker.log_epoch(run_id, EpochResult(epoch, 1.0 / epoch, 0.5, 1.0, 0.1 * epoch, 0.2, 1e-3))
    tracker.set_tags(run_id, {"automl_cnn.outcome": "completed", "automl_cnn.reason": "done"})
    tracker.log_metrics(run_id, {"final_val_accuracy": 0.1 * epochs})
    tracker.end_run(run_id, "FINISHED")
    return run_id


def _what_is_logged(client: MlflowClient, run_id: str) -> tuple[object, ...]:
    run = client.get_run(run_id)
    history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "val_accuracy"))
    tags = {k: v for k, v in run.data.tags.items() if k.startswith("automl_cnn.")}
    return run.info.status, run.data.params, run.data.metrics, tags, history


def test_batched_logging_records_what_direct_logging_records(tmp_path: Path) -> None:
    tracker = _tracker(tmp_path)
    direct = _log_a_trial(tracker, epochs=5)
    with tracker.batched():
        queued = _log_a_trial(tracker, epochs=5)
    assert _what_is_logged(tracker.client, queued) == _what_is_logged(tracker.client, direct)
    run = tracker.client.get_run(queued)
    assert run.info.status == "FINISHED" and run.data.metrics["val_accuracy"] == pytest.approx(0.5)


class GatedClient:
    """A real MlflowClient whose calls wait until ``gate`` opens, and are counted; ``entered``
    is set when the first call is waiting."""

    def __init__(self, client: MlflowClient, gate: threading.Event) -> None:
        self.client, self.gate, self.calls = client, gate, list[str]()
        self.entered = threading.Event()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.entered.set()
            self.gate.wait()
            self.calls.append(name)
            return method(*args, **kwargs)

        return call


def test_a_runs_queued_writes_reach_the_store_as_one_batch_then_its_end(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = client.create_run(client.create_experiment("gated")).info.run_id
    gate = threading.Event()
    gated = GatedClient(client, gate)
    writer = BatchWriter(gated)  # type: ignore[arg-type]
    writer.log_batch(run_id, metrics=[Metric("first", 1.0, 0, 0)])
    assert gated.entered.wait(30)  # the thread writes it, and waits: the rest queue behind it
    for step in range(5):
        writer.log_batch(run_id, metrics=[Metric("loss", 1.0 / (step + 1), 0, step)])
    writer.log_batch(run_id, tags=[RunTag("outcome", "running")])
    writer.log_batch(run_id, tags=[RunTag("outcome", "completed")])  # the last value wins
    writer.end_run(run_id, "FINISHED")
    gate.set()
    writer.close()
    assert gated.calls == ["log_batch", "log_batch", "set_terminated"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["outcome"] == "completed"
    assert [m.value for m in client.get_metric_history(run_id, "loss")] == [1.0, 0.5, 1 / 3, 0.25, 0.2]


def test_a_read_through_the_tracker_sees_every_write_queued_before_it(tmp_path: Path) -> None:
    tracker = _tracker(tmp_path)
    with tracker.batched():
        run_id = tracker.start_run("trial-1", {"seed": 3}, {})
        tracker.set_tags(run_id, {"automl_cnn.outcome": "pruned"})
        tracker.end_run(run_id, "KILLED")
        run = tracker.client.get_run(run_id)  # flushes first
        assert run.info.status == "KILLED" and run.data.tags["automl_cnn.outcome"] == "pruned"
        assert run.data.params == {"seed": "3"}


def test_leaving_on_an_exception_still_writes_what_was_queued(tmp_path: Path) -> None:
    tracker = _tracker(tmp_path)
    with pytest.raises(KeyboardInterrupt), tracker.batched():
        run_id = tracker.start_run("trial-2", {}, {})
        tracker.end_run(run_id, "KILLED")
        raise KeyboardInterrupt
    assert MlflowClient(tracker.uri).get_run(run_id).info.status == "KILLED"


def test_a_failed_write_is_raised_not_dropped(tmp_path: Path) -> None:
    tracker = _tracker(tmp_path)
    good = tracker.start_run("trial-3", {}, {})
    with pytest.raises(TrackingWriteError, match="no-such-run"), tracker.batched():
        tracker.end_run(good, "FINISHED")
        tracker.log_metrics("no-such-run", {"x": 1.0})
        tracker.flush()  # raised here, or at the next call, or on leaving at the latest
    # the write queued before the failure was made
    assert MlflowClient(tracker.uri).get_run(good).info.status == "FINISHED"


def test_a_failure_is_raised_by_the_next_call_and_counts_the_writes_after_it(tmp_path: Path) -> None:
    writer = BatchWriter(MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"))
    writer.log_batch("gone", metrics=[Metric("x", 1.0, 0, 0)])
    writer.log_batch("gone-too", metrics=[Metric("x", 1.0, 0, 0)])
    with pytest.raises(TrackingWriteError, match=r"run gone failed.*\(1 more writes failed after it\)"):
        writer.flush()
    writer.flush()  # raised once
    writer.close()


def test_large_batches_are_split_within_mlflows_limits(tmp_path: Path) -> None:
    tracker = _tracker(tmp_path)
    with tracker.batched():
        run_id = tracker.start_run("wide", {f"p{i}": i for i in range(250)}, {})
        for step in range(3):
            tracker.log_metrics(run_id, {f"m{i}": float(i) for i in range(600)}, step=step)
    run = tracker.client.get_run(run_id)
    assert len(run.data.params) == 250 and len(run.data.metrics) == 600
    assert len(tracker.client.get_metric_history(run_id, "m7")) == 3
