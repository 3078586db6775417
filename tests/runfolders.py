"""Reading a search's run folder from outside, while its driver may still be writing it.

The kill and head-loss tests pick their moment from the run folder: which trials have ended
(``trials.jsonl``) and which are part-way with a checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def ended_trials(run: Path) -> dict[int, dict[str, Any]]:
    """The ended trials' records by number; a last line the driver is still writing is not one yet."""
    path = run / "trials.jsonl"
    records: dict[int, dict[str, Any]] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        records[record["number"]] = record
    return records


def checkpointed(run: Path) -> list[int]:
    """Trials with a checkpoint on disk (part-way, or just ended and not yet cleaned up)."""
    return sorted(int(meta.stem.split("-")[1]) for meta in (run / "checkpoints").glob("trial-*.json"))


def mid_trials(run: Path, epochs: int, left: int = 2) -> list[int]:
    """Trials part-way with ``left`` epochs or more still to train: each has a checkpoint and no
    record yet, so none can finish in the moment it takes to kill a process after this returns
    (a trial whose checkpoint is still on disk may have just finished: its record comes first)."""
    done = ended_trials(run)
    found = []
    for meta in sorted((run / "checkpoints").glob("trial-*.json")):
        number = int(meta.stem.split("-")[1])
        try:
            trained = len(json.loads(meta.read_text()))
        except (OSError, json.JSONDecodeError):  # being replaced, or just dropped
            continue
        if number not in done and trained <= epochs - left and meta.with_suffix(".pt").is_file():
            found.append(number)
    return found
