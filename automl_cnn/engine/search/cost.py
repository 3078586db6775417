"""How long a candidate will take to train, from its FLOPs and the epochs measured so far.

Used to keep a time-budgeted search from spending its budget on networks it cannot afford:
a candidate whose training would take more than a share of the budget is stopped (after its
first epoch), or not started at all once the measured speed of this machine says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CostModel:
    n_train: int
    n_val: int
    rates: list[float] = field(default_factory=list)  # FLOPs of training work per second

    def work(self, flops: int) -> float:
        """FLOPs of one epoch: forward + backward (about 3x forward) on train, forward on val."""
        return float(flops) * (3 * self.n_train + self.n_val)

    def observe(self, flops: int, epoch_seconds: float, share: float = 1.0) -> None:
        """One epoch's time; ``share``: its work as a share of a full-data epoch's."""
        if flops > 0 and epoch_seconds > 0:
            self.rates.append(self.work(flops) * share / epoch_seconds)

    def lower_bound_seconds(self, flops: int, epochs: float) -> float | None:
        """A lower bound of the training time of ``epochs`` full-data epochs (a fraction where
        some train on a subset): at the fastest rate measured so far (large networks reach it;
        small ones are dominated by per-batch overhead)."""
        if len(self.rates) < 3:
            return None
        return self.work(flops) * epochs / max(self.rates)
