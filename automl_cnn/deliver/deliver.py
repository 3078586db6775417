"""After the final fit: check it, score on test, write the output folder, log and register.

``deliver(session, records, winner, fits, plan)`` runs five steps: check each final fit on the
check half of validation and build the delivered model, the winner or an ensemble
(:mod:`automl_cnn.engine.final.delivered`); score it and every final fit once on the untouched test
split (:func:`score_fits`); write the output folder (model, TorchScript, tables, pictures); log
and register the model in MLflow; write the reports and the summary.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from automl_cnn.deliver import viz
from automl_cnn.deliver.report import html_report, search_report
from automl_cnn.deliver.result import SearchResult, accuracy_text
from automl_cnn.deliver.tables import pareto_rows, trial_rows, write_rows
from automl_cnn.engine.final.delivered import Delivery, build_delivery, far_from_solved
from automl_cnn.engine.final.fits import FinalFit
from automl_cnn.engine.final.plan import FinalPlan
from automl_cnn.engine.outcome import Outcome
from automl_cnn.engine.records import TrialRecord
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


def score_fits(s: SearchSession, records: list[TrialRecord], fits: list[FinalFit], delivered: TrainedModel) -> Scored:
    """The delivered model and each final fit (its last weights), scored once on test."""
    b = s.bundle
    x_test, y_test = b.test_split()
    by_number = {r.number: r for r in records}
    scored: dict[int, list[float]] = {}
    for f in fits:
        candidate = by_number[f.trial].candidate
        m = TrainedModel.from_weights(candidate, f.weights, b.input_shape, b.class_names, b.mean, b.std)
        scored.setdefault(f.trial, []).append(m.accuracy(x_test, y_test))
    probs = delivered.predict_proba(x_test)
    return Scored(delivered, probs, scored, float((probs.argmax(1) == y_test).mean()))


def deliver(
    s: SearchSession,
    records: list[TrialRecord],
    winner: TrialRecord,
    fits: list[FinalFit],
    plan: FinalPlan | None = None,
) -> SearchResult:
    """Deliver ``plan`` (default: the winner alone) from its final ``fits``."""
    assert winner.profile is not None
    plan = plan or FinalPlan(((winner.number, 1.0),), {}, (), {})
    delivery = build_delivery(s, records, plan, fits)
    scored = score_fits(s, records, fits, delivery.model)
    # the delivered model's test accuracy; with --final-repeats N, also the winner's N fits' (its
    # last weights, each seed alone): the design's spread over seeds
    delivered = scored.delivered_acc
    design = scored.test_accs[winner.number][: s.config.final.final_repeats]
    test_accs = design if len(design) > 1 else [delivered]
    model = scored.model
    val_acc = float(winner.val_acc or 0.0)
    model.metrics = {"val_accuracy": val_acc, "test_accuracy": delivered}
    if delivery.check_accuracy is not None:
        model.metrics["check_accuracy"] = delivery.check_accuracy
    model.info = _model_info(s, winner, delivery)
    plots = _write_folder(s, records, winner, scored)
    reg = _register(s, model, winner, (delivered, test_accs), delivery, scored.probs)
    model_uri, version = reg.uri, reg.version
    s.state.model_uri, s.state.model_version = model_uri, version
    s.state.save()
    summary = _summary(s, records, winner, test_accs, scored.table({r.number: r for r in records}))
    summary["test_accuracy"] = delivered
    summary.update(_delivery_summary(delivery, {r.number: r for r in records}))
    summary.update(model_uri=model_uri, model_version=version, wall_seconds=s.budget.elapsed())
    summary.update(promotion=reg.decision.alias, promotion_reason=reg.decision.reason)
    _write_reports(s, summary, model, records, plots)
    _log_run(s, summary, test_accs)
    return _result(s, summary, model, records, test_accs)


def _result(
    s: SearchSession, summary: dict[str, Any], model: TrainedModel, records: list[TrialRecord], test_accs: list[float]
) -> SearchResult:
    winner = next(r for r in records if r.number == summary["best_trial"])
    return SearchResult(
        model=model,
        candidate=winner.candidate,
        best_trial=winner.number,
        val_accuracy=summary["val_accuracy"],
        test_accuracy=summary["test_accuracy"],
        test_accuracy_std=statistics.stdev(test_accs) if len(test_accs) > 1 else None,
        test_accuracies=test_accs,
        counts=summary["counts"],
        wall_seconds=summary["wall_seconds"],
        out_dir=s.out,
        tracking_uri=s.tracker.shown_uri,
        experiment_id=s.tracker.experiment_id,
        parent_run_id=s.parent_run,
        model_uri=summary["model_uri"],
        model_version=summary["model_version"],
        trials=records,
        data=s.bundle,
        pareto=summary["pareto"],
        final_table=summary["final_table"],
        pick_rule=summary["pick_rule"],
        promotion=summary["promotion"],
        promotion_reason=summary["promotion_reason"],
        val_images=summary["val_images"],
        test_images=summary["test_images"],
        delivered=summary["delivered"],
        notes=summary["notes"],
        warnings=summary["warnings"],
        check_accuracy=summary["check_accuracy"],
        check_images=summary["check_images"],
    )


def _delivery_summary(delivery: Delivery, by_number: dict[int, TrialRecord]) -> dict[str, Any]:
    rows = delivery.rows(by_number)
    return {
        "delivered": rows,
        "ensemble": delivery.model.is_ensemble,
        "notes": delivery.notes,
        "warnings": delivery.warnings,
        "check_accuracy": delivery.check_accuracy,
        "check_images": delivery.check_images,
        "delivered_params": sum(r["params"] or 0 for r in rows),
    }


def _register(
    s: SearchSession,
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
    b = s.bundle
    entry = ModelEntry(
        model.inference_module(),
        _input_example(s),
        _description(s, winner, accuracies, delivery),
        (s.out / "model.json", s.out / "model.safetensors"),
    )
    correct = tuple(bool(c) for c in test_probs.argmax(1) == b.images.y[b.test_idx])  # the test labels
    score = Score(b.fingerprint(), s.split_id, accuracies[0], correct)
    name = s.config.registered_name(b.name, b.input_shape, b.fingerprint())
    hold = "the task is far from solved (see the search's warnings)" if far_from_solved(delivery) else None
    return ModelRegistry(s.tracker).register(s.parent_run, name, entry, score, s.config.tracking.promote, hold)


def _model_info(s: SearchSession, winner: TrialRecord, delivery: Delivery) -> dict[str, Any]:
    assert winner.profile is not None
    return {
        "data": s.bundle.name,
        "fingerprint": s.bundle.fingerprint(),
        "split_seed": s.bundle.split_seed,
        "params": sum(p.numel() for p in delivery.model.network.parameters()),
        "flops": winner.profile.flops,
        "latency_ms": winner.latency_ms,
        "trial": winner.number,
        "members": [
            {"trial": c.trial, "seed": c.seed, "weight": c.weight, "weights": c.source} for c in delivery.choices
        ],
        "mlflow_run_id": s.parent_run,
        "tracking_uri": s.tracker.shown_uri,
    }


def _write_folder(s: SearchSession, records: list[TrialRecord], winner: TrialRecord, scored: Scored) -> dict[str, Path]:
    """The model (weights, record, TorchScript), the tables and the pictures; returns the plots."""
    scored.model.save(s.out)
    scored.model.save_torchscript(s.out / "model.torchscript.pt")
    write_rows(s.out / "trials.csv", trial_rows(records))
    if s.multi_objective:
        write_rows(s.out / "pareto.csv", pareto_rows(records, s.objectives))
    return _plots(s, winner, scored.model, scored.probs.argmax(1), s.out / PLOTS)


def _plots(
    s: SearchSession, winner: TrialRecord, model: TrainedModel, y_pred: np.ndarray, folder: Path
) -> dict[str, Path]:
    b = s.bundle
    plots = viz.study_plots(s.study, folder, multi_objective=s.multi_objective)
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


def _input_example(s: SearchSession) -> np.ndarray:
    raw = s.bundle.test_split()[0][:4]
    return np.ascontiguousarray(raw.astype(np.float32) / 255.0 if raw.dtype == np.uint8 else raw)


def _test_words(delivered: float, design: list[float]) -> str:
    """``0.9933``, or with several seeds ``0.9933 (delivered); this design 0.9920 ± 0.0010 over 3 seeds``."""
    return f"{delivered:.4f}" + (f" (delivered); this design {accuracy_text(design)}" if len(design) > 1 else "")


def _description(
    s: SearchSession, winner: TrialRecord, accuracies: tuple[float, list[float]], delivery: Delivery
) -> str:
    """The registered model version's description (Markdown)."""
    assert winner.profile is not None
    b = s.bundle
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
        f"- found by automl-cnn search run `{s.parent_run}` (trial {winner.number}) on {b.name} "
        f"(fingerprint `{b.fingerprint()}`, split seed {b.split_seed})"
    )


def _summary(
    s: SearchSession,
    records: list[TrialRecord],
    winner: TrialRecord,
    test_accs: list[float],
    final_table: list[dict[str, Any]],
) -> dict[str, Any]:
    assert winner.profile is not None
    counts = Counter(str(r.outcome) for r in records)
    cfg = s.config
    return {
        "data": s.bundle.name,
        "architecture": winner.candidate.architecture.describe(),
        "val_accuracy": float(winner.val_acc or 0.0),
        "test_accuracy_text": accuracy_text(test_accs),
        "test_accuracy": test_accs[0],
        "val_images": len(s.bundle.val_idx),
        "test_images": len(s.bundle.test_idx),
        "params": winner.profile.params,
        "flops": winner.profile.flops,
        "latency_ms": winner.latency_ms,
        "counts": {o.value: counts.get(o.value, 0) for o in (Outcome.COMPLETED, Outcome.PRUNED, Outcome.FAILED)},
        "training": {k: v for k, v in winner.candidate.flat_params().items() if k.startswith(("train.", "augment."))},
        "tracking_uri": s.tracker.shown_uri,
        "experiment": cfg.tracking.experiment,
        "parent_run_id": s.parent_run,
        "fingerprint": s.bundle.fingerprint(),
        "split_seed": s.bundle.split_seed,
        "best_trial": winner.number,
        "objectives": list(cfg.search.objectives),
        "pick_rule": cfg.pick_rule().describe(),
        "pareto": pareto_rows(records, s.objectives) if s.multi_objective else [],
        "final_table": final_table,
    }


def _write_reports(
    s: SearchSession, summary: dict[str, Any], model: TrainedModel, records: list[TrialRecord], plots: dict[str, Path]
) -> None:
    network, shape = model.lead_network, s.bundle.input_shape
    (s.out / "report.md").write_text(search_report(summary, network, shape), encoding="utf-8")
    page = html_report(summary, network, shape, records, plots, s.out)
    (s.out / "report.html").write_text(page, encoding="utf-8")


def _log_run(s: SearchSession, summary: dict[str, Any], test_accs: list[float]) -> None:
    """The parent run's pictures, reports, tables, metrics and tags; ``search.json`` beside them."""
    tracker, parent, out = s.tracker, s.parent_run, s.out
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
        },
    )
    record = {**summary, "test_accuracies": test_accs, "config": s.config.to_params()}
    (out / "search.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
