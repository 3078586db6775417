"""The run's time budget, on one clock: every time question the run asks is answered here.

``--time-budget`` covers the whole run. The clock starts when the request comes in (before the
data loads and Ray starts: ``Plan.started``), from
the seconds earlier drivers of the run spent (a resume: ``run.json``'s ``elapsed``, see
:meth:`automl_cnn.engine.runstate.RunState.open_budget`, which also writes the time spent
with every save). From it:

* **elapsed** and **left**: what the live panel and the summary show;
* a **trial's cap**: no trial may take more than :data:`MAX_TRIAL_SHARE` of the budget;
* the **search deadline**: the search phase ends early enough for the final fits it will most
  likely need (their estimate is the caller's, from the trials' records:
  :mod:`automl_cnn.engine.estimates`) and the export reserve;
* the **time left for fitting**: the final phase's share, what is left less the export reserve;
* the **export reserve**: :data:`EXPORT_RESERVE_SECONDS` for model export, plots, logging and
  registration after the final fit.

Without a time budget (``--trials`` alone) nothing is capped and the search never runs out of time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_TRIAL_SHARE = 1 / 3  # with a time budget, no trial may take more than this share of it
EXPORT_RESERVE_SECONDS = 20.0  # model export, plots, logging and registration after the final fit

Clock = Callable[[], float]


@dataclass
class Budget:
    """``seconds``: the whole run's time budget (None: no time limit); ``spent``: the seconds
    earlier drivers of this run used; ``clock``: this process's clock (monotonic seconds);
    ``started``: when this driver's share began, on that clock (None: when the budget is made)."""

    seconds: float | None = None
    spent: float = 0.0
    clock: Clock = field(default=time.monotonic, repr=False, compare=False)
    started: float | None = field(default=None, repr=False, compare=False)  # a clock reading (None: now)
    _start: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._start = self.clock() if self.started is None else min(self.started, self.clock())

    # -- the clock -----------------------------------------------------------------------------
    def elapsed(self) -> float:
        """Seconds of the budget used so far, by this driver and the ones before it."""
        return self.spent + (self.clock() - self._start)

    def left(self) -> float | None:
        """Seconds of the budget left (None: no time budget)."""
        return None if self.seconds is None else max(0.0, self.seconds - self.elapsed())

    # -- the phases' shares ----------------------------------------------------------------------
    @property
    def trial_cap(self) -> float | None:
        """The most seconds one trial may train (None: no time budget)."""
        return None if self.seconds is None else MAX_TRIAL_SHARE * self.seconds

    @property
    def export_reserve(self) -> float:
        """Seconds kept after the final fits for export, plots, logging and registration."""
        return EXPORT_RESERVE_SECONDS

    def search_deadline(self, final_seconds: float) -> float:
        """The elapsed time (:meth:`elapsed`) at which the search must stop so that final fits of
        ``final_seconds`` and the export reserve still fit (infinite without a time budget)."""
        if self.seconds is None:
            return math.inf
        return self.seconds - final_seconds - self.export_reserve

    def fit_time_left(self) -> float | None:
        """Seconds left for the final phase's fits: what is left less the export reserve (None:
        no time budget)."""
        return None if self.seconds is None else max(0.0, self.seconds - self.elapsed() - self.export_reserve)
