"""``search()``: a dataset in, a tuned, trained, registered CNN out."""

from __future__ import annotations

import csv
import json
import math
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from automl_cnn.analysis import Limits, check_input_fits
from automl_cnn.architecture import Candidate
from automl_cnn.config import SearchConfig
from automl_cnn.data import DataBundle, ImageSet, prepare_data
from automl_cnn.driver import SearchDriver, TrialRecord
from automl_cnn.executor import RayExecutor
from automl_cnn.final import final_fit, final_seconds_estimate, pick_winner
from automl_cnn.model import TrainedModel
from automl_cnn.presets import warm_start_params
from automl_cnn.progress import Progress
from automl_cnn.report import search_report
from automl_cnn.runtime import ray_runtime
from automl_cnn.space import SearchSpace, load_space
from automl_cnn.study import create_study, journal_storage, make_pruner, make_sampler
from automl_cnn.tracking import MlflowTracker

EXPORT_RESERVE_SECONDS = 20.0  # model export, logging and registration after the final fit
MAX_TRIAL_SHARE = 0.25  # with a time budget, no trial may take more than this share of it


@dataclass
class SearchResult:
    model: TrainedModel
    candidate: Candidate
    best_trial: int
    val_accuracy: float
    test_accuracy: float
    test_accuracy_std: float | None
    test_accuracies: list[float]
    counts: dict[str, int]
    wall_seconds: float
    out_dir: Path
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    model_uri: str
    model_version: str
    trials: list[TrialRecord] = field(repr=False, default_factory=list)
    data: DataBundle | None = field(repr=False, default=None)

    def summary(self) -> str:
        test = _accuracy_text(self.test_accuracies)
        counts = ", ".join(f"{v} {k}" for k, v in self.counts.items())
        return "\n".join(
            [
                f"best architecture   {self.candidate.architecture.describe()}",
                f"                    {self.model.info.get('params', 0):,} parameters, "
                f"{self.model.info.get('flops', 0):,} FLOPs (trial {self.best_trial})",
                f"validation accuracy {self.val_accuracy:.4f}",
                f"test accuracy       {test}",
                f"trials              {counts}",
                f"wall time           {self.wall_seconds:.0f} s",
                f"model folder        {self.out_dir}",
                f"registered model    {self.model_uri} (version {self.model_version})",
                f"MLflow              {self.tracking_uri} (experiment {self.experiment_id}, run {self.parent_run_id})",
                f"browse              automl-cnn ui --tracking-uri {self.tracking_uri}",
            ]
        )


def _accuracy_text(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} over {len(values)} seeds"


def search(
    data: str | Path | ImageSet,
    space: str | Path | SearchSpace = "default",
    **settings: Any,
) -> SearchResult:
    """Search ``space`` for the best CNN on ``data``; settings as in :class:`SearchConfig`.

    >>> result = search("digits", "tiny", trials=6)            # doctest: +SKIP
    >>> result.model.predict(images)                            # doctest: +SKIP
    """
    if "time_budget" in settings and isinstance(settings["time_budget"], str):
        from automl_cnn.config import parse_duration

        settings["time_budget"] = parse_duration(settings["time_budget"])
    return run_search(data, space, SearchConfig(**settings))


def run_search(data: str | Path | ImageSet, space_spec: str | Path | SearchSpace, cfg: SearchConfig) -> SearchResult:
    t0 = time.monotonic()
    # Everything that can be wrong with the input is checked before anything is written.
    space = load_space(space_spec)
    if cfg.max_epochs:
        space = space.with_max_epochs(cfg.max_epochs)
    bundle = prepare_data(
        data,
        cfg.data_options(),
        test=cfg.test_data,
        fractions=cfg.split,
        seed=cfg.seed,
        class_weights=cfg.class_weights,
    )
    check_input_fits(space, bundle.input_shape, bundle.name)
    tracker = MlflowTracker(cfg.resolved_tracking_uri(), cfg.experiment)
    out = cfg.out_dir(bundle.name)
    budget = cfg.budget_seconds()
    final_seeds = [cfg.seed + 10_000 + k for k in range(int(cfg.extra.get("final_repeats", 1)))]

    with ray_runtime(cfg.ray_address) as resources:
        gpus = float(resources.get("GPU", 0))
        gpus_per_trial = cfg.gpus_per_trial if cfg.gpus_per_trial is not None else (1.0 if gpus >= 1 else 0.0)
        workers = cfg.default_workers(float(resources.get("CPU", 1)), gpus if gpus_per_trial > 0 else 0)
        out.mkdir(parents=True, exist_ok=True)
        (out / "space.yaml").write_text(space.to_yaml(), encoding="utf-8")
        parent = tracker.start_run(
            f"search-{bundle.name}-{time.strftime('%Y%m%d-%H%M%S')}",
            _search_params(cfg, space, bundle, workers, budget),
            {"automl_cnn.role": "search", "automl_cnn.out": str(out)},
        )
        tracker.log_text(parent, space.to_yaml(), "search_space.yaml")
        tracker.log_text(parent, _data_report(bundle), "data_report.txt")
        executor = RayExecutor(workers, cfg.cpus_per_trial, gpus_per_trial, cfg.device)
        status = "FAILED"
        try:
            study = create_study(
                journal_storage(out / "study.journal"),
                f"automl-cnn-{parent}",
                make_sampler(cfg.sampler, cfg.seed),
                make_pruner(cfg.pruner, space.max_epochs()),
            )
            for params in cfg.enqueue:
                study.enqueue_trial(dict(params), skip_if_exists=True)
            for preset, params in warm_start_params(cfg.warm_start, space):
                study.enqueue_trial(params, user_attrs={"preset": preset}, skip_if_exists=True)
            n_train, n_trainval = len(bundle.train_idx), len(bundle.train_idx) + len(bundle.val_idx)
            rounds = math.ceil(len(final_seeds) / workers)

            def search_deadline(records: list[TrialRecord]) -> float:
                if budget is None:
                    return math.inf
                est = final_seconds_estimate(records, n_trainval / n_train, rounds)
                return t0 + budget - est - EXPORT_RESERVE_SECONDS

            with Progress(cfg.progress, budget, cfg.trials) as progress:
                progress.start = t0
                for note in bundle.images.notes:
                    progress.message(f"data: {note}")
                progress.message(
                    f"data: {bundle.name}, {bundle.num_classes} classes, "
                    + ", ".join(f"{k} {sum(v)}" for k, v in bundle.counts().items())
                    + f" images; per class in train: {bundle.counts()['train']}"
                )
                progress.message(
                    f"searching {space.name} on {bundle.name} {bundle.input_shape} with {workers} worker(s); "
                    f"MLflow run {parent}"
                )
                driver = SearchDriver(
                    space=space,
                    bundle=bundle,
                    study=study,
                    executor=executor,
                    tracker=tracker,
                    parent_run=parent,
                    progress=progress,
                    data_ref=executor.put(bundle.search_data()),
                    seed=cfg.seed,
                    max_trials=cfg.trials,
                    search_deadline=search_deadline,
                    max_trial_seconds=None if budget is None else MAX_TRIAL_SHARE * budget,
                    limits=Limits(cfg.extra.get("max_params"), cfg.extra.get("max_flops")),
                    pruner_name=cfg.pruner,
                )
                records = driver.run()
                winner = pick_winner(records)
                assert winner.candidate is not None
                progress.set_phase(f"final fit of trial {winner.number} on train+val")
                fits = final_fit(
                    executor,
                    winner.candidate,
                    final_seeds,
                    executor.put(bundle.final_data()),
                    progress,
                    tracker,
                    parent,
                )
                progress.set_phase("exporting and registering the model")
            result = _deliver(cfg, bundle, space, tracker, parent, out, records, winner, fits, t0)
            status = "FINISHED"
            return result
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            executor.shutdown()
            tracker.end_run(parent, status)


def _data_report(bundle: DataBundle) -> str:
    counts = bundle.counts()
    lines = [
        f"data: {bundle.name}",
        f"fingerprint: {bundle.fingerprint()}",
        f"split seed: {bundle.split_seed}, fractions {bundle.fractions}",
        f"input shape: {bundle.input_shape}",
        f"streamed from disk: {bundle.images.streamed}",
        f"normalisation (train split): mean {bundle.mean}, std {bundle.std}",
        f"class weights: {bundle.class_weights}",
        "",
        "images per class:",
        *(
            f"  {name}: train {counts['train'][i]}, val {counts['val'][i]}, test {counts['test'][i]}"
            for i, name in enumerate(bundle.class_names)
        ),
        "",
        *bundle.images.notes,
    ]
    return "\n".join(lines) + "\n"


def _search_params(
    cfg: SearchConfig, space: SearchSpace, bundle: DataBundle, workers: int, budget: float | None
) -> dict[str, Any]:
    counts = bundle.counts()
    return {
        **{f"config.{k}": v for k, v in cfg.to_params().items()},
        "config.workers": workers,
        "config.budget_seconds": budget,
        "space.name": space.name,
        "space.source": space.source,
        "data.name": bundle.name,
        "data.fingerprint": bundle.fingerprint(),
        "data.split_seed": bundle.split_seed,
        "data.input_shape": "x".join(map(str, bundle.input_shape)),
        "data.classes": list(bundle.class_names),
        "data.n_train": len(bundle.train_idx),
        "data.n_val": len(bundle.val_idx),
        "data.n_test": len(bundle.test_idx),
        "data.per_class_train": counts["train"],
        "data.per_class_test": counts["test"],
        "data.streamed": bundle.images.streamed,
        "data.class_weights": bundle.class_weights is not None,
    }


def _deliver(
    cfg: SearchConfig,
    bundle: DataBundle,
    space: SearchSpace,
    tracker: MlflowTracker,
    parent: str,
    out: Path,
    records: list[TrialRecord],
    winner: TrialRecord,
    fits: list[Any],
    t0: float,
) -> SearchResult:
    assert winner.candidate is not None and winner.profile is not None
    x_test, y_test = bundle.test_split()
    models = [
        TrainedModel.from_weights(
            winner.candidate, f.weights, bundle.input_shape, bundle.class_names, bundle.mean, bundle.std
        )
        for f in fits
    ]
    test_accs = [m.accuracy(x_test, y_test) for m in models]
    model = models[0]
    counts = dict(Counter(r.outcome for r in records))
    counts = {k: counts.get(k, 0) for k in ("completed", "pruned", "failed")}
    val_acc = float(winner.val_acc or 0.0)
    model.metrics = {"val_accuracy": val_acc, "test_accuracy": test_accs[0]}
    model.info = {
        "data": bundle.name,
        "fingerprint": bundle.fingerprint(),
        "split_seed": bundle.split_seed,
        "params": winner.profile.params,
        "flops": winner.profile.flops,
        "trial": winner.number,
        "mlflow_run_id": parent,
        "tracking_uri": tracker.uri,
    }
    model.save(out)
    model.save_torchscript(out / "model.torchscript.pt")
    _write_trials_csv(out / "trials.csv", records)

    registered = cfg.registered_name(bundle.name)
    description = (
        f"{winner.candidate.architecture.describe()} — val accuracy {val_acc:.4f}, test accuracy "
        f"{_accuracy_text(test_accs)}; {winner.profile.params:,} parameters. Found by automl-cnn search "
        f"run {parent} (trial {winner.number}) on {bundle.name} (fingerprint {bundle.fingerprint()})."
    )
    example = np.ascontiguousarray(x_test[:4].astype(np.float32) / 255.0 if x_test.dtype == np.uint8 else x_test[:4])
    model_uri, version = tracker.log_model(
        parent,
        model.inference_module(),
        example,
        registered,
        description,
        [out / "model.json", out / "model.safetensors"],
    )
    wall = time.monotonic() - t0
    summary = {
        "data": bundle.name,
        "architecture": winner.candidate.architecture.describe(),
        "val_accuracy": val_acc,
        "test_accuracy_text": _accuracy_text(test_accs),
        "params": winner.profile.params,
        "flops": winner.profile.flops,
        "counts": counts,
        "wall_seconds": wall,
        "training": {k: v for k, v in winner.candidate.flat_params().items() if k.startswith(("train.", "augment."))},
        "tracking_uri": tracker.uri,
        "experiment": cfg.experiment,
        "parent_run_id": parent,
        "model_uri": model_uri,
        "model_version": version,
        "fingerprint": bundle.fingerprint(),
        "split_seed": bundle.split_seed,
    }
    report = search_report(summary, model.network, bundle.input_shape)
    (out / "report.md").write_text(report, encoding="utf-8")
    tracker.log_text(parent, report, "report.md")
    tracker.log_artifact(parent, out / "trials.csv")
    tracker.log_artifact(parent, out / "model.torchscript.pt", "export")
    metrics = {
        "best_val_accuracy": val_acc,
        "test_accuracy": statistics.mean(test_accs),
        "wall_seconds": wall,
        "best_params": winner.profile.params,
        "best_flops": winner.profile.flops,
        **{f"trials_{k}": v for k, v in counts.items()},
    }
    if len(test_accs) > 1:
        metrics["test_accuracy_std"] = statistics.stdev(test_accs)
    tracker.log_metrics(parent, metrics)
    tracker.set_tags(parent, {"automl_cnn.best_trial": winner.number, "automl_cnn.model_uri": model_uri})
    result = SearchResult(
        model=model,
        candidate=winner.candidate,
        best_trial=winner.number,
        val_accuracy=val_acc,
        test_accuracy=test_accs[0],
        test_accuracy_std=statistics.stdev(test_accs) if len(test_accs) > 1 else None,
        test_accuracies=test_accs,
        counts=counts,
        wall_seconds=wall,
        out_dir=out,
        tracking_uri=tracker.uri,
        experiment_id=tracker.experiment_id,
        parent_run_id=parent,
        model_uri=model_uri,
        model_version=version,
        trials=records,
        data=bundle,
    )
    (out / "search.json").write_text(
        json.dumps({**summary, "test_accuracies": test_accs, "config": cfg.to_params()}, indent=2, default=str),
        encoding="utf-8",
    )
    return result


def _write_trials_csv(path: Path, records: list[TrialRecord]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            ["trial", "outcome", "val_accuracy", "epochs", "params", "flops", "seconds", "architecture", "reason"]
        )
        for r in records:
            w.writerow(
                [
                    r.number,
                    r.outcome,
                    "" if r.val_acc is None else f"{r.val_acc:.4f}",
                    len(r.history),
                    r.profile.params if r.profile else "",
                    r.profile.flops if r.profile else "",
                    f"{r.seconds:.1f}",
                    r.candidate.architecture.describe() if r.candidate else "",
                    r.reason,
                ]
            )
