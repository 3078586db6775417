"""The time budget: when the search must stop so that the final fit and the export still fit.

``--time-budget`` covers the whole run. The search phase ends early enough for the final fit of
the current leader (its measured training time, scaled to train + validation and to the threads
the final fit gets) and a fixed reserve for export, plots and registration.
"""

from __future__ import annotations

import math

from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.session import SearchSession

EXPORT_RESERVE_SECONDS = 20.0  # model export, plots, logging and registration after the final fit


def final_seconds_estimate(records: list[TrialRecord], ratio: float, rounds: int) -> float:
    """How long the final fit of the current leader will take (0 before any epoch ran)."""
    scored = [r for r in records if r.history and not r.too_slow and r.duplicate_of is None]
    completed = [r for r in scored if r.outcome == "completed"]
    if not completed and not scored:
        return 0.0
    leader = max(completed or scored, key=lambda r: r.val_acc or 0.0)
    return (leader.projected_seconds() or 0.0) * ratio * rounds


class SearchDeadline:
    """``deadline(records)``: the monotonic time at which the search phase must stop."""

    def __init__(self, session: SearchSession, t0: float) -> None:
        cfg, bundle = session.config, session.bundle
        self.t0, self.budget = t0, session.budget
        n_train = len(bundle.train_idx)
        speedup = session.final_speedup(cfg.final_repeats * cfg.final_top_k)
        self.ratio = (n_train + len(bundle.val_idx)) / n_train / speedup
        self.rounds = session.final_rounds()

    def __call__(self, records: list[TrialRecord]) -> float:
        if self.budget is None:
            return math.inf
        final = final_seconds_estimate(records, self.ratio, self.rounds)
        return self.t0 + self.budget - final - EXPORT_RESERVE_SECONDS
