"""After the final fit: check it, score on test, write the output folder, log and register.

``deliver(session, records, winner, fits, plan)`` runs five steps: check each final fit on the
held-out half of validation and build the delivered model, the winner or an ensemble
(:mod:`automl_cnn.engine.final.delivered`); score it and every final fit once on the untouched test
split (:func:`score_fits`); write the output folder (model, TorchScript, tables, pictures); log
and register the model in MLflow; write the reports and the summary.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from automl_cnn.deliver import viz
from automl_cnn.deliver.perclass import per_class
from automl_cnn.deliver.report import html_report, search_report
from automl_cnn.deliver.result import SearchResult, accuracy_text
from automl_cnn.deliver.tables import pareto_rows, trial_rows, write_rows
from automl_cnn.engine.final.delivered import Delivery, build_delivery, far_from_solved
from automl_cnn.engine.final.fits import FinalFit
from automl_cnn.engine.final.outcome import Decision, FinalOutcome
from automl_cnn.engine.final.plan import FinalPlan
from automl_cnn.engine.more import earlier_versions
from automl_cnn.engine.outcome import Outcome
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.search.gate import cached_latency_ms
from automl_cnn.engine.search.pausing import length_line
from automl_cnn.engine.session import SearchSession
from automl_cnn.model.trained import TrainedModel
from automl_cnn.services.registry import ModelEntry, ModelRegistry, Registration, Score

PLOTS = "plots"


@dataclass(frozen=True)
class Scored:
    """The final fits scored on test: the delivered model and every fit's test accuracy."""

    model: TrainedModel
    probs: np.ndarray  # the delivered model's test probabilities
    test_accs: dict[int, list[float]]  # trial -> one accuracy per seed (each final fit's last weights)
    delivered_acc: float  # the delivered model's test accuracy

    def table(self, by_number: dict[int, TrialRecord]) -> list[dict[str, Any]]:
        """The retrained trials' validation and test scores, for the report."""
        rows = []
        for n, accs in self.test_accs.items():
            rec = by_number[n]
            assert rec.candidate is not None
            rows.append(
                {
                    "trial": n,
                    "val_accuracy": rec.val_acc,
                    "test_accuracy": accuracy_text(accs),
                    "test_mean": statistics.mean(accs),
                    "params": rec.profile.params if rec.profile else None,
                    "architecture": rec.candidate.architecture.describe(),
                }
            )
        return rows


def score_fits(
    session: SearchSession, records: list[TrialRecord], fits: list[FinalFit], delivered: TrainedModel
) -> Scored:
    """The delivered model and each final fit (its last weights), scored once on test."""
    b = session.bundle
    x_test, y_test = b.test_split()
    by_number = {r.number: r for r in records}
    scored: dict[int, list[float]] = {}
    for f in fits:
        candidate = by_number[f.trial].candidate
        assert candidate is not None
        m = TrainedModel.from_weights(candidate, f.weights, b.input_shape, b.class_names, b.mean, b.std)
        scored.setdefault(f.trial, []).append(m.accuracy(x_test, y_test))
    probs = delivered.predict_proba(x_test)
    return Scored(delivered, probs, scored, float((probs.argmax(1) == y_test).mean()))


def deliver(
    session: SearchSession,
    records: list[TrialRecord],
    winner: TrialRecord,
    fits: list[FinalFit],
    plan: FinalPlan | None = None,
) -> SearchResult:
    """Deliver ``plan`` (default: the winner alone) from its final ``fits``."""
    assert winner.profile is not None
    if winner.latency_ms is None:  # a winner that never completed is timed here (search/gate.py)
        shape, k = tuple(session.bundle.input_shape), session.bundle.num_classes
        winner = dataclasses.replace(winner, latency_ms=cached_latency_ms(winner.candidate.architecture, shape, k))
    plan = plan or FinalPlan(((winner.number, 1.0),), {}, (), {})
    delivery = build_delivery(session, records, plan, fits)
    scored = score_fits(session, records, fits, delivery.model)
    # the delivered model's test accuracy; with --final-repeats N, also the winner's N fits' (its
    # last weights, each seed alone): the design's spread over seeds
    delivered = scored.delivered_acc
    design = scored.test_accs[winner.number][: session.config.final.final_repeats]
    test_accs = design if len(design) > 1 else [delivered]
    model = scored.model
    model.metrics = {"val_accuracy": float(winner.val_acc or 0.0), "test_accuracy": delivered}
    if delivery.outcome.check_accuracy is not None:
        model.metrics["check_accuracy"] = delivery.outcome.check_accuracy
    model.info = _model_info(session, winner, delivery)
    plots = _write_folder(session, records, winner, scored)
    reg = _register(session, model, winner, (delivered, test_accs), delivery, scored.probs)
    session.state.model_uri, session.state.model_version = reg.uri, reg.version
    session.state.save()
    result = _result(session, records, winner, delivery.outcome, scored, reg, test_accs)
    summary = _summary(session, result, winner)
    _write_reports(session, summary, model, records, plots)
    _log_run(session, summary, result)
    return result


def _result(
    session: SearchSession,
    records: list[TrialRecord],
    winner: TrialRecord,
    outcome: FinalOutcome,
    scored: Scored,
    reg: Registration,
    test_accs: list[float],
) -> SearchResult:
    """The search's result, from its typed parts: the winner, the final outcome, the test scores
    and the registration."""
    counts = Counter(str(r.outcome) for r in records)
    b = session.bundle
    return SearchResult(
        model=scored.model,
        candidate=winner.candidate,
        best_trial=winner.number,
        val_accuracy=float(winner.val_acc or 0.0),
        test_accuracy=scored.delivered_acc,
        test_accuracy_std=statistics.stdev(test_accs) if len(test_accs) > 1 else None,
        test_accuracies=test_accs,
        counts={o.value: counts.get(o.value, 0) for o in (Outcome.COMPLETED, Outcome.PRUNED, Outcome.FAILED)},
        wall_seconds=session.budget.elapsed(),
        out_dir=session.out,
        tracking_uri=session.tracker.shown_uri,
        experiment_id=session.tracker.experiment_id,
        parent_run_id=session.parent_run,
        model_uri=reg.uri,
        model_version=reg.version,
        trials=records,
        data=session.bundle,
        pareto=pareto_rows(records, session.objectives) if session.multi_objective else [],
        final_table=scored.table({r.number: r for r in records}),
        pick_rule=session.config.pick_rule().describe(),
        promotion=reg.decision.alias,
        promotion_reason=reg.decision.reason,
        val_images=len(session.bundle.val_idx),
        test_images=len(session.bundle.test_idx),
        final=outcome,
        per_class=per_class(
            b.images.y[b.test_idx], scored.probs.argmax(1), b.class_names, f1_interval=session.metric[0] == "macro_f1"
        ),
        metric=session.metric[0],
        metric_reason=session.metric[1],
        training_length=length_line(session.state.extra, winner.epochs),
    )


def _register(
    session: SearchSession,
    model: TrainedModel,
    winner: TrialRecord,
    accuracies: tuple[float, list[float]],
    delivery: Delivery,
    test_probs: np.ndarray,
) -> Registration:
    """Log and register the delivered model (once, even when resumed after a crash); it becomes
    ``champion`` by the ``--promote`` policy, scored by its test accuracy on this data and split
    and which test images it gets right (``test_probs``: its test probabilities), for a paired
    test against the champion (never under ``if-better`` when the task is far from solved)."""
    b = session.bundle
    entry = ModelEntry(
        model.inference_module(),
        _input_example(session),
        _description(session, winner, accuracies, delivery),
        (session.out / "model.json", session.out / "model.safetensors"),
    )
    y_test = b.images.y[b.test_idx]
    predicted = test_probs.argmax(1)
    correct = tuple(bool(c) for c in predicted == y_test)
    labels = tuple(int(v) for v in y_test)  # promotion compares the search's metric on these
    score = Score(
        b.fingerprint(), session.split_id, accuracies[0], correct, session.metric[0], labels, tuple(map(int, predicted))
    )
    name = session.config.registered_name(b.name, b.input_shape, b.fingerprint())
    hold = "the task is far from solved (see the search's warnings)" if far_from_solved(delivery) else None
    earlier = frozenset(earlier_versions(session.state))  # resume --more: a new round, a new version
    return ModelRegistry(session.tracker).register(
        session.parent_run, name, entry, score, session.config.tracking.promote, hold, earlier
    )


def _model_info(session: SearchSession, winner: TrialRecord, delivery: Delivery) -> dict[str, Any]:
    assert winner.profile is not None
    return {
        "data": session.bundle.name,
        "fingerprint": session.bundle.fingerprint(),
        "split_seed": session.bundle.split_seed,
        "params": sum(p.numel() for p in delivery.model.network.parameters()),
        "flops": winner.profile.flops,
        "latency_ms": winner.latency_ms,
        "trial": winner.number,
        "members": [
            {"trial": c.trial, "seed": c.seed, "weight": c.weight, "weights": c.source} for c in delivery.choices
        ],
        "mlflow_run_id": session.parent_run,
        "tracking_uri": session.tracker.shown_uri,
    }


def _write_folder(
    session: SearchSession, records: list[TrialRecord], winner: TrialRecord, scored: Scored
) -> dict[str, Path]:
    """The model (weights, record, TorchScript), the tables and the pictures; returns the plots."""
    scored.model.save(session.out)
    scored.model.save_torchscript(session.out / "model.torchscript.pt")
    write_rows(session.out / "trials.csv", trial_rows(records))
    if session.multi_objective:
        write_rows(session.out / "pareto.csv", pareto_rows(records, session.objectives))
    return _plots(session, winner, scored.model, scored.probs.argmax(1), session.out / PLOTS)


def _plots(
    session: SearchSession, winner: TrialRecord, model: TrainedModel, y_pred: np.ndarray, folder: Path
) -> dict[str, Path]:
    b = session.bundle
    plots = viz.study_plots(session.study, folder, multi_objective=session.multi_objective)
    title = f"trial {winner.number}: {winner.candidate.architecture.describe()}"
    if winner.history:
        plots["learning_curves"] = viz.learning_curves(winner.history, folder / "learning_curves.png", title)
    _, y_test = b.test_split()
    plots["confusion_matrix"] = viz.confusion_matrix(y_test, y_pred, b.class_names, folder / "confusion_matrix.png")
    lead = model.lead_network  # an ensemble's heaviest member
    filters = viz.first_layer_filters(lead, folder / "first_layer_filters.png")
    if filters is not None:  # an MLP has no filters to show
        plots["first_layer_filters"] = filters
    plots["architecture"] = viz.architecture_diagram(lead, b.input_shape, folder / "architecture.png", title)
    return plots


def _input_example(session: SearchSession) -> np.ndarray:
    raw = session.bundle.test_split()[0][:4]
    return np.ascontiguousarray(raw.astype(np.float32) / 255.0 if raw.dtype == np.uint8 else raw)


def _test_words(delivered: float, design: list[float]) -> str:
    """``0.9933``, or with several seeds ``0.9933 (delivered); this design 0.9920 ± 0.0010 over 3 seeds``."""
    return f"{delivered:.4f}" + (f" (delivered); this design {accuracy_text(design)}" if len(design) > 1 else "")


def _description(
    session: SearchSession, winner: TrialRecord, accuracies: tuple[float, list[float]], delivery: Delivery
) -> str:
    """The registered model version's description (Markdown)."""
    assert winner.profile is not None
    b = session.bundle
    what = ""
    if delivery.model.is_ensemble:
        members = ", ".join(f"trial {c.trial} (weight {c.weight:.2f}, {c.source})" for c in delivery.choices)
        what = f"- an ensemble averaging the probabilities of {members}\n"
    warnings = "".join(f"- **warning**: {w}\n" for w in delivery.warnings)
    return (
        f"**{winner.candidate.architecture.describe()}**\n\n{what}{warnings}"
        f"- validation accuracy {winner.val_acc or 0.0:.4f} (search), test accuracy {_test_words(*accuracies)} "
        "(held out)\n"
        f"- {winner.profile.params:,} parameters, {winner.profile.flops:,} FLOPs per image, "
        f"{winner.latency_ms or 0:.2f} ms per image on one CPU thread\n"
        f"- input {'x'.join(map(str, b.input_shape))} in [0, 1], output probabilities over "
        f"{b.num_classes} classes\n"
        f"- found by automl-cnn search run `{session.parent_run}` (trial {winner.number}) on {b.name} "
        f"(fingerprint `{b.fingerprint()}`, split seed {b.split_seed})"
    )


def _summary(session: SearchSession, result: SearchResult, winner: TrialRecord) -> dict[str, Any]:
    """The search's record for the reports and ``search.json``, from its result."""
    assert winner.profile is not None and result.final is not None
    cfg, bundle = session.config, session.bundle
    final = result.final.to_record()
    return {
        "data": bundle.name,
        "architecture": winner.candidate.architecture.describe(),
        "val_accuracy": result.val_accuracy,
        "test_accuracy_text": accuracy_text(result.test_accuracies),
        "test_accuracy": result.test_accuracy,
        "val_images": result.val_images,
        "test_images": result.test_images,
        "params": winner.profile.params,
        "flops": winner.profile.flops,
        "latency_ms": winner.latency_ms,
        "counts": result.counts,
        "training": {k: v for k, v in winner.candidate.flat_params().items() if k.startswith(("train.", "augment."))},
        "tracking_uri": result.tracking_uri,
        "experiment": cfg.tracking.experiment,
        "parent_run_id": result.parent_run_id,
        "fingerprint": bundle.fingerprint(),
        "split_seed": bundle.split_seed,
        "best_trial": winner.number,
        "objectives": list(cfg.search.objectives),
        "pick_rule": result.pick_rule,
        "pareto": result.pareto,
        "final_table": result.final_table,
        "model_uri": result.model_uri,
        "model_version": result.model_version,
        "wall_seconds": result.wall_seconds,
        "promotion": result.promotion,
        "promotion_reason": result.promotion_reason,
        "ensemble": result.is_ensemble,
        "delivered_params": sum(m.params or 0 for m in result.final.members),
        "per_class": result.per_class.to_record() if result.per_class else None,
        "metric": result.metric,
        "training_length": result.training_length,
        **{("delivered" if k == "members" else k): v for k, v in final.items()},
    }


def _write_reports(
    session: SearchSession,
    summary: dict[str, Any],
    model: TrainedModel,
    records: list[TrialRecord],
    plots: dict[str, Path],
) -> None:
    network, shape = model.lead_network, session.bundle.input_shape
    (session.out / "report.md").write_text(search_report(summary, network, shape), encoding="utf-8")
    page = html_report(summary, network, shape, records, plots, session.out)
    (session.out / "report.html").write_text(page, encoding="utf-8")


def _log_run(session: SearchSession, summary: dict[str, Any], result: SearchResult) -> None:
    """The parent run's pictures, reports, tables, metrics and tags; ``search.json`` beside them."""
    tracker, parent, out = session.tracker, session.parent_run, session.out
    test_accs = result.test_accuracies
    for path in sorted((out / PLOTS).glob("*.png")):
        tracker.log_artifact(parent, path, PLOTS)
    tracker.log_text(parent, (out / "report.md").read_text(encoding="utf-8"), "report.md")
    for name in ("report.html", "trials.csv", "pareto.csv"):
        if (out / name).is_file():
            tracker.log_artifact(parent, out / name)
    tracker.log_artifact(parent, out / "model.torchscript.pt", "export")
    metrics = {
        "best_val_accuracy": summary["val_accuracy"],
        "test_accuracy": summary["test_accuracy"],  # the delivered model's
        "wall_seconds": summary["wall_seconds"],
        "best_params": summary["params"],
        "best_flops": summary["flops"],
        **{f"trials_{k}": v for k, v in summary["counts"].items()},
    }
    if summary["latency_ms"] is not None:
        metrics["best_latency_ms"] = summary["latency_ms"]
    if len(test_accs) > 1:  # --final-repeats: the winner's design over several seeds, each alone
        metrics["test_accuracy_mean"] = statistics.mean(test_accs)
        metrics["test_accuracy_std"] = statistics.stdev(test_accs)
    tracker.log_metrics(parent, metrics)
    tracker.set_tags(
        parent,
        {
            "automl_cnn.best_trial": summary["best_trial"],
            "automl_cnn.model_uri": summary["model_uri"],
            "automl_cnn.promotion": summary["promotion"],
            **decision_tags(result.decisions),
        },
    )
    record = {**summary, "test_accuracies": test_accs, "config": session.config.to_params()}
    (out / "search.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")


def decision_tags(decisions: list[Decision]) -> dict[str, str]:
    """The parent run's tags for the final phase's decisions, numbered in their fixed order:
    ``automl_cnn.decision.3.ensemble`` = ``no: a tie goes to the simpler model: ...``."""
    return {
        f"automl_cnn.decision.{k}.{d.topic.replace(' ', '_')}": f"{d.answer}: {d.reason}"[:5000]
        for k, d in enumerate(decisions, 1)
    }
