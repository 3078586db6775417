"""The live panel a user watches during a search, rendered as a terminal would show it."""

from __future__ import annotations

import io

from rich.console import Console

from automl_cnn.engine.budget import Budget
from automl_cnn.engine.progress import Progress


def test_live_panel_shows_counts_running_trials_best_score_and_budget() -> None:
    now = [0.0]
    progress = Progress(live=True, budget=Budget(600.0, clock=lambda: now[0]), trials=20)
    screen = io.StringIO()
    progress.console = Console(file=screen, force_terminal=True, width=100, record=True)
    with progress:
        now[0] = 75.5  # 1:15 into a 10-minute budget
        progress.trial_running("trial-3", "epoch 2/15  val 0.9613")
        progress.trial_running("trial-4", "starting: conv32k3-max2 | gap")
        progress.trial_done("trial-0", "completed", "completed val 0.9787", 0.9787)
        progress.trial_done("trial-1", "pruned", "stopped early at epoch 1/15")
        progress.trial_done("trial-2", "failed", "not trained: too slow")
        progress.trial_done("trial-5", "completed", "completed val 0.9700", 0.97)
    screen_text = progress.console.export_text()
    panel = " ".join(screen_text[screen_text.rindex("automl-cnn: searching") :].split())  # the last frame
    for row in (
        "trials finished │ 4 of 20",
        "completed │ 2",
        "stopped early │ 1",
        "failed │ 1",
        "running │ 2",
        "trial-3 │ epoch 2/15 val 0.9613",
        "best val accuracy │ 0.9787 (trial-0)",
        "elapsed │ 1:15",
        "remaining budget │ 8:4",  # 8:44 and a fraction
    ):
        assert row in panel, (row, panel)
    assert "[1:15] trial-0: completed val 0.9787" in screen_text  # finished trials print above the panel
