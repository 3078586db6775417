"""The final fit, delivery and recovery on the in-process executor."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from sessions import FAILURES, InterruptingExecutor, plan_for, session_for
from test_engine_driver import DIVERGENT, GOOD, DyingExecutor, LosingExecutor

from automl_cnn.deliver.deliver import deliver
from automl_cnn.deliver.loading import load_model
from automl_cnn.engine.final.fits import final_fit, pick_winner
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.runstate import RunState
from automl_cnn.engine.search.driver import SearchDriver
from automl_cnn.engine.search.recovery import never_started, recover
from automl_cnn.engine.session import SearchSession
from automl_cnn.errors import AutoMLError
from automl_cnn.services.inprocess import InProcessExecutor
from automl_cnn.training.messages import JobSpec


def _final_runs(s: SearchSession) -> list[Run]:
    """This search's final-fit runs (the store is shared by the unit tests)."""
    query = f"tags.`automl_cnn.final_fit` = 'true' and tags.`mlflow.parentRunId` = '{s.parent_run}'"
    return list(MlflowClient(s.tracker.uri).search_runs([s.tracker.experiment_id], query))


def never(_records: list[TrialRecord]) -> float:
    return math.inf


def test_final_fit_trains_on_train_and_val_and_closes_its_runs(tmp_path: Path) -> None:
    with session_for(plan_for(tmp_path, FAILURES, trials=1, pruner="none", enqueue=(GOOD,))) as s:
        records = SearchDriver(s, never).run()
        winner = pick_winner(records)
        fits = final_fit(s, [(winner, 11), (winner, 12)])
        runs = _final_runs(s)
    assert [(f.trial, f.seed) for f in fits] == [(0, 11), (0, 12)]
    assert all(len(f.history) == winner.epochs for f in fits)
    assert not any(np.array_equal(fits[0].weights[k], fits[1].weights[k]) for k in fits[0].weights if "weight" in k)
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]


def test_final_fits_stop_when_the_time_budget_is_spent(tmp_path: Path) -> None:
    """Under load the fits can run past the time planned for them: once the whole budget is
    spent (or would be before the next epoch ends) a fit still training stops after its epoch
    and hands in its weights, a further seed of a trial already fitted is not started, and the
    verdict says the fit was stopped."""
    with session_for(plan_for(tmp_path, FAILURES, trials=1, pruner="none", enqueue=(GOOD,))) as s:
        winner = SearchDriver(s, never).run()[0]
        s.budget.seconds = s.budget.elapsed()  # the whole budget is spent now
        fits = final_fit(s, [(winner, 5), (winner, 6)], epochs={winner.number: 20})
        [run] = _final_runs(s)
    assert [(f.trial, f.seed, len(f.history)) for f in fits] == [(winner.number, 5, 1)]
    assert fits[0].outputs is not None and fits[0].weights
    assert run.data.tags["automl_cnn.stopped_at_epoch"] == "1" and run.info.status == "FINISHED"


@pytest.mark.parametrize("stretched", [True, False])
def test_a_stretched_final_fit_leaves_the_export_reserve_and_a_fit_at_its_trials_epochs_does_not(
    tmp_path: Path, stretched: bool
) -> None:
    """With only the export reserve left, a fit planned longer than its trial (spare time
    stretched it) stops after one epoch so that the run ends inside its budget; a fit at its
    trial's own epochs trains them all (it may run into the reserve, never past the budget)."""
    with session_for(plan_for(tmp_path, FAILURES, trials=1, pruner="none", enqueue=(GOOD,))) as s:
        winner = SearchDriver(s, never).run()[0]
        assert winner.epochs >= 2
        s.budget.seconds = s.budget.elapsed() + s.budget.export_reserve  # the reserve is all that is left
        epochs = {winner.number: winner.epochs * 2} if stretched else None
        [fit] = final_fit(s, [(winner, 5)], epochs=epochs)
        [run] = _final_runs(s)
    assert len(fit.history) == (1 if stretched else winner.epochs)
    assert run.data.tags.get("automl_cnn.stopped_at_epoch") == ("1" if stretched else None)


class ThreadsExecutor(InProcessExecutor):
    """Two workers of one thread each (a search of two CPUs), recording the threads each job asks for."""

    def __init__(self) -> None:
        super().__init__(2, threads=1)
        self.asked: list[tuple[str, int | None]] = []

    def submit(self, spec: JobSpec) -> None:
        self.asked.append((spec.job, spec.threads))
        super().submit(spec)

    def advance(
        self, job: str, want_checkpoint: bool = False, fraction: float = 1.0, threads: int | None = None
    ) -> None:
        self.asked.append((job, threads))
        super().advance(job, want_checkpoint, fraction, threads)


def test_final_fits_take_the_cores_the_search_leaves_idle(tmp_path: Path) -> None:
    """A lone final fit asks for every CPU of the search; of two fits on two workers, the one
    left running alone takes the cores of the one that finished."""
    with session_for(plan_for(tmp_path, FAILURES, trials=1, pruner="none", enqueue=(GOOD,))) as s:
        winner = SearchDriver(s, never).run()[0]
    other = dataclasses.replace(winner, number=1)
    executor = ThreadsExecutor()
    with session_for(plan_for(tmp_path / "b", FAILURES, trials=1, pruner="none"), executor) as s:
        assert s.executor.threads_for(1) == 2  # the search's CPUs: two workers of one thread
        final_fit(s, [(winner, 5)])
        assert executor.asked == [("final-0", 2), ("final-0", 2)]  # started and advanced on both cores
    executor = ThreadsExecutor()
    with session_for(plan_for(tmp_path / "c", FAILURES, trials=1, pruner="none"), executor) as s:
        fits = final_fit(s, [(winner, 5), (other, 6)], epochs={0: 1, 1: 3})
    assert [len(f.history) for f in fits] == [1, 3]
    assert executor.asked[:2] == [("final-0", 1), ("final-1", 1)]  # two fits: one core each
    alone = [threads for job, threads in executor.asked[2:] if job == "final-1"]
    assert alone[0] == 1 and alone[-1] == 2  # once final-0 is done, final-1 trains on both cores


def test_a_final_fit_that_fails_stops_with_one_line_and_closes_its_run(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, FAILURES, trials=1, pruner="none", enqueue=(GOOD,))
    with session_for(plan) as s:
        records = SearchDriver(s, never).run()
        winner = records[0]
        diverging = TrialRecord(number=winner.number, seed=1, run_id="", candidate=_with_lr(winner, 10.0))
        with pytest.raises(AutoMLError, match=r"the final fit of trial 0 \(seed 5\) failed: NaN/inf loss"):
            final_fit(s, [(diverging, 5)])
        runs = _final_runs(s)
        assert s.executor.jobs == []
    assert [r.info.status for r in runs] == ["FAILED"]
    assert "NaN/inf loss" in runs[0].data.tags["automl_cnn.reason"]


def test_a_final_fit_whose_worker_dies_continues_from_its_checkpoint(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, FAILURES, trials=1, pruner="none", enqueue=(GOOD,))
    with session_for(plan) as s:
        winner = SearchDriver(s, never).run()[0]
    executor = LosingExecutor(lose_after_epoch=1)
    with session_for(plan_for(tmp_path / "b", FAILURES, trials=1, pruner="none"), executor) as s:
        fits = final_fit(s, [(winner, 5)])
        runs = _final_runs(s)
    assert executor.lost == ["final-0"] and executor.resumed_from_checkpoint == ["final-0"]
    assert [e.epoch for e in fits[0].history] == [1, 2]
    assert runs[0].info.status == "FINISHED" and runs[0].data.tags["automl_cnn.retries"] == "1"


def test_a_final_fit_lost_after_its_last_epoch_reruns_that_epoch_for_its_weights(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, FAILURES, trials=1, pruner="none", enqueue=(GOOD,))
    with session_for(plan) as s:
        winner = SearchDriver(s, never).run()[0]
        executor = LosingWeightsExecutor()
    with session_for(plan_for(tmp_path / "b", FAILURES, trials=1, pruner="none"), executor) as s:
        fits = final_fit(s, [(winner, 5)])
    assert executor.lost == 1 and [e.epoch for e in fits[0].history] == [1, 2] and fits[0].weights


def test_a_final_fit_whose_worker_keeps_dying_fails_in_one_line(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, FAILURES, trials=1, pruner="none", enqueue=(GOOD,))
    with session_for(plan) as s:
        winner = SearchDriver(s, never).run()[0]
    later = plan_for(tmp_path / "b", FAILURES, trials=1, pruner="none")
    with session_for(later, DyingExecutor()) as s, pytest.raises(AutoMLError, match="worker process died"):
        final_fit(s, [(winner, 5)])


def test_delivery_writes_the_folder_and_registers_a_model_that_predicts(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, FAILURES, trials=2, pruner="none", enqueue=(GOOD, DIVERGENT))
    with session_for(plan) as s:
        records = SearchDriver(s, never).run()
        winner = pick_winner(records)
        result = deliver(s, records, winner, final_fit(s, [(winner, 7)]))
    out = plan.out
    for name in ("model.safetensors", "model.json", "model.torchscript.pt", "report.md", "report.html", "trials.csv"):
        assert (out / name).is_file(), name
    assert (out / "plots" / "confusion_matrix.png").is_file()
    assert result.best_trial == 0 and result.counts == {"completed": 1, "pruned": 0, "failed": 1}
    x, y = plan.bundle.test_split()
    accuracy = float((result.model.predict(x) == y).mean())
    assert accuracy == pytest.approx(result.test_accuracy) and accuracy > 0.5
    served = load_model(result.model_uri, plan.config.resolved_tracking_uri())
    assert np.array_equal(served.predict(x), result.model.predict(x))
    run = MlflowClient(plan.config.resolved_tracking_uri()).get_run(result.parent_run_id)
    assert run.data.metrics["test_accuracy"] == pytest.approx(result.test_accuracy)
    assert run.data.tags["automl_cnn.best_trial"] == "0"
    assert "trial 1" not in (out / "trials.csv").read_text().splitlines()[0]  # a header, then rows
    assert len((out / "trials.csv").read_text().splitlines()) == 3


def test_recovery_keeps_finished_trials_and_continues_a_running_one_from_its_checkpoint(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, trials=3, pruner="none")
    interrupted = InterruptingExecutor(after_results=5)
    with pytest.raises(KeyboardInterrupt), session_for(plan, interrupted) as s:
        SearchDriver(s, never).run()
    state = RunState.load(plan.out)
    done_before = {r.number: r for r in state.finished_records()}
    assert done_before and len(done_before) < 3
    with session_for(plan_for(tmp_path, trials=3, pruner="none", resume=state)) as s:
        assert s.resumed
        records, resumable = recover(s)
        assert [r.number for r in records] == sorted(done_before)
        assert len(resumable) == 1
        running, _trial = resumable[0]
        saved_epochs = len(state.load_checkpoint(running.number)[1])  # type: ignore[index]
        assert saved_epochs >= 1
        final = SearchDriver(s, never, records=records, resumable=resumable).run()
        states = {t.number: t.state for t in s.study.get_trials(deepcopy=False)}
    assert sorted(r.number for r in final) == [0, 1, 2]
    assert all(state == TrialState.COMPLETE for state in states.values())
    resumed = next(r for r in final if r.number == running.number)
    assert [e.epoch for e in resumed.history] == [1, 2, 3]  # continued, not restarted


def test_recovery_closes_a_trial_asked_for_but_never_started(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, trials=1, pruner="none")
    with session_for(plan) as s:
        s.study.ask()  # the driver died right after asking
    with session_for(plan_for(tmp_path, trials=1, resume=RunState.load(plan.out))) as s:
        records, resumable = recover(s)
        state = s.study.trials[0].state
    assert resumable == [] and records == []  # never sampled: no trial, but it counts against --trials
    assert state == TrialState.FAIL and never_started(s.study) == 1


def test_recovery_closes_a_trial_run_opened_but_never_recorded_in_the_study(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, trials=1, pruner="none")
    with session_for(plan) as s:
        s.study.ask()  # the driver died after opening the trial's MLflow run, before the study knew it
        orphan = s.tracker.start_run("trial-0", {}, {"automl_cnn.trial": "0"}, parent=s.parent_run)
    with session_for(plan_for(tmp_path, trials=1, resume=RunState.load(plan.out))) as s:
        records, resumable = recover(s)
        run = s.tracker.client.get_run(orphan)
    assert resumable == [] and records == []
    assert run.info.status == "FAILED" and run.data.tags["automl_cnn.reason"] == "interrupted before it started"


def _with_lr(rec: TrialRecord, lr: float):  # type: ignore[no-untyped-def]
    import dataclasses

    assert rec.candidate is not None
    training = dataclasses.replace(rec.candidate.training, learning_rate=lr)
    return dataclasses.replace(rec.candidate, training=training)


class LosingWeightsExecutor(InProcessExecutor):
    """The worker dies once while it hands over the trained weights."""

    def __init__(self) -> None:
        super().__init__(1)
        self.lost = 0

    def request_weights(self, job: str) -> None:
        super().request_weights(job)
        if not self.lost:
            self.lost += 1
            self.lose_worker(job)
