"""``search()``: a dataset in, a tuned, trained, registered CNN out."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from automl_cnn.analysis import Limits, check_input_fits
from automl_cnn.config import SearchConfig
from automl_cnn.data import DataBundle, ImageSet, prepare_data
from automl_cnn.deliver import data_report, deliver
from automl_cnn.driver import SearchDriver, TrialRecord
from automl_cnn.executor import RayExecutor
from automl_cnn.final import final_fit, final_seconds_estimate, pick_winner
from automl_cnn.presets import warm_start_params
from automl_cnn.progress import Progress
from automl_cnn.result import SearchResult
from automl_cnn.runtime import ray_runtime
from automl_cnn.space import SearchSpace, load_space
from automl_cnn.study import create_study, journal_storage, make_pruner, make_sampler
from automl_cnn.tracking import MlflowTracker

EXPORT_RESERVE_SECONDS = 20.0  # model export, logging and registration after the final fit
MAX_TRIAL_SHARE = 0.25  # with a time budget, no trial may take more than this share of it


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
        tracker.log_text(parent, data_report(bundle), "data_report.txt")
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
            result = deliver(cfg, bundle, space, study, tracker, parent, out, records, winner, fits, t0)
            status = "FINISHED"
            return result
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            executor.shutdown()
            tracker.end_run(parent, status)


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
