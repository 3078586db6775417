"""What the user sees while a search runs: a live panel on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from automl_cnn.engine.budget import Budget


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    return (
        f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60}:{seconds % 60:02d}"
    )


class Progress:
    """Counts trials by outcome, tracks the best score, and shows them with the time elapsed and
    left, read from the run's :class:`Budget`."""

    def __init__(self, live: bool | None, budget: Budget, trials: int | None, quiet: bool = False) -> None:
        self.console = Console(stderr=False)
        self.live_mode = self.console.is_terminal if live is None else live
        self.quiet = quiet
        self.budget = budget
        self.trials = trials
        self.counts: Counter[str] = Counter()
        self.running: dict[str, str] = {}  # job -> status text
        self.best: float | None = None
        self.best_label = ""
        self.phase = "searching"
        self._live: Live | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> Progress:
        if self.live_mode and not self.quiet:
            self._live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(*exc)
            self._live = None

    # -- events --------------------------------------------------------------------------------
    def message(self, text: str) -> None:
        if self.quiet:
            return
        if self._live is not None:
            self._live.console.print(text)
        else:
            print(text, file=sys.stdout, flush=True)

    def trial_running(self, job: str, text: str) -> None:
        self.running[job] = text
        self.refresh()

    def trial_done(self, job: str, outcome: str, text: str, score: float | None = None) -> None:
        self.running.pop(job, None)
        self.counts[outcome] += 1
        if score is not None and outcome == "completed" and (self.best is None or score > self.best):
            self.best = score
            self.best_label = job
        self.message(f"[{_fmt_seconds(self.elapsed)}] {job}: {text}")
        self.refresh()

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.message(f"[{_fmt_seconds(self.elapsed)}] {phase}")
        self.refresh()

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    # -- state ---------------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        return self.budget.elapsed()

    @property
    def remaining(self) -> float | None:
        return self.budget.left()

    def _render(self) -> Table:
        table = Table(title=f"automl-cnn: {self.phase}", show_header=False, expand=False, min_width=64)
        table.add_column(style="bold")
        table.add_column()
        finished = sum(self.counts.values())
        total = f" of {self.trials}" if self.trials else ""
        table.add_row("trials finished", f"{finished}{total}")
        table.add_row("  completed", str(self.counts["completed"]))
        table.add_row("  stopped early", str(self.counts["pruned"]))
        table.add_row("  failed", str(self.counts["failed"]))
        table.add_row("running", str(len(self.running)))
        for job, text in list(self.running.items())[:8]:
            table.add_row(f"  {job}", text)
        best = "-" if self.best is None else f"{self.best:.4f} ({self.best_label})"
        table.add_row("best val accuracy", best)
        table.add_row("elapsed", _fmt_seconds(self.elapsed))
        table.add_row("remaining budget", _fmt_seconds(self.remaining))
        return table
