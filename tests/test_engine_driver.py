"""The driver on the in-process executor: each outcome reaches the study, MLflow and the run
folder as the table in ``automl_cnn.engine.outcome`` says; pruning, repeats, a lost worker and
the budget stop."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient
from optuna.storages.journal._storage import JournalOperation
from optuna.trial import TrialState
from sessions import FAILURES, SINGLE, plan_for, session_for

from automl_cnn.engine.outcome import ATTRS_KEY, Outcome, TrialAttrs
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.runstate import RunState
from automl_cnn.engine.search.driver import SearchDriver
from automl_cnn.engine.search.recovery import recover
from automl_cnn.services.inprocess import InProcessExecutor
from automl_cnn.services.study import STUDY_FILE
from automl_cnn.space.sampling import sample_candidate
from automl_cnn.training.messages import JobResult

IMPOSSIBLE = {"blocks": 4, **{f"block{i}.pooling": "max" for i in range(1, 5)}, "train.learning_rate": 0.05}
DIVERGENT = {"blocks": 1, "block1.pooling": "none", "train.learning_rate": 10.0}
GOOD = {"blocks": 1, "block1.pooling": "max", "train.learning_rate": 0.05}


def never(_records: list[TrialRecord]) -> float:
    return math.inf


def _states(study: optuna.Study) -> dict[int, TrialState]:
    return {t.number: t.state for t in study.get_trials(deepcopy=False)}


def test_each_outcome_reaches_the_study_mlflow_and_the_run_folder(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, FAILURES, trials=3, pruner="none", enqueue=(IMPOSSIBLE, DIVERGENT, GOOD))
    with session_for(plan) as s:
        records = SearchDriver(s, never).run()
        states = _states(s.study)
        attrs = {t.number: TrialAttrs.read(t) for t in s.study.trials}
        folder = {r.number: r for r in s.state.finished_records()}
    by = {r.number: r for r in records}
    assert [by[n].outcome for n in range(3)] == [Outcome.FAILED, Outcome.FAILED, Outcome.COMPLETED]
    assert states == {0: TrialState.FAIL, 1: TrialState.FAIL, 2: TrialState.COMPLETE}
    assert by[0].history == () and "below 1x1" in by[0].reason  # refused before training
    assert "NaN/inf loss" in by[1].reason
    assert len(by[2].history) == 2 and by[2].val_acc is not None and by[2].val_acc > 0.3
    assert attrs[2].outcome == "completed" and attrs[1].reason == by[1].reason
    assert attrs[2].get_candidate() == by[2].candidate and attrs[2].params == by[2].profile.params  # type: ignore[union-attr]
    assert {n: r.outcome for n, r in folder.items()} == {n: r.outcome for n, r in by.items()}
    client = MlflowClient(plan.config.resolved_tracking_uri())
    for rec in records:
        run = client.get_run(rec.run_id)
        assert run.info.status == Outcome(rec.outcome).run_status
        assert run.data.tags["automl_cnn.outcome"] == rec.outcome
        assert run.data.tags["mlflow.parentRunId"] == s.parent_run


def test_limits_refuse_before_training_and_tell_the_sampler_a_constraint(tmp_path: Path) -> None:
    with session_for(plan_for(tmp_path, trials=2, max_params=10)) as s:
        records = SearchDriver(s, never).run()
        trials = s.study.get_trials(deepcopy=False)
    assert all(r.outcome == Outcome.FAILED and r.history == () for r in records)
    assert all("exceed --max-params 10" in r.reason for r in records)
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.PRUNED]  # infeasible, not broken
    assert all(t.constraints["max_params"] > 0 for t in trials)


def test_the_pruner_stops_trials_as_pruned_with_their_partial_scores(tmp_path: Path) -> None:
    pruner = optuna.pruners.ThresholdPruner(lower=1.01)  # no accuracy reaches it: every trial stops
    with session_for(plan_for(tmp_path, trials=2), pruner=pruner) as s:
        records = SearchDriver(s, never).run()
        trials = s.study.get_trials(deepcopy=False)
    assert [r.outcome for r in records] == [Outcome.PRUNED, Outcome.PRUNED], [r.reason for r in records]
    assert all(len(r.history) == 1 and "stopped early at epoch 1/3" in r.reason for r in records)
    assert [t.state for t in trials] == [TrialState.PRUNED] * 2
    assert [t.intermediate_values for t in trials] == [{1: r.val_acc} for r in records]


def test_presets_are_never_pruned(tmp_path: Path) -> None:
    pruner = optuna.pruners.ThresholdPruner(lower=1.01)
    with session_for(plan_for(tmp_path, trials=1, warm_start="lenet5"), pruner=pruner) as s:
        records = SearchDriver(s, never).run()
    assert records[0].preset == "lenet5" and records[0].outcome == Outcome.COMPLETED


def test_a_repeated_candidate_reuses_the_result_without_training(tmp_path: Path) -> None:
    executor = CountingExecutor()
    with session_for(plan_for(tmp_path, SINGLE, trials=2), executor) as s:
        records = SearchDriver(s, never).run()
        trials = s.study.get_trials(deepcopy=False)
    first, repeat = records
    assert executor.started == ["trial-0"]  # the repeat never reached a worker
    assert repeat.duplicate_of == 0 and "a repeat of trial 0" in repeat.reason
    assert repeat.outcome == first.outcome == Outcome.COMPLETED and repeat.val_acc == first.val_acc
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2 and trials[0].values == trials[1].values


def test_a_lost_worker_is_retried_from_its_last_checkpoint(tmp_path: Path) -> None:
    executor = LosingExecutor(lose_after_epoch=1)
    with session_for(plan_for(tmp_path, FAILURES, trials=1, pruner="none", enqueue=(GOOD,)), executor) as s:
        records = SearchDriver(s, never).run()
        run = MlflowClient(s.tracker.uri).get_run(records[0].run_id)
    rec = records[0]
    assert executor.lost == ["trial-0"]
    assert rec.outcome == Outcome.COMPLETED and rec.retries == 1
    assert [e.epoch for e in rec.history] == [1, 2]  # epoch 2 came from the retry, epoch 1 was kept
    assert executor.resumed_from_checkpoint == ["trial-0"]
    assert run.data.tags["automl_cnn.retries"] == "1"


def test_a_worker_lost_too_often_fails_only_its_trial(tmp_path: Path) -> None:
    executor = DyingExecutor()
    plan = plan_for(tmp_path, FAILURES, trials=1, pruner="none", enqueue=(GOOD,))
    with session_for(plan, executor) as s:
        records = SearchDriver(s, never, max_retries=2).run()
    assert records[0].outcome == Outcome.FAILED and records[0].retries == 2
    assert "worker process died" in records[0].reason


def test_the_budget_stop_prunes_running_trials_and_asks_no_more(tmp_path: Path) -> None:
    def deadline(records: list[TrialRecord]) -> float:
        return math.inf if not records else 0.0  # the budget runs out once a trial started

    with session_for(plan_for(tmp_path, trials=5)) as s:
        records = SearchDriver(s, deadline).run()
        trials = s.study.get_trials(deepcopy=False)
    assert len(records) == 1 and records[0].outcome == Outcome.PRUNED
    assert records[0].reason == "time budget reached at epoch 0"
    assert [t.state for t in trials] == [TrialState.PRUNED]


def test_the_trial_limit_counts_trials_asked(tmp_path: Path) -> None:
    with session_for(plan_for(tmp_path, trials=3, workers=2)) as s:
        records = SearchDriver(s, never).run()
    assert sorted(r.number for r in records) == [0, 1, 2]
    assert all(Outcome(r.outcome).finished for r in records)
    assert len(s.study.trials) == 3


class CountingExecutor(InProcessExecutor):
    def __init__(self) -> None:
        super().__init__(1)
        self.started: list[str] = []

    def submit(self, spec):  # type: ignore[no-untyped-def]
        self.started.append(spec.job)
        super().submit(spec)


class DyingExecutor(InProcessExecutor):
    """Every job's worker dies as soon as the job starts."""

    def submit(self, spec):  # type: ignore[no-untyped-def]
        super().submit(spec)
        self.lose_worker(spec.job)


class LosingExecutor(InProcessExecutor):
    """Loses the worker of a job once, while it runs the epoch after ``lose_after_epoch``."""

    def __init__(self, lose_after_epoch: int) -> None:
        super().__init__(1)
        self.after, self.times = lose_after_epoch, 1
        self.lost: list[str] = []
        self.resumed_from_checkpoint: list[str] = []

    def submit(self, spec):  # type: ignore[no-untyped-def]
        if spec.checkpoint is not None:
            self.resumed_from_checkpoint.append(spec.job)
        super().submit(spec)

    def wait(self, timeout: float) -> list[JobResult]:
        results = super().wait(timeout)
        for r in results:
            if r.epoch is not None and r.epoch.epoch == self.after and len(self.lost) < self.times and r.job:
                self.lost.append(r.job)
                self._pending_loss = r.job
        return results

    def advance(
        self, job: str, want_checkpoint: bool = False, fraction: float = 1.0, threads: int | None = None
    ) -> None:
        super().advance(job, want_checkpoint, fraction, threads)
        if getattr(self, "_pending_loss", None) == job:
            self._pending_loss = None
            self.lose_worker(job)


def test_a_trial_asked_but_never_sampled_counts_against_the_trial_limit(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, trials=2, pruner="none")
    with session_for(plan) as s:
        s.study.ask()  # the driver died right after asking: no candidate, so no trial record
    with session_for(plan_for(tmp_path, trials=2, pruner="none", resume=RunState.load(plan.out))) as s:
        records, resumable = recover(s)
        final = SearchDriver(s, never, records=records, resumable=resumable).run()
        states = _states(s.study)
    assert records == [] and [r.number for r in final] == [1]  # one more: two trials were asked
    assert states[0] == TrialState.FAIL and Outcome(final[0].outcome).finished
    assert all(r.candidate.key() for r in final)  # every record has its candidate


def _attr_writes(journal: Path) -> dict[int, int]:
    """Per trial id, the user-attribute writes in a study's journal."""
    writes: dict[int, int] = {}
    for line in journal.read_text().splitlines():
        op = json.loads(line)
        if op["op_code"] == JournalOperation.SET_TRIAL_USER_ATTR:
            writes[op["trial_id"]] = writes.get(op["trial_id"], 0) + 1
    return writes


def test_a_trial_records_its_attributes_in_one_attribute_and_few_writes(tmp_path: Path) -> None:
    """Each storage write is a round trip on PostgreSQL and an fsync on the journal: a trial
    writes its attributes at launch, when it starts and when it ends (a refused one twice)."""
    plan = plan_for(tmp_path, FAILURES, trials=3, pruner="none", enqueue=(IMPOSSIBLE, DIVERGENT, GOOD))
    with session_for(plan) as s:
        records = SearchDriver(s, never).run()
        trials = s.study.get_trials(deepcopy=False)
    assert {key for t in trials for key in t.user_attrs} == {ATTRS_KEY}
    writes = _attr_writes(plan.out / STUDY_FILE)
    assert [writes[t._trial_id] for t in trials] == [2, 3, 3]  # refused by the gate, diverged, completed
    for t, rec in zip(trials, sorted(records, key=lambda r: r.number), strict=True):
        attrs = TrialAttrs.read(t)
        assert (attrs.mlflow_run_id, attrs.seed, attrs.outcome) == (rec.run_id, rec.seed, rec.outcome)
        assert attrs.get_candidate() == rec.candidate and (attrs.reason or "") == rec.reason


def test_a_study_the_older_writer_kept_one_attribute_per_field_recovers(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, trials=3, pruner="none")
    with session_for(plan) as s:
        run_ids = []
        for number in range(2):
            trial = s.study.ask()
            candidate = sample_candidate(trial, s.space)
            run_ids.append(s.tracker.start_run(f"trial-{number}", {}, {"automl_cnn.trial": str(number)}, s.parent_run))
            old = {"seed": 7 + number, "mlflow_run_id": run_ids[-1], "candidate": candidate.to_json()}
            old |= {"candidate_key": candidate.key(), "params": 1234, "flops": 5678, "latency_ms": 0.5}
            for key, value in old.items():  # as the older writer stored them
                trial.set_user_attr(key, value)
            if number == 0:
                trial.set_user_attr("outcome", "completed")
                trial.report(0.75, 1)
                s.study.tell(trial, 0.75)
        (old_attrs,) = [TrialAttrs.read(t) for t in s.study.trials if t.number == 0]
    assert (old_attrs.seed, old_attrs.params, old_attrs.flops, old_attrs.outcome) == (7, 1234, 5678, "completed")
    with session_for(plan_for(tmp_path, trials=3, pruner="none", resume=RunState.load(plan.out))) as s:
        records, resumable = recover(s)
    assert [(r.number, r.seed, r.run_id, r.outcome) for r in records] == [(0, 7, run_ids[0], Outcome.COMPLETED)]
    assert [(run.number, run.record.seed, run.record.run_id) for run, _trial in resumable] == [(1, 8, run_ids[1])]
    assert resumable[0][0].record.latency_ms == 0.5
