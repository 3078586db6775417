"""``search()`` and ``resume()``: a dataset in, a tuned, trained, registered CNN out.

Everything that can be wrong with the input is checked before anything is written (a
:class:`~automl_cnn.engine.session.Plan`). The run folder then records what was asked and what
happened (see :mod:`automl_cnn.engine.runstate`), so a search whose driver is killed continues
with ``automl-cnn resume FOLDER``. The phases (warm start, trials, final fit, delivery) each
take the run's :class:`~automl_cnn.engine.session.SearchSession`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from automl_cnn.data import ImageSet, prepare_data
from automl_cnn.deliver.result import SearchResult
from automl_cnn.engine.config import SearchConfig, flat_settings
from automl_cnn.engine.estimates import SearchDeadline
from automl_cnn.engine.final.fits import FinalFit, final_fit, pick_winner, runners_up
from automl_cnn.engine.final.outcome import decisions_from_json
from automl_cnn.engine.final.plan import FinalPlan, plan_final
from automl_cnn.engine.final.tiebreak import break_ties, reserve_seconds
from automl_cnn.engine.imbalance import with_loss_weighting
from automl_cnn.engine.more import give_more_time
from automl_cnn.engine.objectives import OBJECTIVES
from automl_cnn.engine.opening import announce, start_parent_run
from automl_cnn.engine.progress import Progress
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.resources import plan_resources
from automl_cnn.engine.runstate import RUN_FILE, RunState
from automl_cnn.engine.search.dedupe import Known
from automl_cnn.engine.search.driver import SearchDriver
from automl_cnn.engine.search.extension import enqueue_continuations, grow_for_more
from automl_cnn.engine.search.recovery import recover
from automl_cnn.engine.search.warmstart import apply_warm_starts, check_compatible
from automl_cnn.engine.session import Plan, Resources, SearchSession, split_id
from automl_cnn.errors import UserInputError
from automl_cnn.metrics import resolve
from automl_cnn.services.credentials import resume_url
from automl_cnn.services.executor import Executor, cpu_count
from automl_cnn.services.study import STUDY_FILE, create_study, make_pruner, make_sampler, make_storage
from automl_cnn.services.tracking import MlflowTracker, check_reachable
from automl_cnn.space.backbone import override_weights, prepare_backbones
from automl_cnn.space.inputs import check_input_fits
from automl_cnn.space.presets import GROUPS, PRESETS
from automl_cnn.space.schema import SearchSpace, load_space

FINAL_SEED_OFFSET = 10_000
DEFAULT_PLACEMENT_WAIT_S = 300.0  # a search whose workers all lost their nodes waits this long for them


def search(
    data: str | Path | ImageSet,
    space: str | Path | SearchSpace = "default",
    *,
    resume: str | Path | None = None,
    more: str | float | None = None,
    **settings: Any,
) -> SearchResult:
    """Search ``space`` for the best CNN on ``data``; settings as in :class:`SearchConfig`.
    ``resume=RUN, more="10m"`` gives the finished search in folder ``RUN`` (on the same
    ``data``) ten more minutes: see :func:`resume`.

    >>> result = search("digits", "tiny", trials=6)            # doctest: +SKIP
    >>> result.model.predict(images)                            # doctest: +SKIP
    >>> better = search("digits", resume=result.out_dir, more="5m")  # doctest: +SKIP
    """
    if resume is not None:
        given = dict(settings)
        passed = {k: given.pop(k, None) for k in ("progress", "storage", "tracking_uri", "ray_address")}
        if given:
            raise UserInputError(
                f"resume= continues a search with the settings it was started with; drop {', '.join(sorted(given))}"
            )
        return _resume(resume, **passed, more=more, data=data)
    if more is not None:
        raise UserInputError("more= gives a finished search more time: pass resume=ITS_FOLDER with it")
    return run_search(data, space, SearchConfig.from_settings(**settings))


def resume(
    folder: str | Path,
    progress: bool | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
    ray_address: str | None = None,
    more: str | float | None = None,
    data: str | Path | ImageSet | None = None,
) -> SearchResult:
    """Continue a search whose driver stopped (killed, crashed, interrupted) in ``folder``.

    Finished trials are not rerun, interrupted ones continue from their last checkpoint, the
    time and trial budgets count what was already spent, and the winner is registered once.
    A storage or tracking URI whose password the folder masked is given again in full.
    ``ray_address`` replaces the recorded cluster: a search whose Ray head was lost continues on
    a new head (``automl-cnn resume RUN --ray-address NEW_HEAD:6379``).

    ``more`` (``"10m"``) gives a *finished* search more time (:mod:`automl_cnn.engine.more`):
    the study continues, the final phase decides again, and the model delivered is registered
    as a new version, promoted by the usual rule. ``data``: the data, when the run's recorded
    spec cannot load it again (an in-memory :class:`ImageSet`); it must be the same data.
    """
    folder = Path(folder).expanduser().resolve()
    state = RunState.load(folder)
    if data is None and state.data.startswith(IN_MEMORY):
        raise UserInputError(
            f"{folder} searched an {state.data}, which cannot be loaded again; pass the same images: "
            f'automl_cnn.search(images, resume="{folder}")'
        )
    if more is not None:
        give_more_time(state, more)
        grow_for_more(state)  # a learned length: the ceiling one step up, the best paused trials go on
    elif state.state == "finished":
        raise UserInputError(
            f"{folder}: this search already finished; its model is {state.model_uri or folder} "
            f"(nothing to resume; give it more time with: automl-cnn resume {folder} --more 10m)"
        )
    settings = flat_settings(state.config)  # run.json by group, or flat (an older run's)
    storage = resume_url(settings.get("storage"), storage, "--storage")
    tracking_uri = resume_url(settings.get("tracking_uri"), tracking_uri, "--tracking-uri")
    given = {"out": str(folder), "progress": progress, "storage": storage, "tracking_uri": tracking_uri}
    if ray_address is not None:
        given["ray_address"] = ray_address
    cfg = SearchConfig.from_dict({**settings, **given})
    return run_search(state.data if data is None else data, load_space(folder / "space.yaml"), cfg, resume_state=state)


_resume = resume  # search(resume=...) has a parameter of that name


def run_search(
    data: str | Path | ImageSet,
    space_spec: str | Path | SearchSpace,
    cfg: SearchConfig,
    resume_state: RunState | None = None,
) -> SearchResult:
    plan = make_plan(data, space_spec, cfg, resume_state)
    with _runtime(cfg, plan.out) as cluster:  # a cluster refusing us leaves no MLflow store behind
        resources = plan_resources(cfg, cluster)  # so does a request it can never place
        tracker = MlflowTracker(cfg.resolved_tracking_uri(), cfg.tracking.experiment)
        return execute(plan, tracker, resources)


def make_plan(
    data: str | Path | ImageSet, space_spec: str | Path | SearchSpace, cfg: SearchConfig, resume: RunState | None
) -> Plan:
    """Check everything about the request; write nothing."""
    started = time.monotonic()  # the time budget counts from here: loading the data and starting Ray too
    space = load_space(space_spec)
    if cfg.budget.max_epochs and resume is None:
        space = space.with_max_epochs(cfg.budget.max_epochs)
    bundle = prepare_data(
        data,
        cfg.data_options(),
        test=cfg.data.test_data,
        fractions=cfg.data.split,
        seed=cfg.search.seed,
        class_weights=cfg.data.class_weights,
    )
    if resume is not None and bundle.fingerprint() != resume.fingerprint:
        raise UserInputError(
            f"the data changed since the search started (fingerprint {bundle.fingerprint()}, "
            f"was {resume.fingerprint}); resume needs the same data"
        )
    metric = resolve(cfg.search.metric, bundle.counts()["train"])[0]
    if resume is None:  # losses corrected for the class prior are tried where every class counts the same
        space = with_loss_weighting(space, metric)
    check_input_fits(space, bundle.input_shape, bundle.name)
    if cfg.search.backbone_weights is not None and resume is None:  # resume: space.yaml holds them
        space = dataclasses.replace(
            space, backbone=override_weights(space.backbone, cfg.search.backbone_weights, space.name)
        )
    backbones = prepare_backbones(space.backbone, bundle.input_shape, bundle.name, cfg.data.download)
    space = dataclasses.replace(space, backbone=backbones)  # weights resolved to files, before training
    for name in cfg.search.warm_start:  # earlier searches must fit before anything is written
        if name not in GROUPS and name not in PRESETS:
            check_compatible(Path(name), bundle.fingerprint(), split_id(bundle), metric, bundle.counts()["train"])
    check_reachable(cfg.resolved_tracking_uri())
    out = Path(resume.folder) if resume else cfg.out_dir(bundle.name)
    if resume is None and (out / RUN_FILE).exists():
        raise UserInputError(f"{out} already holds a search; use 'automl-cnn resume {out}' or another --out")
    return Plan(cfg, space, bundle, out, _data_spec(data), resume, started)


IN_MEMORY = "in-memory ImageSet "  # run.json's data for a search given an ImageSet: resume needs data= again


def _data_spec(data: str | Path | ImageSet) -> str:
    """How run.json names the data, for a resume: a name or path, or an ImageSet's name."""
    return f"{IN_MEMORY}{data.name}" if isinstance(data, ImageSet) else str(data)


@contextlib.contextmanager
def _runtime(cfg: SearchConfig, out: Path) -> Iterator[dict[str, float]]:
    """The resources trials can use: Ray's (local or a cluster), or this process's."""
    if cfg.cluster.executor == "inprocess":
        import torch

        yield {"CPU": float(cpu_count()), "GPU": float(torch.cuda.device_count())}
        return
    from automl_cnn.services.ray_runtime import ray_runtime

    with ray_runtime(cfg.cluster.ray_address, str(out)) as resources:
        yield resources


def make_executor(cfg: SearchConfig, resources: Resources) -> Executor:
    if cfg.cluster.executor == "inprocess":
        from automl_cnn.services.inprocess import InProcessExecutor

        return InProcessExecutor(
            resources.workers, max(1, round(cfg.cluster.cpus_per_trial)), cfg.cluster.device or "cpu"
        )
    from automl_cnn.services.ray_executor import RayExecutor

    wait = cfg.cluster.wait_for_resources if cfg.cluster.wait_for_resources is not None else DEFAULT_PLACEMENT_WAIT_S
    return RayExecutor(
        resources.workers, cfg.cluster.cpus_per_trial, resources.gpus_per_trial, cfg.cluster.device, wait
    )


def _new_state(plan: Plan, tracker: MlflowTracker) -> RunState:
    return RunState(
        folder=plan.out,
        data=plan.data_spec,
        config={**plan.config.to_record(), "progress": None},  # passwords masked
        fingerprint=plan.bundle.fingerprint(),
        tracking_uri=tracker.shown_uri,
        experiment=plan.config.tracking.experiment,
        extra={"split": split_id(plan.bundle)},
    )


def execute(plan: Plan, tracker: MlflowTracker, resources: Resources) -> SearchResult:
    """Run a checked plan: open the run folder and the MLflow run, search, fit, deliver."""
    from automl_cnn.deliver.deliver import deliver

    with open_session(plan, tracker, resources) as session:
        with session.progress:
            records, winner, fits, final = search_and_fit(session)
        return deliver(session, records, winner, fits, final)


@contextlib.contextmanager
def open_session(
    plan: Plan, tracker: MlflowTracker, resources: Resources, executor: Executor | None = None
) -> Iterator[SearchSession]:
    """The run's session: its folder claimed, its MLflow parent run and its study open. On the
    way out the executor is shut down and the parent run closed FINISHED (the block completed),
    KILLED (interrupted) or FAILED; a finished run folder is marked so."""
    cfg, out = plan.config, plan.out
    state = plan.resume_state or _new_state(plan, tracker)
    state.folder = out
    budget = state.open_budget(cfg.budget_seconds(), started=plan.started)  # earlier drivers' time counts
    state.acquire()
    out.mkdir(parents=True, exist_ok=True)
    (out / "space.yaml").write_text(plan.space.to_yaml(), encoding="utf-8")
    resumed = plan.resume_state is not None
    if resumed and state.parent_run_id:
        tracker.client.update_run(state.parent_run_id, status="RUNNING")
    else:
        state.parent_run_id = start_parent_run(plan, tracker, resources)
    state.save()
    executor = executor or make_executor(cfg, resources)
    status = "FAILED"
    try:
        state.study_name = state.study_name or f"automl-cnn-{state.parent_run_id}"
        study = create_study(
            make_storage(cfg.tracking.storage, out / STUDY_FILE),
            state.study_name,
            make_sampler(cfg.search.sampler, cfg.search.seed),
            make_pruner(cfg.search.pruner, plan.space.max_epochs()),
            {name: OBJECTIVES[name] for name in cfg.search.objectives},
        )
        state.save()
        progress = Progress(cfg.tracking.progress, budget, cfg.budget.trials)
        yield SearchSession(
            cfg,
            plan.space,
            plan.bundle,
            out,
            state,
            study,
            executor,
            tracker,
            progress,
            budget,
            state.parent_run_id,
            resources,
            resumed,
        )
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        executor.shutdown()
        tracker.end_run(state.parent_run_id, status)
        if status == "FINISHED":
            state.state = "finished"
        state.save()
        state.release()


def search_and_fit(session: SearchSession) -> tuple[list[TrialRecord], TrialRecord, list[FinalFit], FinalPlan]:
    """The trials, the final plan (an ensemble or the winner alone, and for how many epochs),
    then its final fits on train + the selection half of validation. A resumed run continues at
    the phase its last driver reached (``RunState.phase``): after the trials it starts none, and
    final fits continue from their checkpoints or reuse their saved weights."""
    state, progress = session.state, session.progress
    if state.phase == "trials":
        records, winner = _trials(session)
        jobs, plan = _plan(session, records, winner)
        state.phase = "final_fit"
        state.final_jobs = [[r.number, seed, plan.epochs.get(r.number, r.epochs)] for r, seed in jobs]
        state.ensemble = [[n, w] for n, w in plan.members]
        state.final_notes = [d.to_json() for d in plan.decisions]
        state.final_check, state.final_seeds = dict(plan.check), plan.seeds
        state.save()
        for decision in plan.decisions:
            progress.message(decision.line())
    else:  # killed during the final fit or delivery: the trials are over
        jobs, plan = _recorded_plan(state)
        records = state.finished_records()
        progress.message(f"resuming at the {state.phase.replace('_', ' ')} (the trials are over; none is started)")
    winner = jobs[0][0]
    what = f"ensemble of {len(plan.members)}" if plan.ensemble else f"trial {winner.number}"
    progress.set_phase(f"final fit of {what} on train + half of validation ({len(jobs)} fit(s))")
    fits = final_fit(session, jobs, plan.epochs)
    state.phase = "delivering"
    state.save()
    progress.set_phase("checking, exporting and registering the model")
    return records, winner, fits, plan


def _recorded_plan(state: RunState) -> tuple[list[tuple[TrialRecord, int]], FinalPlan]:
    """The final fits and plan an earlier driver of this run decided (``run.json``)."""
    by_number = {r.number: r for r in state.finished_records()}
    jobs = [(by_number[job[0]], job[1]) for job in state.final_jobs]
    epochs = {job[0]: job[2] for job in state.final_jobs if len(job) > 2 and job[2] != by_number[job[0]].epochs}
    members = tuple((int(n), float(w)) for n, w in state.ensemble) or ((jobs[0][0].number, 1.0),)
    decisions = decisions_from_json(state.final_notes)
    return jobs, FinalPlan(members, epochs, decisions, dict(state.final_check), state.final_seeds)


def _trials(session: SearchSession) -> tuple[list[TrialRecord], TrialRecord]:
    """Warm starts and the search loop; the records and the winner."""
    cfg = session.config
    known = Known()
    if not session.resumed:
        apply_warm_starts(session, known)
    enqueue_continuations(session)  # resume --more: the best trials paused at the learned ceiling go on
    records, resumable = recover(session) if session.resumed else ([], [])
    announce(session, records, resumable)
    records = SearchDriver(session, SearchDeadline(session), known, records, resumable).run()
    winner = pick_winner(records, cfg.search.objectives, cfg.pick_rule())
    return records, winner


def _plan(
    session: SearchSession, records: list[TrialRecord], winner: TrialRecord
) -> tuple[list[tuple[TrialRecord, int]], FinalPlan]:
    """Second seeds for trials within noise of the winner (which may change it), then the final
    plan and its fits: the winner and the ``--final-top-k`` runners-up with every seed of
    ``--final-repeats``, and each other ensemble member with the first seed."""
    cfg = session.config
    tie = break_ties(session, records, winner, session.budget.fit_time_left(), reserve_seconds(session, winner))
    winner = tie.winner
    runners = runners_up(records, winner, cfg.final.final_top_k - 1)
    seeds = [cfg.search.seed + FINAL_SEED_OFFSET + k for k in range(cfg.final.final_repeats)]
    others = [winner.number] * (len(seeds) - 1) + [r.number for r in runners for _ in seeds]
    plan = plan_final(session, records, winner, others, session.budget.fit_time_left())
    plan = dataclasses.replace(plan, decisions=(*tie.decisions, *plan.decisions))
    by_number = {r.number: r for r in records}
    winner_seeds = [cfg.search.seed + FINAL_SEED_OFFSET + k for k in range(max(cfg.final.final_repeats, plan.seeds))]
    jobs = [(winner, seed) for seed in winner_seeds] + [(r, seed) for r in runners for seed in seeds]
    fitted = {winner.number, *(r.number for r in runners)}
    jobs += [(by_number[n], seeds[0]) for n, _ in plan.members if n not in fitted]
    return jobs, plan
