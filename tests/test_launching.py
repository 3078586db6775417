"""engine/search/launching.py: the driver handles ready results between launches, and the best
trials' weights are kept without a scan of every record.

The interleaving test runs the real driver (real study, MLflow store, run folder) on the
driver-scale benchmark's simulated executor with a fake clock on which every launch takes a
second: a unit test of the driver's own scheduling, not of Ray.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from sessions import TINY, plan_for, session_for
from simulation import Clock, driver_scale

from automl_cnn.engine.outcome import Outcome
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.runstate import RunState
from automl_cnn.engine.search.dedupe import Known
from automl_cnn.engine.search.driver import SearchDriver
from automl_cnn.engine.search.launching import KeptWeights
from automl_cnn.model.architecture import Architecture, Candidate, ConvBlock, Head, TrainConfig
from automl_cnn.model.measures import EpochResult
from automl_cnn.training.messages import JobSpec


def test_results_ready_are_handled_before_the_next_launch(tmp_path: Path) -> None:
    """4 free slots, launches of 1 s, epochs of 2 s: the first trial's first result is ready
    before the fourth launch, and the driver decides on it first (filling every slot first
    would keep it waiting for the whole burst)."""
    clock, events = Clock(), []
    curves = [{"val_acc": [0.5, 0.6], "train_acc": [0.4, 0.5], "val_loss": [1.0, 0.9], "train_loss": [1.1, 1.0]}]
    sim: Any = driver_scale().SimulatedExecutor(4, 2.0, curves, 16, clock, clock.sleep)
    submit, advance, release = sim.submit, sim.advance, sim.release

    def launched(spec: JobSpec) -> None:
        events.append(("submit", spec.job, clock.now))
        submit(spec)
        clock.now += 1.0  # what launching it cost the driver

    def advanced(job: str, want_checkpoint: bool = False, fraction: float = 1.0) -> None:
        events.append(("advance", job, clock.now))
        advance(job, want_checkpoint, fraction)

    def released(job: str) -> None:
        events.append(("release", job, clock.now))
        release(job)

    sim.submit, sim.advance, sim.release = launched, advanced, released
    plan = plan_for(tmp_path, TINY, trials=4, workers=4, pruner="none")
    with session_for(plan, executor=sim) as session:
        SearchDriver(session, lambda _records: math.inf, Known()).run()
    submits = [i for i, event in enumerate(events) if event[0] == "submit"]
    first_decision = next(i for i, event in enumerate(events) if event[0] != "submit")
    assert len(submits) == 4 and first_decision < submits[3]
    assert events[first_decision][1] == events[submits[0]][1]  # the first trial, decided at once


def _record(number: int, acc: float) -> TrialRecord:
    candidate = Candidate(Architecture((ConvBlock(filters=4),), Head()), TrainConfig(epochs=1))
    epoch = EpochResult(1, 1.0, 0.5, 1.0, acc, 1.0, 1e-3)
    return TrialRecord(
        number=number, seed=number, run_id="", candidate=candidate, outcome=Outcome.COMPLETED, history=(epoch,)
    )


def _kept(state: RunState) -> set[int]:
    return {int(p.name.split(".")[0].removeprefix("trial-")) for p in (state.folder / "outputs").glob("*.weights.pt")}


def test_the_best_trials_weights_are_kept_and_the_one_pushed_out_deleted(tmp_path: Path) -> None:
    state = RunState(tmp_path, "digits", {}, "fingerprint")
    probs = np.full((3, 2), 0.5, dtype=np.float16)
    for number in (0, 1, 7):  # an earlier driver's files: 7 was never recorded as completed
        state.save_outputs(number, {"w": number}, probs)
    kept = KeptWeights(state, [_record(0, 0.9), _record(1, 0.5)], size=2)
    state.save_outputs(2, {"w": 2}, probs)
    kept.add(2, 0.7)  # pushes out trial 1; the earlier driver's stray file goes too
    assert _kept(state) == {0, 2} == kept.numbers
    state.save_outputs(3, {"w": 3}, probs)
    kept.add(3, 0.6)  # not among the best: its own weights go
    assert _kept(state) == {0, 2}
    state.save_outputs(4, {"w": 4}, probs)
    kept.add(4, 0.7)  # a tie: the later trial stays
    assert _kept(state) == {0, 4}
    state.save_outputs(5, {"w": 5}, probs)
    kept.add(5, float("nan"))  # no finite score: never kept over a scored one
    assert _kept(state) == {0, 4}
    assert state.load_val_probs(3) is not None  # probabilities always stay
