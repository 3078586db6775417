"""The run's time budget on its own (a fake clock stands in for this process's): every time
question, and the time spent carried from one driver to the next through ``run.json``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from automl_cnn.engine.budget import EXPORT_RESERVE_SECONDS, MAX_TRIAL_SHARE, Budget
from automl_cnn.engine.runstate import RUN_FILE, RunState


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_clock_counts_from_the_start_and_from_earlier_drivers() -> None:
    clock = FakeClock()
    budget = Budget(600.0, spent=100.0, clock=clock)
    assert budget.elapsed() == 100.0  # the earlier drivers' time, nothing yet of this one
    clock.now += 50.0
    assert budget.elapsed() == 150.0
    assert budget.left() == 450.0
    clock.now += 1000.0
    assert budget.left() == 0.0  # over the budget: nothing left, never negative


def test_the_clock_starts_when_the_request_came_in() -> None:
    """Loading the data and starting Ray come out of the budget: the clock counts from the
    request (``Plan.started``), not from when the run's session opens; never from the future."""
    clock = FakeClock()
    budget = Budget(600.0, spent=100.0, clock=clock, started=clock.now - 8.0)
    assert budget.elapsed() == 108.0
    assert Budget(600.0, clock=clock, started=clock.now + 5.0).elapsed() == 0.0


def test_a_real_plan_records_when_the_request_came_in(tmp_path: Path) -> None:
    import time

    from automl_cnn.app import make_plan
    from automl_cnn.engine.config import SearchConfig

    before = time.monotonic()
    plan = make_plan("digits", "tiny", SearchConfig.from_settings(out=str(tmp_path / "run")), None)
    state = RunState(folder=tmp_path, data="digits", config={}, fingerprint="f")
    budget = state.open_budget(60.0, started=plan.started)
    assert plan.started is not None and before <= plan.started <= time.monotonic()
    assert budget.elapsed() >= time.monotonic() - plan.started - 1e-3 > 0  # the plan's own time is counted


def test_each_phase_gets_its_share() -> None:
    clock = FakeClock()
    budget = Budget(600.0, spent=0.0, clock=clock)
    assert budget.trial_cap == pytest.approx(MAX_TRIAL_SHARE * 600.0) == pytest.approx(200.0)
    assert budget.export_reserve == EXPORT_RESERVE_SECONDS
    # the search stops when the final fits and the export would no longer fit
    assert budget.search_deadline(final_seconds=80.0) == 600.0 - 80.0 - EXPORT_RESERVE_SECONDS
    assert budget.search_deadline(final_seconds=0.0) > budget.search_deadline(final_seconds=80.0)
    clock.now += 400.0
    assert budget.fit_time_left() == 600.0 - 400.0 - EXPORT_RESERVE_SECONDS  # the final phase's share
    clock.now += 200.0
    assert budget.fit_time_left() == 0.0


def test_without_a_time_budget_nothing_is_capped() -> None:
    clock = FakeClock()
    budget = Budget(None, clock=clock)
    clock.now += 10.0
    assert budget.elapsed() == 10.0  # the clock still runs: the summary's wall time
    assert (budget.left(), budget.trial_cap, budget.fit_time_left()) == (None, None, None)
    assert budget.search_deadline(1e9) == math.inf


def test_the_time_spent_is_saved_with_the_run_and_restored_on_resume(tmp_path: Path) -> None:
    first_clock = FakeClock(5000.0)
    state = RunState(folder=tmp_path, data="digits", config={"time_budget": 600.0}, fingerprint="f")
    budget = state.open_budget(600.0, clock=first_clock)
    state.save()
    assert json.loads((tmp_path / RUN_FILE).read_text())["elapsed"] == 0.0
    first_clock.now += 120.0  # the first driver runs two minutes ...
    state.save()
    assert json.loads((tmp_path / RUN_FILE).read_text())["elapsed"] == 120.0
    first_clock.now += 30.0  # ... and dies 30 s after its last save: those 30 s are lost
    assert budget.elapsed() == 150.0

    second_clock = FakeClock(7.0)  # a new process: its clock has nothing to do with the first's
    back = RunState.load(tmp_path)
    resumed = back.open_budget(600.0, clock=second_clock)
    assert resumed == Budget(600.0, spent=120.0)
    second_clock.now += 60.0
    assert resumed.elapsed() == 180.0 and resumed.left() == 420.0
    assert resumed.trial_cap == budget.trial_cap  # the same budget, its time spent counted
    back.save()
    assert RunState.load(tmp_path).elapsed == 180.0
