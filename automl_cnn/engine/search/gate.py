"""The gate before training: a candidate that cannot be built, breaks a ``--max-*`` limit or
cannot finish inside its share of the time budget is refused before it costs anything.
"""

from __future__ import annotations

from optuna.trial import TrialState

from automl_cnn.engine.outcome import Ending, Outcome
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.search.cost import CostModel
from automl_cnn.engine.session import SearchSession
from automl_cnn.errors import InfeasibleArchitecture
from automl_cnn.model.builder import build_model
from automl_cnn.model.profile import measure_latency_ms, profile


def static_check(session: SearchSession, rec: TrialRecord, cost: CostModel) -> Ending | None:
    """Why ``rec`` must not be trained, or None; fills in its profile and latency."""
    assert rec.candidate is not None
    bundle, tracker = session.bundle, session.tracker
    try:
        rec.profile = profile(rec.candidate.architecture, bundle.input_shape, bundle.num_classes)
    except InfeasibleArchitecture as exc:
        return Ending(Outcome.FAILED, f"not trained: {exc}", TrialState.FAIL)
    tracker.log_metrics(rec.run_id, {"params": rec.profile.params, "flops": rec.profile.flops})
    limits = session.config.limits()
    broken = limits.check(rec.profile)
    if not broken:
        too_slow = _too_slow(session, rec, cost)
        if too_slow is not None:
            return too_slow
        # worth timing: it may be trained
        model = build_model(rec.candidate.architecture, bundle.input_shape, bundle.num_classes)
        rec.latency_ms = measure_latency_ms(model, bundle.input_shape)
        tracker.log_metrics(rec.run_id, {"latency_ms": rec.latency_ms})
        broken = limits.check(rec.profile, rec.latency_ms)
    if broken:
        reason = "not trained: " + "; ".join(r for r, _ in broken.values())
        return Ending(Outcome.FAILED, reason, TrialState.PRUNED, {k: v for k, (_, v) in broken.items()})
    return None


def _too_slow(session: SearchSession, rec: TrialRecord, cost: CostModel) -> Ending | None:
    limit = session.budget.trial_cap
    if limit is None or rec.profile is None:
        return None
    # with the data-size fidelity, the cheapest run it may make: every epoch at the ladder's lowest share
    ladder = session.data_ladder
    cheapest = ladder.plan(rec.epochs, ladder.shares[0]) if ladder is not None else [1.0] * rec.epochs
    floor = cost.lower_bound_seconds(rec.profile.flops, sum(rec.work(share) for share in cheapest))
    if floor is None or floor <= 1.5 * limit:
        return None
    return Ending(
        Outcome.FAILED,
        f"not trained: at least {floor:.0f} s to train on this machine{' on the smallest subset' if ladder else ''}, "
        f"over the {limit:.0f} s a trial may take in this time budget",
        TrialState.PRUNED,
        {"trial_seconds": floor / limit - 1},
    )
