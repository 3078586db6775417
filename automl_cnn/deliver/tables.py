"""The search's tables as CSV files: every trial, and the Pareto front with several objectives."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from automl_cnn.engine.final.fits import front
from automl_cnn.engine.records import TrialRecord


def trial_rows(records: list[TrialRecord]) -> list[dict[str, Any]]:
    """One row per trial: outcome, score, size, time, architecture, reason."""
    return [
        {
            "trial": r.number,
            "outcome": str(r.outcome),
            "val_accuracy": "" if r.val_acc is None else f"{r.val_acc:.4f}",
            "epochs": len(r.history),
            "params": r.profile.params if r.profile else "",
            "flops": r.profile.flops if r.profile else "",
            "latency_ms": "" if r.latency_ms is None else f"{r.latency_ms:.3f}",
            "seconds": f"{r.seconds:.1f}",
            "architecture": r.candidate.architecture.describe(),
            "reason": r.reason,
        }
        for r in records
    ]


def pareto_rows(records: list[TrialRecord], objectives: tuple[str, ...]) -> list[dict[str, Any]]:
    """The Pareto front of the completed trials, most accurate first."""
    members = front(records, objectives)
    rows = [
        {
            "trial": r.number,
            **{o: r.objective(o) for o in objectives},
            "architecture": r.candidate.architecture.describe(),
        }
        for r in members
    ]
    return sorted(rows, key=lambda row: -row["accuracy"])


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
