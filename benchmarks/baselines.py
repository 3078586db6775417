"""Baselines that a user could write by hand, run on the same data, space and trainer as ours.

``plain_optuna(...)``: the textbook loop: one process, ``study.optimize(objective)`` with the
given sampler, no pruning, every trial trained to the end with all CPU cores, then the best
trial retrained on train+val and scored once on the test split. It stops early enough to
finish that retrain inside the budget, as a careful script would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import optuna
import torch

from automl_cnn.data import DataBundle
from automl_cnn.model import TrainedModel
from automl_cnn.sampling import sample_candidate
from automl_cnn.space import SearchSpace
from automl_cnn.training import fit


@dataclass
class BaselineResult:
    name: str
    test_accuracy: float
    val_accuracy: float
    trials: int
    seconds: float
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (seconds, best val so far)


def plain_optuna(
    name: str,
    bundle: DataBundle,
    space: SearchSpace,
    budget: float,
    sampler: optuna.samplers.BaseSampler,
    seed: int = 0,
) -> BaselineResult:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.monotonic()
    data = bundle.search_data()
    ratio = (len(bundle.train_idx) + len(bundle.val_idx)) / len(bundle.train_idx)
    timeline: list[tuple[float, float]] = []
    seconds: dict[int, float] = {}

    def objective(trial: optuna.Trial) -> float:
        cand = sample_candidate(trial, space)
        start = time.monotonic()
        try:
            _, history = fit(cand, data, seed=seed + trial.number, device="cpu")
        except Exception as exc:  # an impossible network or NaN: a failed trial, as Optuna does
            raise optuna.TrialPruned(str(exc)) from None
        seconds[trial.number] = time.monotonic() - start
        return history[-1].val_acc

    def stop_in_time(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if done:
            best = study.best_trial
            timeline.append((time.monotonic() - t0, best.value or 0.0))
            if time.monotonic() - t0 + seconds[best.number] * ratio + 5 > budget:
                study.stop()

    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, timeout=budget, callbacks=[stop_in_time])
    best = study.best_trial
    cand = sample_candidate(optuna.trial.FixedTrial(best.params), space)
    trainer, _ = fit(cand, bundle.final_data(), seed=seed + best.number, device="cpu")
    model = TrainedModel(trainer.model.eval(), cand, bundle.input_shape, bundle.class_names, bundle.mean, bundle.std)
    x_test, y_test = bundle.test_split()
    return BaselineResult(
        name=name,
        test_accuracy=model.accuracy(x_test, y_test),
        val_accuracy=float(best.value or 0.0),
        trials=len(study.trials),
        seconds=time.monotonic() - t0,
        timeline=timeline,
    )
