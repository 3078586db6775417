"""A CSV manifest of ``path,label`` rows; paths are relative to the CSV's folder."""

from __future__ import annotations

import csv
from pathlib import Path

from automl_cnn.data.files import Entry
from automl_cnn.errors import DataError

REQUIRED = ("path", "label")


def _rows(csv_path: Path) -> list[tuple[int, dict[str, str]]]:
    """The CSV's rows, each with the line it ends on; header names lower-cased, cells stripped."""
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
            rows = []
            for row in reader:
                if None in row:  # DictReader files the cells past the header's under the key None
                    raise DataError(
                        f"{csv_path}: line {reader.line_num} has {len(header) + len(row[None])} fields but the "
                        f"header has {len(header)}; quote a path or label that contains a comma, or remove the "
                        "extra fields"
                    )
                rows.append((reader.line_num, {k.strip().lower(): (v or "").strip() for k, v in row.items()}))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{csv_path}: cannot read the CSV ({exc.__class__.__name__}); check the file") from None
    return rows


def manifest_entries(csv_path: Path) -> tuple[list[Entry], tuple[str, ...], list[str]]:
    root = csv_path.parent.resolve()
    rows = _rows(csv_path)
    if not rows:
        raise DataError(f"{csv_path}: the manifest has no rows; add one path,label row per image")
    labels = sorted({r["label"] for _, r in rows})
    if "" in labels:
        line = next(n for n, r in rows if not r["label"])
        raise DataError(f"{csv_path}: line {line} has an empty label; give every image a label")
    index = {name: i for i, name in enumerate(labels)}
    entries = []
    for line, row in rows:
        rel = row["path"]
        if not rel:  # would resolve to the manifest's own folder
            raise DataError(
                f"{csv_path}: line {line} has an empty path; give every image's path, relative to the "
                "manifest's folder, or remove the row"
            )
        path = (root / rel).resolve()
        if not path.is_relative_to(root):
            raise DataError(
                f"{csv_path}: line {line}: path {rel!r} points outside the manifest's folder; "
                "keep images inside it and use relative paths"
            )
        if not path.exists() and not path.is_symlink():
            raise DataError(f"{csv_path}: line {line}: no file at {rel!r}; fix the path or remove the row")
        if path.is_dir():
            raise DataError(f"{csv_path}: line {line}: {rel!r} is a folder, not an image; give one image file per row")
        entries.append(Entry(path, index[row["label"]]))
    if len(labels) < 2:
        raise DataError(f"{csv_path}: found a single class ({labels[0]!r}); a classifier needs at least two labels")
    return entries, tuple(labels), []
