"""``resume --more`` on a search that learned its training length extends its best trials: the
ceiling grows one step and the trials kept at the old one continue from their checkpoints, with
their seeds, to the weights a run straight to the new ceiling would have (real training of small
networks on the in-process executor, a real MLflow store)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from mlflow import MlflowClient
from sessions import HERE
from stores import mlflow_store

from automl_cnn import search
from automl_cnn.engine.outcome import Outcome
from automl_cnn.engine.runstate import RunState
from automl_cnn.engine.search.extension import KEEP, checkpoint_key, grow_for_more
from automl_cnn.engine.search.pausing import STATE_KEY
from automl_cnn.training.messages import JobSpec
from automl_cnn.training.worker import TrialWorker

WSD = HERE / "spaces" / "wsd.yaml"


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
    assert saved["extendable"] == [{"trial": 0, "epochs": 3}] and KEEP >= 1
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
