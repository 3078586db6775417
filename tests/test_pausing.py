"""The learned training length in the driver (``--epochs auto``): trials on ``wsd`` pause at the
ceiling, continue from their checkpoints when it grows, and complete when the search ends; real
training of small networks on the in-process executor."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from sessions import HERE, InterruptingExecutor, plan_for, session_for

from automl_cnn.engine.outcome import Outcome
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.runstate import RunState
from automl_cnn.engine.search.driver import SearchDriver
from automl_cnn.engine.search.pausing import STATE_KEY, length_line
from automl_cnn.engine.search.recovery import recover
from automl_cnn.services.inprocess import InProcessExecutor

WSD = HERE / "spaces" / "wsd.yaml"
SETTINGS: dict[str, Any] = {"pruner": "none"}  # every trial reaches the ceiling


def never(_records: list[TrialRecord]) -> float:
    return math.inf


def _epochs(rec: TrialRecord) -> list[int]:
    return [e.epoch for e in rec.history]


def test_a_trial_at_the_ceiling_is_paused_then_completed_when_the_search_ends(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, WSD, trials=1, **SETTINGS)
    with session_for(plan) as s:
        (rec,) = SearchDriver(s, never).run()
        state = s.study.get_trials(deepcopy=False)[0].state
        probs, saved = s.state.load_val_probs(0), s.state.extra[STATE_KEY]
    # alone at the ceiling of 3 (of its 9 epochs): nothing to compare, so it never grew
    assert rec.outcome == Outcome.COMPLETED and _epochs(rec) == [1, 2, 3], rec.reason
    assert rec.epochs == 9 and "trained 3 of its 9 epochs: the learned ceiling" in rec.reason
    assert state == TrialState.COMPLETE and probs is not None and len(probs) == len(s.bundle.val_idx)
    assert saved == {
        "mode": "learned", "ceiling": 3, "cap": 9, "decisions": [], "paused_at": {rec.job: 3},
        "extendable": [{"trial": 0, "epochs": 3, "val": rec.val_acc}],  # kept for resume --more (test_extension.py)
    }  # fmt: skip
    assert MlflowClient(plan.config.resolved_tracking_uri()).get_run(rec.run_id).info.status == "FINISHED"
    assert "learned, 3 epochs, where it started" in length_line(s.state.extra, 9)


def test_the_ceiling_grows_and_paused_trials_continue_from_their_checkpoints(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, WSD, trials=2, **SETTINGS)
    with session_for(plan) as s:
        records = SearchDriver(s, never).run()
        saved = s.state.extra[STATE_KEY]
        kept = [s.state.load_val_probs(r.number) is not None for r in records]
    # both paused at 3; the leader still rose from epoch 1 beyond noise: the ceiling grew to 9
    (decision,) = saved["decisions"]
    assert (decision["previous"], decision["ceiling"], saved["ceiling"]) == (3, 9, 9), saved
    assert [r.outcome for r in records] == [Outcome.COMPLETED] * 2, [r.reason for r in records]
    # continued, not restarted: one run of epochs 1..9 each (a restart would count from 1 again)
    assert [_epochs(r) for r in records] == [list(range(1, 10))] * 2
    assert all(kept)
    line = length_line(s.state.extra, 9)
    assert line.startswith("learned, 9 epochs: ") and "trials at epoch 3" in line, line


def test_a_trial_the_ceiling_grew_under_while_it_trained_goes_on_to_the_new_one(tmp_path: Path) -> None:
    # two workers: trial 0 pauses first and trial 2 takes its slot, to the ceiling of 3; then
    # trial 1 reaches 3 and the ceiling grows to 9 while trial 2 trains
    plan = plan_for(tmp_path, WSD, trials=3, workers=2, **SETTINGS)
    with session_for(plan, InProcessExecutor(2)) as s:
        records = SearchDriver(s, never).run()
        saved = s.state.extra[STATE_KEY]
    assert saved["ceiling"] == 9 and [r.outcome for r in records] == [Outcome.COMPLETED] * 3
    assert [_epochs(r) for r in records] == [list(range(1, 10))] * 3, [r.reason for r in records]


def test_a_trial_extended_when_the_time_budget_ends_is_scored_where_it_paused(tmp_path: Path) -> None:
    def at_epoch_5(records: list[TrialRecord]) -> float:  # the time budget ends at any trial's epoch 5
        return 0.0 if any(len(r.history) >= 5 for r in records) else math.inf

    plan = plan_for(tmp_path, WSD, trials=2, **SETTINGS)
    with session_for(plan) as s:
        records = SearchDriver(s, at_epoch_5).run()
        saved = s.state.extra[STATE_KEY]
        kept = [s.state.load_val_probs(r.number) is not None for r in records]
    assert saved["ceiling"] == 9 and [r.outcome for r in records] == [Outcome.COMPLETED] * 2
    assert [_epochs(r) for r in records] == [[1, 2, 3]] * 2 and all(kept)
    extended, waiting = records
    assert "time budget reached at epoch 5 while extended; scored where it was paused, at epoch 3" in extended.reason
    assert "trained 3 of its 9 epochs: the learned ceiling" in waiting.reason


def test_with_max_epochs_the_ceiling_may_grow_past_the_spaces_epochs(tmp_path: Path) -> None:
    space = tmp_path / "wsd3.yaml"
    space.write_text(WSD.read_text().replace("epochs: 9", "epochs: 3"))
    with session_for(plan_for(tmp_path, space, trials=2, max_epochs=9, **SETTINGS)) as s:
        records = SearchDriver(s, never).run()
        saved = s.state.extra[STATE_KEY]
    assert (saved["cap"], saved["ceiling"]) == (9, 9) and [r.epochs for r in records] == [3, 3]  # as sampled
    assert [r.outcome for r in records] == [Outcome.COMPLETED] * 2
    assert [_epochs(r) for r in records] == [list(range(1, 10))] * 2


def test_epochs_fixed_trains_every_trial_its_own_epochs(tmp_path: Path) -> None:
    with session_for(plan_for(tmp_path, WSD, trials=1, epochs="fixed", **SETTINGS)) as s:
        (rec,) = SearchDriver(s, never).run()
        extra = s.state.extra
    assert rec.outcome == Outcome.COMPLETED and _epochs(rec) == list(range(1, 10)) and rec.reason == ""
    assert extra[STATE_KEY] == {"mode": "fixed", "why": "--epochs fixed"}
    assert length_line(extra, 9) == "fixed, 9 epochs: --epochs fixed"


def test_a_space_that_cannot_sample_wsd_searches_as_before(tmp_path: Path) -> None:
    with session_for(plan_for(tmp_path, trials=1, **SETTINGS)) as s:  # tiny: constant, 3 epochs
        (rec,) = SearchDriver(s, never).run()
        line = length_line(s.state.extra, rec.epochs)
    assert _epochs(rec) == [1, 2, 3] and rec.reason == ""
    assert (
        line == "fixed, 3 epochs: the space's schedules (constant) are not learned; lr_schedule: wsd lets "
        "the search learn it"
    )


def test_a_resume_restores_the_ceiling_and_pauses_again_a_trial_found_at_it(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, WSD, trials=2, **SETTINGS)
    # trial 0 trains epochs 1-3 and pauses; trial 1's first epoch comes back, then Ctrl-C
    with pytest.raises(KeyboardInterrupt), session_for(plan, InterruptingExecutor(after_results=4)) as s:
        SearchDriver(s, never).run()
    state = RunState.load(plan.out)
    assert state.extra[STATE_KEY]["ceiling"] == 3
    client = MlflowClient(plan.config.resolved_tracking_uri())
    with session_for(plan_for(tmp_path, WSD, resume=state, trials=2, **SETTINGS)) as s:
        records, resumable = recover(s)
        assert records == [] and [r.number for r, _t in resumable] == [0, 1]  # both RUNNING in the study
        assert client.get_run(resumable[0][0].record.run_id).info.status == "KILLED"
        driver = SearchDriver(s, never, records=records, resumable=resumable)
        final = driver.run()
        saved = s.state.extra[STATE_KEY]
    assert saved["ceiling"] == 9 and len(saved["decisions"]) == 1
    assert [r.outcome for r in final] == [Outcome.COMPLETED] * 2, [r.reason for r in final]
    assert [_epochs(r) for r in final] == [list(range(1, 10))] * 2  # each from its checkpoint


def test_the_summary_says_which_training_length_the_search_settled_on(tmp_path: Path) -> None:
    from stores import mlflow_store

    from automl_cnn import search

    r = search(
        "digits", WSD, trials=2, warm_start="none", executor="inprocess", time_budget="5m", seed=0,
        progress=False, out=tmp_path / "out", tracking_uri=mlflow_store(tmp_path / "m.db"), **SETTINGS,
    )  # fmt: skip
    [line] = [line for line in r.summary().splitlines() if line.startswith("training length")]
    assert line.startswith("training length     learned, 9 epochs: "), line
    assert {t.outcome for t in r.trials} == {Outcome.COMPLETED} and all(len(t.history) == 9 for t in r.trials)
    record = json.loads((r.out_dir / "search.json").read_text())
    assert record["training_length"] == r.training_length == line.removeprefix("training length     ")
    assert "| training length | learned, 9 epochs |" in (r.out_dir / "report.md").read_text()


def test_a_resume_scores_a_trial_it_was_extending_where_that_trial_paused(tmp_path: Path) -> None:
    def at_epoch_7(records: list[TrialRecord]) -> float:  # the time budget ends at any trial's epoch 7
        return 0.0 if any(len(r.history) >= 7 for r in records) else math.inf

    plan = plan_for(tmp_path, WSD, trials=2, **SETTINGS)
    # both pause at 3, the ceiling grows to 9, trial 0 continues to epoch 5; then Ctrl-C
    with pytest.raises(KeyboardInterrupt), session_for(plan, InterruptingExecutor(after_results=8)) as s:
        SearchDriver(s, never).run()
    state = RunState.load(plan.out)
    assert state.extra[STATE_KEY]["ceiling"] == 9 and set(state.extra[STATE_KEY]["paused_at"].values()) == {3}
    with session_for(plan_for(tmp_path, WSD, resume=state, trials=2, **SETTINGS), InProcessExecutor(2)) as s:
        records, resumable = recover(s)
        assert [len(s.state.load_checkpoint(r.number)[1]) for r, _t in resumable] == [5, 3]  # type: ignore[index]
        final = SearchDriver(s, at_epoch_7, records=records, resumable=resumable).run()
        kept = [s.state.load_val_probs(r.number) is not None for r in final]
    assert [r.outcome for r in final] == [Outcome.COMPLETED] * 2 and all(kept)
    assert [_epochs(r) for r in final] == [[1, 2, 3]] * 2, [r.reason for r in final]
    assert all("while extended; scored where it was paused, at epoch 3" in r.reason for r in final)


def test_the_live_panel_counts_a_learned_trials_epochs_to_the_ceiling(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, WSD, trials=1, **SETTINGS)
    shown: list[str] = []
    with session_for(plan) as s:
        show = s.progress.trial_running
        s.progress.trial_running = lambda job, text: (shown.append(text), show(job, text))[1]  # type: ignore[method-assign]
        SearchDriver(s, never).run()
    epochs = [t.split("  ")[0] for t in shown if t.startswith("epoch ")]
    # the ceiling of 3, not the 9 epochs the trial sampled
    assert epochs == ["epoch 1/3 (the learned ceiling)", "epoch 2/3 (the learned ceiling)"], shown
