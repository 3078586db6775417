"""A CSV manifest of ``path,label`` rows; paths are relative to the CSV's folder."""

from __future__ import annotations

import csv
from pathlib import Path

from automl_cnn.data.files import Entry
from automl_cnn.errors import DataError

REQUIRED = ("path", "label")


def manifest_entries(csv_path: Path) -> tuple[list[Entry], tuple[str, ...], list[str]]:
    root = csv_path.parent.resolve()
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise DataError(
                    f"{csv_path}: missing column(s) {', '.join(missing)}; the first row must be a header "
                    "with columns path,label"
                )
            rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{csv_path}: cannot read the CSV ({exc.__class__.__name__}); check the file") from None
    if not rows:
        raise DataError(f"{csv_path}: the manifest has no rows; add one path,label row per image")
    labels = sorted({r["label"] for r in rows})
    if "" in labels:
        line = next(i for i, r in enumerate(rows, start=2) if not r["label"])
        raise DataError(f"{csv_path}: line {line} has an empty label; give every image a label")
    index = {name: i for i, name in enumerate(labels)}
    entries = []
    for line, row in enumerate(rows, start=2):
        rel = row["path"]
        path = (root / rel).resolve()
        if not path.is_relative_to(root):
            raise DataError(
                f"{csv_path}: line {line}: path {rel!r} points outside the manifest's folder; "
                "keep images inside it and use relative paths"
            )
        if not path.exists() and not path.is_symlink():
            raise DataError(f"{csv_path}: line {line}: no file at {rel!r}; fix the path or remove the row")
        entries.append(Entry(path, index[row["label"]]))
    if len(labels) < 2:
        raise DataError(f"{csv_path}: found a single class ({labels[0]!r}); a classifier needs at least two labels")
    return entries, tuple(labels), []
