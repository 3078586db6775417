"""Baselines that a user could write by hand, run on the same data, space and trainer as ours.

``plain_optuna(...)``: the textbook loop: one process, ``study.optimize(objective)`` with the
given sampler, no pruning, every trial trained to the end with all CPU cores, then the best
trial retrained on train+val and scored once on the test split. It keeps to the budget as a
careful script would: it checks the clock after every epoch and abandons the trial in hand
(and the search) when finishing it would leave no time for that retrain. Without that check a
single huge candidate of the space (hours on two cores) would run far past the budget.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch

from automl_cnn.data import DataBundle
from automl_cnn.model.trained import TrainedModel
from automl_cnn.space.sampling import sample_candidate
from automl_cnn.space.schema import SearchSpace
from automl_cnn.training.trainer import fit


@dataclass
class BaselineResult:
    name: str
    test_accuracy: float
    val_accuracy: float
    trials: int
    seconds: float
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (seconds, best val so far)


def automl_cnn_run(
    data: str, space: SearchSpace, budget: float, seed: int, workdir: str, **settings: object
) -> BaselineResult:
    """This system, default settings, with a fresh store in ``workdir``; the timeline holds the
    best validation accuracy of completed trials when each completed."""
    t0 = time.monotonic()
    result = search_in(Path(workdir), f"out-{data}", data, space, time_budget=budget, seed=seed, **settings)
    timeline, best = [], 0.0
    done = [r for r in result.trials if r.outcome == "completed" and r.duplicate_of is None]
    for r in sorted(done, key=lambda r: r.started + r.seconds):
        if (r.val_acc or 0.0) > best:
            best = r.val_acc or 0.0
            timeline.append((r.started + r.seconds - t0, best))
    return BaselineResult(
        name="automl-cnn (default settings)",
        test_accuracy=result.test_accuracy,
        val_accuracy=result.val_accuracy,
        trials=len(result.trials),
        seconds=time.monotonic() - t0,
        timeline=timeline,
    )


def search_in(folder: Path, name: str, data: Any, space: Any, **settings: Any) -> Any:
    """``automl_cnn.search`` as every benchmark calls it: no live panel, its run folder
    ``folder/name``, MLflow in one SQLite store per ``folder`` (runs of several searches side by side)."""
    import automl_cnn

    return automl_cnn.search(
        data, space, progress=False, out=str(folder / name), tracking_uri=f"sqlite:///{folder}/mlflow.db", **settings
    )


def trial_counts(result: Any) -> str:
    """A search's trials as completed/pruned/failed (every trial counted, failed ones too)."""
    return "/".join(str(result.counts.get(k, 0)) for k in ("completed", "pruned", "failed"))


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Print ``rows`` under ``header`` as a Markdown table (floats with 4 decimals)."""
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |")


def time_to(timeline: list[tuple[float, float]], threshold: float) -> float | None:
    """When the best validation accuracy first reached ``threshold`` (None: never)."""
    return next((t for t, acc in timeline if acc >= threshold), None)


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

    def reserve() -> float:
        """Seconds to keep for retraining the best trial so far on train+val."""
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        return seconds[study.best_trial.number] * ratio + 5 if done else 0.0

    def objective(trial: optuna.Trial) -> float:
        cand = sample_candidate(trial, space)
        start = time.monotonic()
        keep = reserve()
        out_of_time = False

        def check_clock(_epoch: object) -> bool:
            nonlocal out_of_time
            out_of_time = time.monotonic() - t0 + keep > budget
            return out_of_time

        try:
            _, history = fit(cand, data, seed=seed + trial.number, device="cpu", on_epoch=check_clock)
        except Exception as exc:  # an impossible network or NaN: a failed trial, as Optuna does
            raise optuna.TrialPruned(str(exc)) from None
        if out_of_time:
            study.stop()
            raise optuna.TrialPruned("out of time")
        seconds[trial.number] = time.monotonic() - start
        return history[-1].val_acc

    def stop_in_time(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if done:
            best = study.best_trial
            if not timeline or (best.value or 0.0) > timeline[-1][1]:
                timeline.append((time.monotonic() - t0, best.value or 0.0))
            if time.monotonic() - t0 + reserve() > budget:
                study.stop()

    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, timeout=budget, callbacks=[stop_in_time])
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise RuntimeError(f"{name}: no trial finished within {budget:.0f} s")
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


def quiet() -> None:
    import logging
    import os
    import warnings

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    warnings.filterwarnings("ignore")
    for name in ("mlflow", "alembic", "ray"):
        logging.getLogger(name).setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def report(rows: list[BaselineResult], threshold: float) -> None:
    """The comparison table; the first row is automl-cnn, the second the baseline of the ratio."""
    columns = ["system", "test accuracy", "best val accuracy", "trials", "seconds to a trained model"]
    print("| " + " | ".join([*columns, f"seconds to val >= {threshold}"]) + " |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        reached = time_to(r.timeline, threshold)
        when = f"{reached:.0f}" if reached is not None else "never"
        print(f"| {r.name} | {r.test_accuracy:.4f} | {r.val_accuracy:.4f} | {r.trials} | {r.seconds:.0f} | {when} |")
    print("\nbest validation accuracy over time (seconds: accuracy of completed trials)")
    for r in rows:
        print(f"- {r.name}: " + ", ".join(f"{s:.0f}s {a:.4f}" for s, a in r.timeline))
    ours, base = time_to(rows[0].timeline, threshold), time_to(rows[1].timeline, threshold)
    if ours is not None:
        horizon = base if base is not None else rows[1].seconds
        sign = "" if base is not None else ">= "
        print(f"\n{rows[0].name} reached val {threshold} {sign}{horizon / ours:.1f}x sooner than {rows[1].name}")
    diff = rows[0].test_accuracy - rows[1].test_accuracy
    print(f"test accuracy difference ({rows[0].name} minus {rows[1].name}): {diff:+.4f}")
