"""Multi-objective successive halving (pure logic): rungs, fronts, crowding, the asynchronous
decision, brackets and replay; and that ``--pruner`` keeps the rung settings of Optuna's pruners."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from sessions import InterruptingExecutor, plan_for, session_for

from automl_cnn.engine.outcome import Outcome, TrialAttrs
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.runstate import RunState
from automl_cnn.engine.search.driver import SearchDriver
from automl_cnn.engine.search.moasha import (
    ETA,
    MEDIAN_MIN_TRIALS,
    MIN_EPOCHS,
    Bracket,
    MultiObjectiveHalving,
    crowding_distances,
    for_pruner,
    non_dominated_fronts,
    rung_epochs,
)
from automl_cnn.engine.search.recovery import recover
from automl_cnn.services.study import make_pruner


def asha(max_epochs: int = 15) -> MultiObjectiveHalving:
    rule = for_pruner("asha", max_epochs)
    assert rule is not None
    return rule


def test_rungs_lie_at_min_times_eta_powers_below_the_last_epoch() -> None:
    assert rung_epochs(1, 3, 0, 15) == (1, 3, 9)
    assert rung_epochs(1, 3, 0, 9) == (1, 3)  # reaching epoch 9 of 9 is completing
    assert rung_epochs(1, 3, 1, 27) == (3, 9)
    assert rung_epochs(1, 3, 0, 1) == ()
    assert asha().brackets == (Bracket((1, 3, 9)),)
    assert for_pruner("none", 15) is None
    with pytest.raises(ValueError, match="unknown pruner"):
        for_pruner("bogus", 15)


def test_the_rung_settings_are_those_of_the_single_objective_pruners() -> None:
    sha = make_pruner("asha", 15)
    assert isinstance(sha, optuna.pruners.SuccessiveHalvingPruner)
    assert (sha._min_resource, sha._reduction_factor, sha._min_early_stopping_rate) == (MIN_EPOCHS, ETA, 0)
    band = make_pruner("hyperband", 15)
    assert isinstance(band, optuna.pruners.HyperbandPruner)
    band._try_initialization(optuna.create_study(pruner=band))
    ours = for_pruner("hyperband", 15)
    assert ours is not None and ours.name == "multi-objective Hyperband"
    assert list(ours.shares) == band._trial_allocation_budgets == [9, 5, 3]
    for bracket, sh in zip(ours.brackets, band._pruners, strict=True):
        assert (sh._min_resource, sh._reduction_factor) == (MIN_EPOCHS, bracket.eta)
        assert bracket.rungs == rung_epochs(MIN_EPOCHS, ETA, sh._min_early_stopping_rate, 15)
    median = make_pruner("median", 15)
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert median._n_startup_trials + 1 == MEDIAN_MIN_TRIALS and median._n_warmup_steps == MIN_EPOCHS
    rule = for_pruner("median", 4)
    assert rule is not None and rule.brackets == (Bracket((1, 2, 3), eta=2, min_trials=MEDIAN_MIN_TRIALS),)


def test_non_dominated_fronts() -> None:
    points = [(0.1, 5.0), (0.2, 1.0), (0.3, 6.0), (0.15, 3.0), (0.2, 1.0), (0.5, 7.0)]
    assert non_dominated_fronts(points) == [[0, 1, 3, 4], [2], [5]]
    assert non_dominated_fronts([]) == []


def test_crowding_distance_favours_the_extremes_and_the_isolated() -> None:
    points = [(0.0, 10.0), (0.1, 9.0), (0.5, 5.0), (0.9, 1.0), (1.0, 0.0)]
    d = crowding_distances(points, range(5))  # type: ignore[arg-type]
    assert d[0] == d[4] == math.inf
    assert d[2] > d[1] and d[2] > d[3]
    assert d[2] == pytest.approx((0.9 - 0.1) / 1.0 + (9.0 - 1.0) / 10.0)
    assert crowding_distances(points, [1, 2]) == {1: math.inf, 2: math.inf}


def test_a_trial_goes_on_until_enough_trials_are_at_the_rung_to_decide() -> None:
    rule = asha()
    first = rule.observe(0, 1, (0.1, 100.0))
    second = rule.observe(1, 1, (0.5, 900.0))  # dominated, but only two are there: it goes on
    assert first is not None and not first.stop and first.trials == 1
    assert second is not None and not second.stop and (second.trials, second.dominated_by) == (2, 1)
    assert rule.observe(1, 1, (0.5, 900.0)) is None  # recorded once: a repeated epoch (a retry) decides nothing
    assert rule.recorded(1) == {0: (0.1, 100.0), 1: (0.5, 900.0)}


def test_a_dominated_trial_stops_once_the_rung_holds_eta_trials() -> None:
    rule = asha()
    rule.observe(0, 1, (0.1, 100.0))
    rule.observe(1, 1, (0.2, 50.0))
    v = rule.observe(2, 1, (0.3, 200.0))  # dominated by both; the rung keeps 3 // 3 = 1
    assert v is not None and v.stop and (v.trials, v.keep, v.dominated_by, v.ahead) == (3, 1, 2, 2)
    assert v.describe() == "dominated by 2 of the 2 other trials at this rung, which keeps the best 1"
    kept = rule.observe(3, 1, (0.05, 20.0))  # dominates everything: always goes on
    assert kept is not None and not kept.stop and kept.ahead == 0


def test_a_non_dominated_trial_can_be_crowded_out_and_ties_favour_the_newcomer() -> None:
    rule = asha()
    for n, point in enumerate([(0.0, 10.0), (1.0, 0.0), (0.2, 8.0), (0.8, 2.0), (0.6, 4.5)]):
        rule.observe(n, 1, point)
    v = rule.observe(5, 1, (0.3, 7.0))  # on the one front, between close neighbours; keeps 6 // 3 = 2
    assert v is not None and v.stop and v.dominated_by == 0 and v.ahead >= 2
    assert "not dominated but crowded out on the best front" in v.describe()
    tied = asha()
    for n, point in enumerate([(0.0, 10.0), (1.0, 0.0)]):
        tied.observe(n, 1, point)
    v = tied.observe(2, 1, (0.0, 10.0))  # equal to an extreme point: infinite crowding, as it
    assert v is not None and not v.stop


def test_only_rungs_of_the_trials_bracket_and_finite_vectors_are_recorded() -> None:
    rule = asha()
    assert rule.observe(0, 2, (0.1, 1.0)) is None and rule.recorded(2) == {}
    assert rule.observe(0, 1, (math.nan, 1.0)) is None and rule.recorded(1) == {}


def test_decisions_are_asynchronous_and_replay_rebuilds_the_rungs() -> None:
    curves = {
        0: [(1, (0.5, 10.0)), (2, (0.4, 10.0)), (3, (0.3, 10.0))],
        1: [(1, (0.2, 30.0)), (2, (0.1, 30.0)), (3, (0.05, 30.0))],
        2: [(1, (0.6, 40.0))],
    }
    live = asha(9)
    for number, curve in curves.items():
        for epoch, vector in curve:
            live.observe(number, epoch, vector)
    resumed = asha(9)
    for number, curve in curves.items():
        resumed.replay(number, curve)
    assert resumed.recorded(1) == live.recorded(1) and resumed.recorded(3) == live.recorded(3)
    assert set(resumed.recorded(1)) == {0, 1, 2} and set(resumed.recorded(3)) == {0, 1}
    assert resumed.observe(1, 3, (0.05, 30.0)) is None  # already decided there


def test_hyperband_brackets_are_fixed_by_trial_number_in_proportion_to_their_shares() -> None:
    rule = for_pruner("hyperband", 15)
    assert rule is not None
    counts = Counter(rule.bracket_of(n) for n in range(1700))
    assert [rule.bracket_of(n) for n in range(50)] == [rule.bracket_of(n) for n in range(50)]
    assert all(abs(counts[b] / 1700 - share / 17) < 0.05 for b, share in enumerate(rule.shares))
    late = next(n for n in range(100) if rule.bracket_of(n) == 2)  # rungs from epoch 9 only
    assert rule.observe(late, 1, (0.9, 1.0)) is None and rule.recorded(9, bracket=2) == {}
    rule.observe(late, 9, (0.1, 1.0))
    assert rule.recorded(9, bracket=2) == {late: (0.1, 1.0)} and rule.recorded(9, bracket=0) == {}


# -- through the engine, on the in-process executor ----------------------------------------------


def never(_records: list[TrialRecord]) -> float:
    return math.inf


def test_a_multi_objective_search_stops_weak_trials_at_the_rungs(tmp_path: Path) -> None:
    with session_for(plan_for(tmp_path, trials=7, objectives=("accuracy", "params"))) as s:
        driver = SearchDriver(s, never)
        records = driver.run()
        trials = {t.number: t for t in s.study.get_trials(deepcopy=False)}
        resumed = SearchDriver(s, never, records=records)  # a resume rebuilds the rungs from the records
        client = MlflowClient(s.tracker.uri)
    stopped = [r for r in records if r.outcome == Outcome.PRUNED]
    assert stopped, [r.reason for r in records]
    for r in stopped:
        assert len(r.history) == 1 and r.reason.startswith("stopped at epoch 1/3 by multi-objective ASHA: ")
        t = trials[r.number]
        assert t.state == TrialState.PRUNED and t.values is None and t.intermediate_values == {}  # no score told
        assert TrialAttrs.read(t).reason == r.reason
        assert client.get_run(r.run_id).data.tags["automl_cnn.reason"] == r.reason
    assert any(r.outcome == Outcome.COMPLETED for r in records)
    assert driver.halving is not None and resumed.halving is not None
    assert resumed.halving.recorded(1) == driver.halving.recorded(1)
    assert set(driver.halving.recorded(1)) == {r.number for r in records if r.history and r.duplicate_of is None}


def test_trials_nearly_done_for_the_budget_are_not_stopped(tmp_path: Path) -> None:
    """The same search twice: without a time budget MOASHA stops weak trials; with an hour's
    budget, where the rest of each tiny trial costs under 3% of it, the same trials complete."""
    settings: dict[str, Any] = {"trials": 7, "objectives": ("accuracy", "params")}
    with session_for(plan_for(tmp_path / "free", **settings)) as s:
        free = SearchDriver(s, never).run()
    with session_for(plan_for(tmp_path / "hour", time_budget=3600.0, **settings)) as s:
        hour = SearchDriver(s, never).run()
    stopped = [r for r in free if r.outcome == Outcome.PRUNED]
    assert stopped, [r.reason for r in free]
    first = stopped[0]
    again = next(r for r in hour if r.number == first.number)
    assert again.candidate.key() == first.candidate.key()  # the same proposal, now trained to the end
    assert again.outcome == Outcome.COMPLETED and len(again.history) == again.epochs
    assert all(r.outcome != Outcome.PRUNED for r in hour), [r.reason for r in hour]


def test_pruner_none_lets_every_multi_objective_trial_finish(tmp_path: Path) -> None:
    with session_for(plan_for(tmp_path, trials=4, objectives=("accuracy", "params"), pruner="none")) as s:
        driver = SearchDriver(s, never)
        records = driver.run()
    assert driver.halving is None
    assert all(r.outcome == Outcome.COMPLETED for r in records), [r.reason for r in records]


def test_a_resumed_multi_objective_search_rebuilds_its_rungs(tmp_path: Path) -> None:
    settings: dict[str, Any] = {"trials": 5, "objectives": ("accuracy", "params")}
    plan = plan_for(tmp_path, **settings)
    with pytest.raises(KeyboardInterrupt), session_for(plan, InterruptingExecutor(after_results=7)) as s:
        SearchDriver(s, never).run()  # trials 0 and 1 finish; trial 2 is left running at epoch 2
    state = RunState.load(plan.out)
    with session_for(plan_for(tmp_path, resume=state, **settings)) as s:
        records, resumable = recover(s)
        assert [r.number for r in records] == [0, 1] and [r.number for r, _t in resumable] == [2]
        assert len(state.load_checkpoint(2)[1]) >= 1  # type: ignore[index]  # it resumes past epoch 1
        driver = SearchDriver(s, never, records=records, resumable=resumable)
        assert driver.halving is not None and set(driver.halving.recorded(1)) == {0, 1}
        final = driver.run()
    assert sorted(r.number for r in final) == [0, 1, 2, 3, 4]
    trained = {r.number for r in final if r.history and r.duplicate_of is None}
    assert set(driver.halving.recorded(1)) == trained and 2 in trained  # trial 2's epoch 1 was replayed
