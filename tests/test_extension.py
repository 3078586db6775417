"""``resume --more`` on a search that learned its training length extends its best trials: the
ceiling grows one step and the trials kept at the old one continue from their checkpoints, with
their seeds, to the weights a run straight to the new ceiling would have (real training of small
networks on the in-process executor, a real MLflow store)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow import MlflowClient
from sessions import HERE
from stores import mlflow_store

from automl_cnn import search
from automl_cnn.engine.outcome import Ending, Outcome
from automl_cnn.engine.records import TrialRecord, trial_seed
from automl_cnn.engine.runstate import RunState
from automl_cnn.engine.search.extension import KEEP, checkpoint_key, checkpoint_to_resume, grow_for_more, keep_for_more
from automl_cnn.engine.search.pausing import STATE_KEY
from automl_cnn.model.architecture import Architecture, Candidate, ConvBlock, Head, TrainConfig
from automl_cnn.model.measures import EpochResult
from automl_cnn.training.messages import JobSpec
from automl_cnn.training.worker import TrialWorker

WSD = HERE / "spaces" / "wsd.yaml"
CANDIDATE = Candidate(Architecture((ConvBlock(filters=4),), Head()), TrainConfig(epochs=9, lr_schedule="wsd"))


def test_more_grows_the_ceiling_one_step_only_for_a_learned_run_with_trials_kept(tmp_path: Path) -> None:
    state = RunState(folder=tmp_path, data="digits", config={}, fingerprint="fp")
    state.extra = {STATE_KEY: {"mode": "learned", "ceiling": 3, "cap": 9, "extendable": [{"trial": 4, "epochs": 3}]}}
    grown = grow_for_more(state)
    assert grown == {"from": 3, "to": 9, "trials": [4]}
    saved = state.extra[STATE_KEY]
    assert saved["ceiling"] == 9 and saved["continue"] == [4] and saved["extendable"] == []
    assert grow_for_more(state) is None  # nothing kept any more (and at the cap)
    for extra in (
        {"mode": "fixed", "why": "--epochs fixed"},
        {"mode": "learned", "ceiling": 9, "cap": 9, "extendable": [{"trial": 4, "epochs": 9}]},
        {"mode": "learned", "ceiling": 3, "cap": 9, "extendable": []},
    ):
        state.extra = {STATE_KEY: extra}
        assert grow_for_more(state) is None and "continue" not in state.extra[STATE_KEY]


@pytest.mark.slow
def test_more_continues_the_trial_paused_at_the_ceiling_as_if_trained_straight_through(tmp_path: Path) -> None:
    store, out = mlflow_store(tmp_path / "m.db"), tmp_path / "out"
    # one trial: alone at the ceiling of 3 epochs (of its 9), nothing to compare, so it never grew
    first = search(
        "digits", WSD, trials=1, pruner="none", warm_start="none", executor="inprocess", time_budget="5m",
        seed=0, progress=False, out=out, tracking_uri=store,
    )  # fmt: skip
    (paused,) = first.trials
    assert [e.epoch for e in paused.history] == [1, 2, 3] and paused.outcome == Outcome.COMPLETED
    saved = json.loads((out / "run.json").read_text())["extra"][STATE_KEY]
    assert saved["extendable"] == [{"trial": 0, "epochs": 3, "val": paused.val_acc}] and KEEP >= 1
    assert RunState.load(out).load_checkpoint(checkpoint_key(0)) is not None

    more = search("digits", resume=out, more="45s", progress=False)
    continued = [t for t in more.trials if t.continues == 0]
    assert len(continued) == 1, [(t.number, t.continues, t.reason) for t in more.trials]
    (trial,) = continued
    # from trial 0's checkpoint and history, with its seed, on to the grown ceiling of 9
    assert trial.number > 0 and trial.seed == paused.seed and trial.outcome == Outcome.COMPLETED, trial.reason
    assert [e.epoch for e in trial.history] == list(range(1, 10))
    assert trial.history[:3] == paused.history
    # the epochs after the checkpoint are those of the same trial trained straight to epoch 9
    assert more.data is not None
    data = dataclasses.replace(more.data.search_data(), metric="accuracy")
    longer = dataclasses.replace(paused.candidate, training=dataclasses.replace(paused.candidate.training, epochs=9))
    worker = TrialWorker(threads=1, device="cpu")
    straight = [worker.begin(JobSpec("straight", longer.to_dict(), paused.seed, data, outputs=True))]
    straight += [worker.step() for _ in range(8)]
    worker.release()
    expected = [r.epoch.val_acc for r in straight if r.epoch is not None]
    assert [e.val_acc for e in trial.history] == pytest.approx(expected, abs=1.5 / len(data.y_eval))
    line = more.training_length
    assert "--more raised it from 3 to 9 epochs to extend trials 0" in line, line
    run = MlflowClient(store).get_run(trial.run_id)
    assert run.info.run_name == f"trial-{trial.number} (continues trial 0)"
    assert run.data.tags["automl_cnn.continues_trial"] == "0"
    curve = MlflowClient(store).get_metric_history(trial.run_id, "val_accuracy")
    assert sorted(m.step for m in curve) == list(range(1, 10))  # the whole curve on its run
    assert more.model_version == "2" and math.isfinite(more.test_accuracy)


def _paused(number: int, val: float, epochs: int = 3) -> TrialRecord:
    history = tuple(EpochResult(e, 1.0, 0.5, 1.0, val, 1.0, 0.001) for e in range(1, epochs + 1))
    return TrialRecord(number, trial_seed(0, number), "", CANDIDATE, history=history)


def test_kept_checkpoints_are_ranked_across_calls_and_never_wiped_by_an_empty_end(tmp_path: Path) -> None:
    state = RunState(folder=tmp_path, data="digits", config={}, fingerprint="fp")
    state.extra = {STATE_KEY: {"mode": "learned", "ceiling": 3, "cap": 9}}
    keep_for_more(state, [(_paused(0, 0.5), b"zero"), (_paused(1, 0.9), b"one"), (_paused(2, 0.2), None)])
    keep_for_more(state, [])  # a driver resumed after the search phase ends with nothing paused
    kept = [e["trial"] for e in state.extra[STATE_KEY]["extendable"]]
    assert kept == [1, 0] and state.load_checkpoint(checkpoint_key(0)) is not None
    keep_for_more(state, [(_paused(3, 0.8), b"three"), (_paused(4, 0.7), b"four")])  # killed mid-way, then the rest
    assert [e["trial"] for e in state.extra[STATE_KEY]["extendable"]] == [1, 3, 4][:KEEP]
    assert state.load_checkpoint(checkpoint_key(0)) is None  # pushed out: its file is gone
    assert state.load_checkpoint(checkpoint_key(3)) is not None


def test_a_continuation_resumes_only_from_a_checkpoint_of_its_own_or_its_trials(tmp_path: Path) -> None:
    state = RunState(folder=tmp_path, data="digits", config={}, fingerprint="fp")
    ordinary, follow = _paused(5, 0.5, 0), dataclasses.replace(_paused(6, 0.5, 0), continues=2)
    assert checkpoint_to_resume(state, ordinary) is None  # an ordinary trial starts over
    missing = checkpoint_to_resume(state, follow)
    assert (
        isinstance(missing, Ending) and missing.outcome == Outcome.FAILED and "trial 2's checkpoint" in missing.reason
    )
    state.save_checkpoint(checkpoint_key(2), b"kept", _paused(2, 0.5).history)
    found = checkpoint_to_resume(state, follow)
    assert isinstance(found, tuple) and found[0] == b"kept" and len(found[1]) == 3


def test_continuations_are_enqueued_once_with_their_trials_seed(tmp_path: Path) -> None:
    import optuna

    from automl_cnn.engine.outcome import TrialAttrs
    from automl_cnn.engine.search.extension import enqueue_continuations

    study = optuna.create_study(direction="maximize")
    original = study.ask()
    original.suggest_float("lr", 1e-3, 1e-1, log=True)
    TrialAttrs(seed=1234).write(original)  # e.g. a continuation itself, seeded from its own trial
    study.tell(original, 0.5)
    state = RunState(folder=tmp_path, data="digits", config={}, fingerprint="fp")
    said: list[str] = []
    session = SimpleNamespace(study=study, state=state, progress=SimpleNamespace(message=said.append))
    for _ in range(2):  # the second: a driver killed after enqueueing, before run.json said so
        state.extra = {STATE_KEY: {"mode": "learned", "ceiling": 9, "cap": 9, "continue": [0]}}
        enqueue_continuations(session)  # type: ignore[arg-type]
    waiting = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.WAITING]
    assert len(waiting) == 1 and waiting[0].system_attrs["fixed_params"] == original.params
    assert TrialAttrs.read(waiting[0]).continues == 0 and TrialAttrs.read(waiting[0]).seed == 1234
    assert "continue" not in state.extra[STATE_KEY] and len(said) == 1
