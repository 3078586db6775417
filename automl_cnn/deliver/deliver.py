"""After the final fit: score on test, write the output folder, log and register in MLflow."""

from __future__ import annotations

import csv
import json
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from automl_cnn.data import DataBundle
from automl_cnn.deliver import viz
from automl_cnn.deliver.report import html_report, search_report
from automl_cnn.deliver.result import SearchResult, accuracy_text
from automl_cnn.engine.config import SearchConfig
from automl_cnn.engine.final import FinalFit, front
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.runstate import RunState
from automl_cnn.model.trained import TrainedModel
from automl_cnn.services.tracking import MlflowTracker
from automl_cnn.space.schema import SearchSpace

PLOTS = "plots"


def data_report(bundle: DataBundle) -> str:
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


def write_trials_csv(path: Path, records: list[TrialRecord]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "trial",
                "outcome",
                "val_accuracy",
                "epochs",
                "params",
                "flops",
                "latency_ms",
                "seconds",
                "architecture",
                "reason",
            ]
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
                    "" if r.latency_ms is None else f"{r.latency_ms:.3f}",
                    f"{r.seconds:.1f}",
                    r.candidate.architecture.describe() if r.candidate else "",
                    r.reason,
                ]
            )


def _plots(
    study: optuna.Study, winner: TrialRecord, model: TrainedModel, bundle: DataBundle, y_pred: np.ndarray, folder: Path
) -> dict[str, Path]:
    plots = viz.study_plots(study, folder, multi_objective=len(study.directions) > 1)
    title = f"trial {winner.number}: {winner.candidate.architecture.describe() if winner.candidate else ''}"
    if winner.history:
        plots["learning_curves"] = viz.learning_curves(winner.history, folder / "learning_curves.png", title)
    _, y_test = bundle.test_split()
    plots["confusion_matrix"] = viz.confusion_matrix(
        y_test, y_pred, bundle.class_names, folder / "confusion_matrix.png"
    )
    plots["first_layer_filters"] = viz.first_layer_filters(model.network, folder / "first_layer_filters.png")
    plots["architecture"] = viz.architecture_diagram(
        model.network,
        bundle.input_shape,
        folder / "architecture.png",
        title,  # type: ignore[arg-type]
    )
    return plots


def deliver(
    cfg: SearchConfig,
    bundle: DataBundle,
    space: SearchSpace,
    study: optuna.Study,
    tracker: MlflowTracker,
    parent: str,
    out: Path,
    records: list[TrialRecord],
    winner: TrialRecord,
    fits: list[FinalFit],
    t0: float,
    state: RunState | None = None,
) -> SearchResult:
    assert winner.candidate is not None and winner.profile is not None
    x_test, y_test = bundle.test_split()
    by_number = {r.number: r for r in records}
    scored: dict[int, list[float]] = {}
    model: TrainedModel | None = None
    probs = np.zeros((0, bundle.num_classes))
    for f in fits:
        rec = by_number[f.trial]
        assert rec.candidate is not None
        m = TrainedModel.from_weights(
            rec.candidate, f.weights, bundle.input_shape, bundle.class_names, bundle.mean, bundle.std
        )
        p = m.predict_proba(x_test)
        scored.setdefault(f.trial, []).append(float((p.argmax(1) == y_test).mean()))
        if model is None and f.trial == winner.number:
            model, probs = m, p
    assert model is not None
    test_accs = scored[winner.number]
    final_table = [
        {
            "trial": n,
            "val_accuracy": by_number[n].val_acc,
            "test_accuracy": accuracy_text(accs),
            "test_mean": statistics.mean(accs),
            "params": by_number[n].profile.params if by_number[n].profile else None,  # type: ignore[union-attr]
            "architecture": by_number[n].candidate.architecture.describe(),  # type: ignore[union-attr]
        }
        for n, accs in scored.items()
    ]
    pareto = _pareto_rows(records, cfg) if cfg.multi_objective else []
    counts = Counter(r.outcome for r in records)
    counts_by = {k: counts.get(k, 0) for k in ("completed", "pruned", "failed")}
    val_acc = float(winner.val_acc or 0.0)
    model.metrics = {"val_accuracy": val_acc, "test_accuracy": test_accs[0]}
    model.info = {
        "data": bundle.name,
        "fingerprint": bundle.fingerprint(),
        "split_seed": bundle.split_seed,
        "params": winner.profile.params,
        "flops": winner.profile.flops,
        "latency_ms": winner.latency_ms,
        "trial": winner.number,
        "mlflow_run_id": parent,
        "tracking_uri": tracker.uri,
    }
    model.save(out)
    model.save_torchscript(out / "model.torchscript.pt")
    write_trials_csv(out / "trials.csv", records)
    if pareto:
        _write_rows(out / "pareto.csv", pareto)
    plots = _plots(study, winner, model, bundle, probs.argmax(1), out / PLOTS)

    registered = cfg.registered_name(bundle.name)
    description = (
        f"**{winner.candidate.architecture.describe()}**\n\n"
        f"- validation accuracy {val_acc:.4f} (search), test accuracy {accuracy_text(test_accs)} (held out)\n"
        f"- {winner.profile.params:,} parameters, {winner.profile.flops:,} FLOPs per image, "
        f"{winner.latency_ms or 0:.2f} ms per image on one CPU thread\n"
        f"- input {'x'.join(map(str, bundle.input_shape))} in [0, 1], output probabilities over "
        f"{bundle.num_classes} classes\n"
        f"- found by automl-cnn search run `{parent}` (trial {winner.number}) on {bundle.name} "
        f"(fingerprint `{bundle.fingerprint()}`, split seed {bundle.split_seed})"
    )
    raw = x_test[:4]
    example = np.ascontiguousarray(raw.astype(np.float32) / 255.0 if raw.dtype == np.uint8 else raw)
    model_uri, version = tracker.log_model(  # registered once, even when resumed after a crash
        parent,
        model.inference_module(),
        example,
        registered,
        description,
        [out / "model.json", out / "model.safetensors"],
    )
    wall = time.monotonic() - t0
    summary: dict[str, Any] = {
        "data": bundle.name,
        "architecture": winner.candidate.architecture.describe(),
        "val_accuracy": val_acc,
        "test_accuracy_text": accuracy_text(test_accs),
        "params": winner.profile.params,
        "flops": winner.profile.flops,
        "latency_ms": winner.latency_ms,
        "counts": counts_by,
        "wall_seconds": wall,
        "training": {k: v for k, v in winner.candidate.flat_params().items() if k.startswith(("train.", "augment."))},
        "tracking_uri": tracker.uri,
        "experiment": cfg.experiment,
        "parent_run_id": parent,
        "model_uri": model_uri,
        "model_version": version,
        "fingerprint": bundle.fingerprint(),
        "split_seed": bundle.split_seed,
        "best_trial": winner.number,
        "objectives": list(cfg.objectives),
        "pick_rule": cfg.pick_rule().describe(),
        "pareto": pareto,
        "final_table": final_table,
    }
    report = search_report(summary, model.network, bundle.input_shape)  # type: ignore[arg-type]
    (out / "report.md").write_text(report, encoding="utf-8")
    page = html_report(summary, model.network, bundle.input_shape, records, plots, out)  # type: ignore[arg-type]
    (out / "report.html").write_text(page, encoding="utf-8")
    for path in plots.values():
        tracker.log_artifact(parent, path, PLOTS)
    tracker.log_text(parent, report, "report.md")
    tracker.log_artifact(parent, out / "report.html")
    tracker.log_artifact(parent, out / "trials.csv")
    if pareto:
        tracker.log_artifact(parent, out / "pareto.csv")
    tracker.log_artifact(parent, out / "model.torchscript.pt", "export")
    metrics = {
        "best_val_accuracy": val_acc,
        "test_accuracy": test_accs[0],  # the delivered model's (the first seed's fit)
        "wall_seconds": wall,
        "best_params": winner.profile.params,
        "best_flops": winner.profile.flops,
        **{f"trials_{k}": v for k, v in counts_by.items()},
    }
    if winner.latency_ms is not None:
        metrics["best_latency_ms"] = winner.latency_ms
    if len(test_accs) > 1:  # --final-repeats: the winner's design over several seeds
        metrics["test_accuracy_mean"] = statistics.mean(test_accs)
        metrics["test_accuracy_std"] = statistics.stdev(test_accs)
    tracker.log_metrics(parent, metrics)
    tracker.set_tags(parent, {"automl_cnn.best_trial": winner.number, "automl_cnn.model_uri": model_uri})
    if state is not None:
        state.model_uri, state.model_version = model_uri, version
    (out / "search.json").write_text(
        json.dumps({**summary, "test_accuracies": test_accs, "config": cfg.to_params()}, indent=2, default=str),
        encoding="utf-8",
    )
    return SearchResult(
        model=model,
        candidate=winner.candidate,
        best_trial=winner.number,
        val_accuracy=val_acc,
        test_accuracy=test_accs[0],
        test_accuracy_std=statistics.stdev(test_accs) if len(test_accs) > 1 else None,
        test_accuracies=test_accs,
        counts=counts_by,
        wall_seconds=wall,
        out_dir=out,
        tracking_uri=tracker.uri,
        experiment_id=tracker.experiment_id,
        parent_run_id=parent,
        model_uri=model_uri,
        model_version=version,
        trials=records,
        data=bundle,
        pareto=pareto,
        final_table=final_table,
        pick_rule=cfg.pick_rule().describe(),
    )


def _pareto_rows(records: list[TrialRecord], cfg: SearchConfig) -> list[dict[str, Any]]:
    """The Pareto front of the completed trials, most accurate first."""
    members = front(records, cfg.objectives)
    rows = [
        {
            "trial": r.number,
            **{o: r.objective(o) for o in cfg.objectives},
            "architecture": r.candidate.architecture.describe() if r.candidate else "",
        }
        for r in members
    ]
    return sorted(rows, key=lambda row: -row["accuracy"])


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
