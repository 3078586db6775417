"""The driver-scale benchmark's simulated executor (benchmarks/driver_scale.py), on a fake clock.

A unit test of the benchmark's own bookkeeping: no driver, no Ray (the simulation stands in for
no real executor in any test).
"""

from __future__ import annotations

from typing import Any

import pytest
from simulation import Clock, driver_scale

from automl_cnn.model.architecture import Architecture, Candidate, ConvBlock, Head, TrainConfig
from automl_cnn.training.messages import JobSpec

SIM = driver_scale()


def _spec(job: str, epochs: int = 3, checkpoint: bytes | None = None) -> JobSpec:
    candidate = Candidate(Architecture((ConvBlock(filters=4),), Head()), TrainConfig(epochs=epochs))
    return JobSpec(job, candidate.to_dict(), seed=7, data=None, checkpoint=checkpoint, outputs=True)


def _executor(slots: int = 2) -> tuple[Any, Clock]:
    clock = Clock(start=100.0)
    curves = [{"val_acc": [0.5, 0.8], "train_acc": [0.4, 0.9], "val_loss": [1.0, 0.5], "train_loss": [1.1, 0.4]}]
    return SIM.SimulatedExecutor(slots, 2.0, curves, 16, clock, clock.sleep), clock


def test_results_come_when_their_epoch_time_has_come_and_follow_the_curve() -> None:
    sim, clock = _executor()
    sim.submit(_spec("a"))
    assert sim.free == 1 and sim.jobs == ["a"]
    assert sim.wait(0.5) == [] and clock.now == pytest.approx(100.5)  # not due yet: waited the timeout
    [first] = sim.wait(5.0)  # sleeps only until it is due
    assert clock.now == pytest.approx(102.0)
    assert first.epoch is not None and first.epoch.val_acc == 0.5 and first.epoch.seconds == pytest.approx(2.0)
    assert not first.done and first.checkpoint is not None and len(first.checkpoint) == 16
    clock.now += 0.25  # the driver decides
    sim.advance("a")
    assert sim.stats.decisions == [pytest.approx(0.25)]
    sim.wait(5.0)
    sim.advance("a")
    [last] = sim.wait(5.0)
    assert last.done and last.outputs is not None  # the third epoch of three holds the curve's last value
    assert last.epoch is not None and last.epoch.epoch == 3 and last.epoch.val_acc == 0.8


def test_busy_time_counts_epochs_and_cut_epochs_and_refills_are_timed() -> None:
    sim, clock = _executor(slots=2)
    sim.submit(_spec("a", epochs=1))
    sim.submit(_spec("b", epochs=5))
    results = sim.wait(5.0)  # both due at 102
    assert [(r.job, r.done) for r in results] == [("a", True), ("b", False)]
    clock.now = 103.0
    sim.release("a")  # decided 1 s after its result
    sim.release("b")  # b's result was delivered too (same due time)
    clock.now = 103.5
    sim.submit(_spec("c"))  # refills a slot 1.5 s after its last result was ready
    assert sim.stats.refills == [pytest.approx(1.5)]
    clock.now = 104.5
    sim.release("c")  # an epoch cut short after 1 s
    t0, t1 = 100.0, 106.0
    assert sim.stats.utilisation(t0, t1, 2) == pytest.approx((2.0 + 2.0 + 1.0) / 12.0)


def test_a_job_resumed_from_a_checkpoint_continues_its_epochs() -> None:
    sim, _clock = _executor(slots=1)
    sim.submit(_spec("a", epochs=3, checkpoint=b"sim:2:"))
    [result] = sim.wait(5.0)
    assert result.done and result.epoch is not None and result.epoch.epoch == 3
    assert SIM.load_curves()  # the recorded curves ship with the benchmark
