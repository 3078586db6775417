"""The gate before training: a candidate that cannot be built, breaks a ``--max-*`` limit or
cannot reach its first rung inside its share of the time budget is refused before it costs anything.

The driver runs the gate for every trial it launches; a network's profile (parameters, FLOPs) and
its measured latency (timed here only where a limit or an objective needs it before training,
else when the trial completes) are kept per architecture, so a network proposed again (with other training
settings, or by another search in this process) is not counted or timed again.
"""

from __future__ import annotations

import functools

from optuna.trial import TrialState

from automl_cnn.engine.outcome import Ending, Outcome
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.search.cost import GATE_SLACK, CostModel, first_rung_floor, rung_words
from automl_cnn.engine.search.running import RunningTrial
from automl_cnn.engine.session import SearchSession
from automl_cnn.errors import InfeasibleArchitecture
from automl_cnn.model.architecture import Architecture
from automl_cnn.model.builder import build_model
from automl_cnn.model.measures import Profile, Shape
from automl_cnn.model.profile import measure_latency_ms, profile

CACHED_ARCHITECTURES = 4096


@functools.lru_cache(maxsize=CACHED_ARCHITECTURES)
def cached_profile(architecture: Architecture, input_shape: Shape, num_classes: int) -> Profile:
    """:func:`~automl_cnn.model.profile.profile`, once per architecture (a refusal is not kept)."""
    return profile(architecture, input_shape, num_classes)


@functools.lru_cache(maxsize=CACHED_ARCHITECTURES)
def cached_latency_ms(architecture: Architecture, input_shape: Shape, num_classes: int) -> float:
    """The latency of one image through the network, timed once per architecture."""
    return measure_latency_ms(build_model(architecture, input_shape, num_classes), input_shape)


def latency_needed_before_training(session: SearchSession) -> bool:
    """Whether the gate times a network's latency: only where a ``--max-latency-ms`` limit or a
    latency objective needs it before training. Otherwise a trial is timed when it completes
    (:func:`time_latency`, from its ending): timing cost the driver ~40 ms a launch (6-18% of one
    in an earlier breakdown; the gain measured at 256 slots was small, ``docs/benchmarks.md``), and
    a pruned trial never needs it."""
    return session.config.limits.max_latency_ms is not None or "latency" in session.objectives


def time_latency(session: SearchSession, run: RunningTrial) -> float:
    """Time ``run``'s network (once per architecture) and record it on the trial and its run."""
    bundle = session.bundle
    latency = cached_latency_ms(run.record.candidate.architecture, tuple(bundle.input_shape), bundle.num_classes)
    run.update(latency_ms=latency)
    session.tracker.log_metrics(run.record.run_id, {"latency_ms": latency})
    return latency


def static_check(session: SearchSession, run: RunningTrial, cost: CostModel) -> Ending | None:
    """Why ``run`` must not be trained, or None; its record gains its profile (and its latency
    where :func:`latency_needed_before_training`)."""
    bundle, tracker = session.bundle, session.tracker
    architecture, run_id = run.record.candidate.architecture, run.record.run_id
    try:
        measured = cached_profile(architecture, tuple(bundle.input_shape), bundle.num_classes)
    except InfeasibleArchitecture as exc:
        return Ending(Outcome.FAILED, f"not trained: {exc}", TrialState.FAIL)
    run.update(profile=measured)
    tracker.log_metrics(run_id, {"params": measured.params, "flops": measured.flops})
    limits = session.config.limits
    broken = limits.check(measured)
    if not broken:
        too_slow = _too_slow(session, run.record, cost)
        if too_slow is not None:
            return too_slow
        if latency_needed_before_training(session):  # worth timing: it may be trained
            broken = limits.check(measured, time_latency(session, run))
    if broken:
        reason = "not trained: " + "; ".join(r for r, _ in broken.values())
        return Ending(Outcome.FAILED, reason, TrialState.PRUNED, {k: v for k, (_, v) in broken.items()})
    return None


def _too_slow(session: SearchSession, rec: TrialRecord, cost: CostModel) -> Ending | None:
    """Refused only when its first rung cannot fit a trial's share of the budget (never for a
    full schedule's projection: a trial that reaches a rung is judged there again)."""
    limit = session.budget.trial_cap
    floor = first_rung_floor(session, rec, cost) if limit is not None else None
    if limit is None or floor is None or floor[0] <= GATE_SLACK * limit:
        return None
    seconds, rung = floor
    subset = " on the smallest subset" if session.data_ladder is not None else ""
    return Ending(
        Outcome.FAILED,
        f"not trained: {rung_words(rung, rec.epochs, 'first')} takes at least {seconds:.0f} s to train on this "
        f"machine{subset}, over the {limit:.0f} s a trial may take in this time budget",
        TrialState.PRUNED,
        {"trial_seconds": seconds / limit - 1},
    )
