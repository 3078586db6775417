"""Opening a search: its MLflow parent run (settings, data, space), and what the user is told first."""

from __future__ import annotations

import time
from typing import Any

from automl_cnn.data import DataBundle
from automl_cnn.engine.config import SearchConfig
from automl_cnn.engine.imbalance import searched_losses
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.session import Plan, Resources, SearchSession, split_id
from automl_cnn.metrics import label
from automl_cnn.services.tracking import MlflowTracker
from automl_cnn.space.schema import SearchSpace
from automl_cnn.training.posthoc import ADJUSTED_FOR


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


def parent_params(cfg: SearchConfig, space: SearchSpace, bundle: DataBundle, resources: Resources) -> dict[str, Any]:
    """The parent run's params: every setting, the space, the data and its split."""
    b, counts = bundle, bundle.counts()
    return {
        **{f"config.{k}": v for k, v in cfg.to_params().items()},
        "config.workers": resources.workers,
        "config.budget_seconds": cfg.budget_seconds(),
        "space.name": space.name,
        "space.source": space.source,
        "data.name": b.name,
        "data.fingerprint": b.fingerprint(),
        "data.split_seed": b.split_seed,
        "data.split": split_id(b),
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


def start_parent_run(plan: Plan, tracker: MlflowTracker, resources: Resources) -> str:
    """Open the search's MLflow run, with its settings, its dataset, the resolved space and the data
    report."""
    parent = tracker.start_run(
        f"search-{plan.bundle.name}-{time.strftime('%Y%m%d-%H%M%S')}",
        parent_params(plan.config, plan.space, plan.bundle, resources),
        {"automl_cnn.role": "search", "automl_cnn.out": str(plan.out)},
    )
    tracker.log_dataset(parent, plan.bundle)
    tracker.log_text(parent, plan.space.to_yaml(), "search_space.yaml")
    tracker.log_text(parent, data_report(plan.bundle), "data_report.txt")
    return parent


def announce(session: SearchSession, records: list[TrialRecord], resumable: list[Any]) -> None:
    """The first lines a user reads: the data, a resume's state, notes on the settings."""
    b, cfg, progress = session.bundle, session.config, session.progress
    for note in b.images.notes:
        progress.message(f"data: {note}")
    counts = b.counts()
    progress.message(
        f"data: {b.name}, {b.num_classes} classes, "
        + ", ".join(f"{k} {sum(v)}" for k, v in counts.items())
        + f" images; per class in train: {counts['train']}"
    )
    for note in session.space.backbone.notes:  # a backbone family training from scratch
        progress.message(f"backbone: {note}")
    metric, why = session.metric
    if metric != "accuracy" or cfg.search.metric != "auto":
        losses = searched_losses(session.space)
        tries = f"; the search also tries {' and '.join(losses)}" if losses else ""
        if metric in ADJUSTED_FOR:
            tries += "; a network trained with the plain loss is scored and delivered with its logits less log(prior)"
        progress.message(f"metric: {label(metric)} ({why}); it chooses, prunes, ensembles and promotes{tries}")
    session.tracker.set_tags(session.parent_run, {"automl_cnn.metric": metric})
    if session.resumed:
        progress.message(
            f"resuming {session.out}: {len(records)} trials finished, {len(resumable)} to continue, "
            f"{session.state.elapsed:.0f} s of the budget spent"
        )
    limits = [name for name in ("max_params", "max_flops", "max_latency_ms") if getattr(cfg.limits, name)]
    if limits and cfg.search.sampler != "tpe":
        progress.message(
            f"note: candidates over --{limits[0].replace('_', '-')} are never trained, but only the tpe "
            f"sampler learns to avoid them; {cfg.search.sampler} keeps proposing some"
        )
    if session.data_ladder is not None:
        progress.message(
            f"data-size fidelity (--data-fidelity): {session.data_ladder.describe()}; final fits train on all of it"
        )
    goals = ", ".join(label(session.metric[0]) if o == "accuracy" else o for o in cfg.search.objectives)
    progress.message(
        f"searching {session.space.name} on {b.name} {b.input_shape} with {session.resources.workers} worker(s) "
        f"for {goals}; MLflow run {session.parent_run}; output {session.out}"
    )
