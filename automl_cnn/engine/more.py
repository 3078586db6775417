"""More time for a finished search (``automl-cnn resume RUN --more 10m``).

A finished run folder is opened again as a run in its trials phase, with its time budget
extended: the new budget is the time the run has spent so far plus ``--more``. The search loop
then continues the same Optuna study (finished trials are neither rerun nor forgotten; the
sampler proposes from all of them), the final phase decides again over every trial, and the
delivered model is registered as a new version of the same registered model, promoted by the
usual ``--promote`` rule.

Where the search learned its training length, the extra time first extends its best trials:
the ceiling grows one step and the trials it kept at the old one continue from their checkpoints
(:mod:`automl_cnn.engine.search.extension`; ``app.resume`` asks it after this module).

What is reset: the final phase's plan and its fits (their checkpoints and saved weights: a
final fit of this round trains again for the time this round leaves). A ``--trials`` limit no
longer applies: the extra time decides how many trials run. Each round is recorded in
``run.json`` (``extra["rounds"]``: the time spent and the version delivered before it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automl_cnn.engine.config import parse_duration
from automl_cnn.engine.runstate import CHECKPOINTS, RunState
from automl_cnn.errors import UserInputError

FINAL_JOB_PREFIXES = ("final-", "second-seed-")  # checkpoints and weights of the final phase's fits


def more_seconds(more: str | float | int) -> float:
    """``--more``'s duration in seconds (``10m``, ``90s``, ``1h``, or a number of seconds)."""
    seconds = parse_duration(more, "--more")
    if seconds is None or seconds <= 0:
        raise UserInputError(f"--more must be a positive duration such as 10m or 90s, not {more!r}")
    return seconds


def give_more_time(state: RunState, more: str | float | int) -> dict[str, Any]:
    """Reopen the finished run ``state`` for ``more`` extra time; returns the settings that
    change (the new ``time_budget``, and ``trials`` lifted). Writes nothing: the session that
    opens the run saves it."""
    seconds = more_seconds(more)
    if state.state != "finished":
        raise UserInputError(
            f"{state.folder}: this search has not finished; resume it without --more first "
            f"(automl-cnn resume {state.folder})"
        )
    rounds = list(state.extra.get("rounds", []))
    rounds.append(
        {"elapsed": round(state.elapsed, 1), "model_uri": state.model_uri, "model_version": state.model_version}
    )
    state.extra = {**state.extra, "rounds": rounds}
    state.state, state.phase = "running", "trials"
    state.final_jobs, state.ensemble, state.final_notes = [], [], []
    state.final_check, state.final_seeds = {}, 1
    state.model_uri, state.model_version = "", ""
    _drop_final_fits(state.folder)
    changed: dict[str, Any] = {"time_budget": state.elapsed + seconds, "trials": None}
    budget = state.config.get("budget")  # run.json keeps the config by group (an older one flat)
    (budget if isinstance(budget, dict) else state.config).update(changed)
    return changed


def earlier_versions(state: RunState) -> set[str]:
    """The model versions earlier rounds of this run registered (a new round registers its own)."""
    return {str(r["model_version"]) for r in state.extra.get("rounds", []) if r.get("model_version")}


def _drop_final_fits(folder: Path) -> None:
    for path in (folder / CHECKPOINTS).glob("*"):
        if path.name.startswith(FINAL_JOB_PREFIXES):
            path.unlink(missing_ok=True)
