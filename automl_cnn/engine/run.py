"""``search()`` and ``resume()``: a dataset in, a tuned, trained, registered CNN out.

Everything that can be wrong with the input is checked before anything is written. The run
folder then records what was asked and what happened (see :mod:`automl_cnn.engine.runstate`), so a
search whose driver is killed continues with ``automl-cnn resume FOLDER``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import optuna

from automl_cnn.data import DataBundle, ImageSet, prepare_data
from automl_cnn.deliver.deliver import data_report, deliver
from automl_cnn.deliver.result import SearchResult
from automl_cnn.engine.config import SearchConfig, parse_duration
from automl_cnn.engine.dedupe import Known
from automl_cnn.engine.driver import SearchDriver
from automl_cnn.engine.final import final_fit, final_seconds_estimate, pick_winner, runners_up
from automl_cnn.engine.progress import Progress
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.recovery import recover
from automl_cnn.engine.runstate import RunState
from automl_cnn.engine.warmstart import check_compatible, warm_start_from
from automl_cnn.errors import UserInputError
from automl_cnn.model.profile import check_input_fits
from automl_cnn.services.ray_executor import RayExecutor
from automl_cnn.services.ray_runtime import ray_runtime
from automl_cnn.services.study import create_study, make_pruner, make_sampler, make_storage, mask_password
from automl_cnn.services.tracking import MlflowTracker, check_reachable
from automl_cnn.space.presets import GROUPS, PRESETS, warm_start_params
from automl_cnn.space.schema import SearchSpace, load_space

EXPORT_RESERVE_SECONDS = 20.0  # model export, plots, logging and registration after the final fit
MAX_TRIAL_SHARE = 1 / 3  # with a time budget, no trial may take more than this share of it
STUDY_FILE = "study.journal"


def search(
    data: str | Path | ImageSet,
    space: str | Path | SearchSpace = "default",
    **settings: Any,
) -> SearchResult:
    """Search ``space`` for the best CNN on ``data``; settings as in :class:`SearchConfig`.

    >>> result = search("digits", "tiny", trials=6)            # doctest: +SKIP
    >>> result.model.predict(images)                            # doctest: +SKIP
    """
    if isinstance(settings.get("time_budget"), str):
        settings["time_budget"] = parse_duration(settings["time_budget"])
    return run_search(data, space, SearchConfig(**settings))


def _config_from_json(d: dict[str, Any]) -> SearchConfig:
    names = {f.name for f in fields(SearchConfig)}
    kw = {k: v for k, v in d.items() if k in names}
    for key in ("split", "image_size", "objectives", "warm_start", "enqueue"):
        if isinstance(kw.get(key), list):
            kw[key] = tuple(tuple(v) if isinstance(v, list) else v for v in kw[key])
    if kw.get("out") is not None:
        kw["out"] = Path(kw["out"])
    return SearchConfig(**kw)


def resume(folder: str | Path, progress: bool | None = None, storage: str | None = None) -> SearchResult:
    """Continue a search whose driver stopped (killed, crashed, interrupted) in ``folder``.

    Finished trials are not rerun, interrupted ones continue from their last checkpoint, the
    time and trial budgets count what was already spent, and the winner is registered once.
    """
    folder = Path(folder).expanduser().resolve()
    state = RunState.load(folder)
    if state.state == "finished":
        raise UserInputError(
            f"{folder}: this search already finished; its model is {state.model_uri or folder} (nothing to resume)"
        )
    saved = state.config.get("storage")
    if saved and "***" in saved and not storage:
        raise UserInputError(f"{folder}: the study is in {saved}; pass --storage with the full URL to resume")
    cfg = _config_from_json({**state.config, "out": str(folder), "progress": progress, "storage": storage or saved})
    space = load_space(folder / "space.yaml")
    return run_search(state.data, space, cfg, resume_state=state)


def run_search(
    data: str | Path | ImageSet,
    space_spec: str | Path | SearchSpace,
    cfg: SearchConfig,
    resume_state: RunState | None = None,
) -> SearchResult:
    space = load_space(space_spec)
    if cfg.max_epochs and resume_state is None:
        space = space.with_max_epochs(cfg.max_epochs)
    bundle = prepare_data(
        data,
        cfg.data_options(),
        test=cfg.test_data,
        fractions=cfg.split,
        seed=cfg.seed,
        class_weights=cfg.class_weights,
    )
    if resume_state is not None and bundle.fingerprint() != resume_state.fingerprint:
        raise UserInputError(
            f"the data changed since the search started (fingerprint {bundle.fingerprint()}, "
            f"was {resume_state.fingerprint}); resume needs the same data"
        )
    check_input_fits(space, bundle.input_shape, bundle.name)
    for name in cfg.warm_start:  # earlier searches must fit before anything is written
        if name not in GROUPS and name not in PRESETS:
            check_compatible(Path(name), bundle.fingerprint(), split_id(bundle))
    check_reachable(cfg.resolved_tracking_uri())
    out = Path(resume_state.folder) if resume_state else cfg.out_dir(bundle.name)
    if resume_state is None and (out / "run.json").exists():
        raise UserInputError(f"{out} already holds a search; use 'automl-cnn resume {out}' or another --out")
    with ray_runtime(cfg.ray_address) as resources:  # a cluster refusing us leaves no MLflow store behind
        tracker = MlflowTracker(cfg.resolved_tracking_uri(), cfg.experiment)
        return _Run(cfg, space, bundle, tracker, out, resources, resume_state, str(data)).execute()


def split_id(b: DataBundle) -> str:
    """What makes two searches' validation scores comparable: the split of the same data."""
    return f"seed {b.split_seed}, fractions {'/'.join(f'{f:g}' for f in b.fractions)}, test {len(b.test_idx)}"


class _Run:
    """One search (new or resumed): set-up, trials, final fit, delivery."""

    def __init__(
        self,
        cfg: SearchConfig,
        space: SearchSpace,
        bundle: DataBundle,
        tracker: MlflowTracker,
        out: Path,
        resources: dict[str, float],
        resume_state: RunState | None,
        data_spec: str,
    ) -> None:
        self.cfg, self.space, self.bundle, self.tracker, self.out = cfg, space, bundle, tracker, out
        self.budget = cfg.budget_seconds()
        gpus = float(resources.get("GPU", 0))
        self.gpus_per_trial = cfg.gpus_per_trial if cfg.gpus_per_trial is not None else (1.0 if gpus >= 1 else 0.0)
        self.workers = cfg.default_workers(float(resources.get("CPU", 1)), gpus if self.gpus_per_trial > 0 else 0)
        self.resumed = resume_state is not None
        self.state = resume_state or RunState(
            folder=out,
            data=data_spec,
            config={**{k: v for k, v in asdict(cfg).items() if k != "progress"}, "storage": mask_password(cfg.storage)},
            fingerprint=bundle.fingerprint(),
            tracking_uri=tracker.uri,
            experiment=cfg.experiment,
            extra={"split": split_id(self.bundle)},
        )
        self.state.folder = out

    # -- set-up --------------------------------------------------------------------------------
    def _start_mlflow(self) -> str:
        if self.resumed and self.state.parent_run_id:
            self.tracker.client.update_run(self.state.parent_run_id, status="RUNNING")
            return self.state.parent_run_id
        parent = self.tracker.start_run(
            f"search-{self.bundle.name}-{time.strftime('%Y%m%d-%H%M%S')}",
            self._params(),
            {"automl_cnn.role": "search", "automl_cnn.out": str(self.out)},
        )
        self.tracker.log_text(parent, self.space.to_yaml(), "search_space.yaml")
        self.tracker.log_text(parent, data_report(self.bundle), "data_report.txt")
        return parent

    def _params(self) -> dict[str, Any]:
        b, counts = self.bundle, self.bundle.counts()
        return {
            **{f"config.{k}": v for k, v in self.cfg.to_params().items()},
            "config.workers": self.workers,
            "config.budget_seconds": self.budget,
            "space.name": self.space.name,
            "space.source": self.space.source,
            "data.name": b.name,
            "data.fingerprint": b.fingerprint(),
            "data.split_seed": b.split_seed,
            "data.input_shape": "x".join(map(str, b.input_shape)),
            "data.classes": list(b.class_names),
            "data.n_train": len(b.train_idx),
            "data.n_val": len(b.val_idx),
            "data.n_test": len(b.test_idx),
            "data.per_class_train": counts["train"],
            "data.per_class_test": counts["test"],
            "data.streamed": b.images.streamed,
            "data.class_weights": b.class_weights is not None,
        }

    def _study(self, parent: str) -> optuna.Study:
        cfg = self.cfg
        name = self.state.study_name or f"automl-cnn-{parent}"
        self.state.study_name = name
        return create_study(
            make_storage(cfg.storage, self.out / STUDY_FILE),
            name,
            make_sampler(cfg.sampler, cfg.seed),
            make_pruner(cfg.pruner, self.space.max_epochs()),
            cfg.objectives,
        )

    def _warm_start(self, study: optuna.Study, known: Known, progress: Progress) -> None:
        cfg = self.cfg
        for params in cfg.enqueue:
            study.enqueue_trial(dict(params), skip_if_exists=True)
        presets = [n for n in cfg.warm_start if n in GROUPS or n in PRESETS]
        for preset, params in warm_start_params(presets, self.space):
            study.enqueue_trial(params, user_attrs={"preset": preset}, skip_if_exists=True)
        for name in cfg.warm_start:
            if name not in presets:
                added, reused = warm_start_from(
                    Path(name),
                    self.bundle.fingerprint(),
                    self.space,
                    study,
                    cfg.objectives,
                    known,
                    split_id(self.bundle),
                )
                progress.message(
                    f"warm start from {name}: {added} trials told to the sampler, {reused} results reusable"
                )

    # -- the run -------------------------------------------------------------------------------
    def execute(self) -> SearchResult:
        cfg, bundle = self.cfg, self.bundle
        self.state.acquire()
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "space.yaml").write_text(self.space.to_yaml(), encoding="utf-8")
        parent = self._start_mlflow()
        self.state.parent_run_id = parent
        self.state.save()
        executor = RayExecutor(self.workers, cfg.cpus_per_trial, self.gpus_per_trial, cfg.device)
        status = "FAILED"
        try:
            study = self._study(parent)
            self.state.save()
            with Progress(cfg.progress, self.budget, cfg.trials) as progress:
                progress.start = time.monotonic() - self.state.elapsed
                known = Known()
                if not self.resumed:
                    self._warm_start(study, known, progress)
                records, resumable = recover(study, self.state, bundle, self.tracker) if self.resumed else ([], [])
                self._announce(progress, parent, records, resumable)
                driver = SearchDriver(
                    space=self.space,
                    bundle=bundle,
                    study=study,
                    executor=executor,
                    tracker=self.tracker,
                    parent_run=parent,
                    progress=progress,
                    data_ref=executor.put(bundle.search_data()),
                    seed=cfg.seed,
                    max_trials=cfg.trials,
                    search_deadline=self._deadline(progress.start, executor),
                    max_trial_seconds=None if self.budget is None else MAX_TRIAL_SHARE * self.budget,
                    limits=cfg.limits(),
                    pruner_name=cfg.pruner,
                    objectives=cfg.objectives,
                    known=known,
                    state=self.state,
                    records=records,
                    resumable=resumable,
                )
                records = driver.run()
                winner = pick_winner(records, cfg.objectives, cfg.pick_rule())
                assert winner.candidate is not None
                others = runners_up(records, winner, cfg.final_top_k - 1)
                jobs = [(r, self._final_seed(k)) for r in [winner, *others] for k in range(cfg.final_repeats)]
                progress.set_phase(f"final fit of trial {winner.number} on train+val ({len(jobs)} fit(s))")
                fits = final_fit(executor, jobs, executor.put(bundle.final_data()), progress, self.tracker, parent)
                progress.set_phase("exporting and registering the model")
            result = deliver(
                cfg,
                bundle,
                self.space,
                study,
                self.tracker,
                parent,
                self.out,
                records,
                winner,
                fits,
                progress.start,
                self.state,
            )
            status = "FINISHED"
            return result
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            executor.shutdown()
            self.tracker.end_run(parent, status)
            if status == "FINISHED":
                self.state.state = "finished"
            self.state.save()
            self.state.release()

    def _final_seed(self, k: int) -> int:
        return self.cfg.seed + 10_000 + k

    def _deadline(self, t0: float, executor: RayExecutor) -> Any:
        budget, bundle, cfg = self.budget, self.bundle, self.cfg
        n_train = len(bundle.train_idx)
        n_fits = cfg.final_repeats * cfg.final_top_k
        rounds = math.ceil(n_fits / self.workers)
        # a final fit trains on train+val, with the threads idle workers leave: measured here, two
        # threads train a small CNN 1.7x as fast as one; counted as at most 1.5x, to be safe
        speedup = 1.0 if self.gpus_per_trial > 0 else min(1.5, executor.threads_for(n_fits) ** 0.6)
        ratio = (n_train + len(bundle.val_idx)) / n_train / speedup

        def search_deadline(records: list[TrialRecord]) -> float:
            if budget is None:
                return math.inf
            return t0 + budget - final_seconds_estimate(records, ratio, rounds) - EXPORT_RESERVE_SECONDS

        return search_deadline

    def _announce(self, progress: Progress, parent: str, records: list[TrialRecord], resumable: list[Any]) -> None:
        b = self.bundle
        for note in b.images.notes:
            progress.message(f"data: {note}")
        counts = b.counts()
        progress.message(
            f"data: {b.name}, {b.num_classes} classes, "
            + ", ".join(f"{k} {sum(v)}" for k, v in counts.items())
            + f" images; per class in train: {counts['train']}"
        )
        if self.resumed:
            progress.message(
                f"resuming {self.out}: {len(records)} trials finished, {len(resumable)} to continue, "
                f"{self.state.elapsed:.0f} s of the budget spent"
            )
        limits = [name for name in ("max_params", "max_flops", "max_latency_ms") if getattr(self.cfg, name)]
        if limits and self.cfg.sampler != "tpe":
            progress.message(
                f"note: candidates over --{limits[0].replace('_', '-')} are never trained, but only the tpe "
                f"sampler learns to avoid them; {self.cfg.sampler} keeps proposing some"
            )
        objectives = ", ".join(self.cfg.objectives)
        progress.message(
            f"searching {self.space.name} on {b.name} {b.input_shape} with {self.workers} worker(s) "
            f"for {objectives}; MLflow run {parent}; output {self.out}"
        )
