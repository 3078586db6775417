"""A folder with one sub-folder per class (the ImageFolder layout)."""

from __future__ import annotations

import logging
from pathlib import Path

from automl_cnn.data.files import Entry, is_image_name
from automl_cnn.errors import DataError

log = logging.getLogger("automl_cnn.data")


def folder_entries(root: Path) -> tuple[list[Entry], tuple[str, ...], list[str]]:
    """``(path, label)`` for every image file under ``root/<class>/``, the class names (sorted),
    and notes (files ignored because they are not images)."""
    if not any(root.iterdir()):
        raise DataError(f"{root}: the folder is empty; put each class's images in a sub-folder of it")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class sub-folders found; put each class's images in a sub-folder of it")
    entries: list[Entry] = []
    ignored: list[Path] = []
    for label, name in enumerate(classes):
        found: list[Path] = []
        for p in sorted((root / name).rglob("*")):
            if p.is_dir() or p.name.startswith("."):
                continue
            (found if is_image_name(p) else ignored).append(p)
        if not found:
            raise DataError(f"{root / name}: class folder has no images; add images or remove the folder")
        entries += [Entry(p, label) for p in found]
    notes = []
    if ignored:
        examples = ", ".join(p.name for p in ignored[:3])
        notes.append(f"ignored {len(ignored)} non-image file(s) (e.g. {examples})")
        log.warning("%s: ignored %d non-image file(s) (e.g. %s)", root, len(ignored), examples)
    if len(classes) < 2:
        raise DataError(f"{root}: found a single class ({classes[0]!r}); a classifier needs at least two class folders")
    return entries, tuple(classes), notes
