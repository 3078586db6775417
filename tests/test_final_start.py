"""``--final-start continue``: a final fit that starts from its trial's kept weights (weights
only, a fine-tuning recipe), its fallbacks to random weights, the verdict saying which, and a
resume in the middle of a continued fit; on the in-process executor with real training."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from mlflow.tracking import MlflowClient
from sessions import FAILURES, plan_for, session_for
from test_engine_driver import GOOD

from automl_cnn.data import load_images, split_data
from automl_cnn.engine.final.check import choose
from automl_cnn.engine.final.fits import final_fit
from automl_cnn.engine.final.start import CONTINUE_LR_SCALE, CONTINUE_SCHEDULE, continued
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.runstate import RunState
from automl_cnn.engine.search.driver import SearchDriver
from automl_cnn.engine.session import SearchSession
from automl_cnn.model.architecture import Architecture, Candidate, ConvBlock, Head, TrainConfig
from automl_cnn.services.inprocess import InProcessExecutor
from automl_cnn.training.messages import JobResult, JobSpec
from automl_cnn.training.schedules import lr_factor
from automl_cnn.training.worker import TrialWorker

ARCH = Architecture((ConvBlock(filters=8, batch_norm=False),), Head())  # no running statistics


def _never(_records: list[TrialRecord]) -> float:
    return float("inf")


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _frozen(rec: TrialRecord) -> TrialRecord:
    """``rec`` with a learning rate of 0: a fit of it keeps the weights it starts from."""
    assert rec.candidate is not None
    training = dataclasses.replace(rec.candidate.training, learning_rate=0.0)
    return dataclasses.replace(rec, candidate=dataclasses.replace(rec.candidate, training=training))


class Recording(InProcessExecutor):
    """Records each job submitted; with ``interrupt_after``, Ctrl-C once that many results were
    handed over (at the next wait: the driver has acted on them)."""

    def __init__(self, interrupt_after: int | None = None) -> None:
        super().__init__(1)
        self.specs: list[JobSpec] = []
        self.left = interrupt_after

    def submit(self, spec: JobSpec) -> None:
        self.specs.append(spec)
        super().submit(spec)

    def wait(self, timeout: float) -> list[JobResult]:
        if self.left is not None and self.left <= 0:
            raise KeyboardInterrupt
        results = super().wait(timeout)
        if self.left is not None:
            self.left -= len(results)
        return results


def _search(session: SearchSession) -> TrialRecord:
    [winner] = SearchDriver(session, _never).run()
    return winner


# -- the trainer and the job message ---------------------------------------------------------------
def test_a_job_starts_from_the_weights_it_is_given_and_the_message_crosses_a_process_boundary() -> None:
    digits = split_data(load_images("digits"), seed=0).search_data()
    trained = Candidate(ARCH, TrainConfig(epochs=2, learning_rate=3e-3))
    worker = TrialWorker(threads=1, device="cpu")
    worker.begin(JobSpec("trial", trained.to_dict(), 1, digits))
    last = worker.step()
    assert last.done and last.epoch is not None and last.epoch.val_acc > 0.5
    kept = worker.weights().weights
    assert kept is not None
    frozen = Candidate(ARCH, TrainConfig(epochs=1, learning_rate=0.0))
    spec = pickle.loads(pickle.dumps(JobSpec("fit", frozen.to_dict(), 9, digits, init_weights=kept)))
    assert spec.init_weights is not None and _same(spec.init_weights, kept)
    first = worker.begin(spec)  # another seed: a random init would differ, and score near chance
    assert first.epoch is not None and first.epoch.val_acc == pytest.approx(last.epoch.val_acc)
    assert worker.trainer is not None and _same(worker.trainer.cpu_state_dict(), kept)
    fresh = worker.begin(dataclasses.replace(spec, init_weights=None))
    assert fresh.epoch is not None and fresh.epoch.val_acc < 0.5
    with pytest.raises(RuntimeError, match="has not trained yet"):
        worker.trainer.start_from(kept)
    worker.release()


def test_the_continuing_recipe_is_a_tenth_of_the_rate_warmed_up_then_annealed() -> None:
    base = Candidate(ARCH, TrainConfig(epochs=4, learning_rate=0.05, lr_schedule="wsd"))
    recipe = continued(base).training
    assert recipe.learning_rate == pytest.approx(0.05 * CONTINUE_LR_SCALE) and recipe.lr_schedule == CONTINUE_SCHEDULE
    assert recipe.epochs == 4 and continued(base).architecture == base.architecture
    factor = lr_factor(CONTINUE_SCHEDULE, total_steps=40, steps_per_epoch=10)
    assert factor(0) == pytest.approx(0.2) and factor(4) == pytest.approx(1.0)  # half an epoch's warmup
    assert factor(20) < factor(10) < factor(5) and factor(39) < 0.01  # then a cosine to zero


# -- the final fits ----------------------------------------------------------------------------------
def test_continue_starts_the_first_seed_from_the_trials_weights_and_says_so(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, FAILURES, trials=1, pruner="none", enqueue=(GOOD,), final_start="continue")
    executor = Recording()
    with session_for(plan, executor) as s:
        winner = _search(s)
        kept = s.state.load_trial_weights(winner.number)
        assert kept is not None
        fits = final_fit(s, [(_frozen(winner), 5), (_frozen(winner), 6)])
        verdict = choose(s, fits[0]).own
        mine = f"tags.`mlflow.parentRunId` = '{s.parent_run}'"  # the unit tests share one store
        runs = {r.info.run_name: r for r in MlflowClient(s.tracker.uri).search_runs([s.tracker.experiment_id], mine)}
    first, second = fits
    assert _same(first.weights, kept)  # a learning rate of 0 from the trial's weights: they are kept
    assert not _same(second.weights, kept)  # a further seed: random weights
    assert first.start == "continued from trial 0's weights"
    assert second.start == "started from random weights (only the first seed continues from trial 0's weights)"
    assert verdict.reason.endswith("; the final fit continued from trial 0's weights")
    specs = {spec.job: spec for spec in executor.specs if spec.job.startswith("final")}
    assert specs["final-0"].init_weights is not None and specs["final-1"].init_weights is None
    assert specs["final-0"].candidate["training"]["lr_schedule"] == CONTINUE_SCHEDULE
    assert specs["final-1"].candidate["training"] == _frozen(winner).candidate.training.to_dict()  # type: ignore[union-attr]
    assert runs["final-0 (trial 0)"].data.tags["automl_cnn.continued_from_trial"] == "0"
    assert "automl_cnn.continued_from_trial" not in runs["final-1 (trial 0)"].data.tags


def test_continue_falls_back_to_random_weights_where_the_trials_were_not_kept(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, FAILURES, trials=1, pruner="none", enqueue=(GOOD,), final_start="continue")
    with session_for(plan) as s:
        winner = _search(s)
        kept = s.state.load_trial_weights(winner.number)
        assert kept is not None
        s.state.drop_trial_weights(winner.number)
        [fit] = final_fit(s, [(_frozen(winner), 5)])
        verdict = choose(s, fit).own
    assert not _same(fit.weights, kept)
    assert fit.start == "started from random weights (trial 0's weights were not kept)"
    assert verdict.reason == (
        "the trial's own weights were not kept; the final fit started from random weights "
        "(trial 0's weights were not kept)"
    )


def test_restart_trains_from_random_weights_with_the_trials_recipe(tmp_path: Path) -> None:
    executor = Recording()
    with session_for(plan_for(tmp_path, FAILURES, trials=1, pruner="none", enqueue=(GOOD,)), executor) as s:
        winner = _search(s)
        kept = s.state.load_trial_weights(winner.number)
        assert kept is not None
        [fit] = final_fit(s, [(_frozen(winner), 5)])
        verdict = choose(s, fit).own
    assert not _same(fit.weights, kept) and fit.start == ""
    assert "random weights" not in verdict.reason and "continued from" not in verdict.reason
    [spec] = [spec for spec in executor.specs if spec.job == "final-0"]
    assert spec.init_weights is None and spec.candidate == _frozen(winner).candidate.to_dict()  # type: ignore[union-attr]


def test_a_continued_fit_interrupted_mid_way_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """Killed after its first epoch, the continued fit resumes from its checkpoint (not from the
    trial's weights again) with the same recipe, and ends as one trained straight through."""
    plan = plan_for(tmp_path, FAILURES, trials=1, pruner="none", enqueue=(GOOD,), final_start="continue")
    with session_for(plan) as s:
        winner = _search(s)
    with session_for(plan_for(tmp_path / "straight", FAILURES, trials=1, pruner="none", final_start="continue")) as s:
        s.state.save_outputs(winner.number, RunState.load(plan.out).load_trial_weights(winner.number) or {}, [])
        [straight] = final_fit(s, [(winner, 5)])
    again = {"space": FAILURES, "trials": 1, "pruner": "none", "final_start": "continue"}
    killed = Recording(interrupt_after=1)
    with (
        pytest.raises(KeyboardInterrupt),
        session_for(plan_for(tmp_path, resume=RunState.load(plan.out), **again), killed) as s,
    ):
        final_fit(s, [(winner, 5)])
    assert RunState.load(plan.out).load_checkpoint("final-0") is not None
    resumed = Recording()
    with session_for(plan_for(tmp_path, resume=RunState.load(plan.out), **again), resumed) as s:
        [fit] = final_fit(s, [(winner, 5)])
    assert killed.specs[0].init_weights is not None and killed.specs[0].checkpoint is None
    [spec] = resumed.specs
    assert spec.checkpoint is not None and spec.init_weights is None
    assert spec.candidate == killed.specs[0].candidate  # the continuing recipe, as before the kill
    assert [e.epoch for e in fit.history] == [1, 2] and fit.start == "continued from trial 0's weights"
    assert fit.weights.keys() == straight.weights.keys()
    assert all(torch.allclose(fit.weights[k], straight.weights[k], atol=1e-6) for k in fit.weights)
