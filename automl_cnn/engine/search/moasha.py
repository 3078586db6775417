"""Early stopping with several objectives: asynchronous multi-objective successive halving.

Optuna's pruners compare one number per trial and refuse intermediate reports in a
multi-objective study, so with ``--objective accuracy,params`` (or ``flops``, ``latency``) the
driver applies this rule itself: MOASHA (Schmucker et al. 2021, "Multi-objective multi-fidelity
hyperparameter optimization with application to fairness"; Salinas et al. 2021), as Syne Tune's
``MOASHA`` scheduler implements it, on the rungs the single-objective pruner of the same name uses.

* **Rungs.** A bracket has rungs at epochs ``r_min * eta**(k + s)`` below the space's largest
  epoch count (``--pruner asha``: one bracket, ``s = 0``, ``r_min = 1``, ``eta = 3``: epochs 1, 3,
  9, ...; ``hyperband``: Optuna's brackets ``s = 0, 1, ...`` with its budgets, a trial's bracket
  fixed by its number; ``median``: a rung at every epoch keeping the better half; ``none``: no
  rule).
* **Record.** A trial reaching a rung is recorded there once, with its objective vector, every
  entry minimised: the validation error at that epoch and the static objectives (parameters,
  FLOPs, latency), which are known before training.
* **Rank.** The trials recorded at the rung are sorted into non-dominated fronts (Deb et al.
  2002's fast non-dominated sort); within a front the tie-breaker is **NSGA-II crowding
  distance** (Deb et al. 2002): the larger the better, each front's extreme points first. Syne
  Tune's default tie-breaker is an epsilon-net on raw values; crowding distance divides each
  objective by its range on the front, so an error in [0, 1] and a parameter count in the
  millions weigh alike, and it is deterministic.
* **Decide (asynchronously, as ASHA).** With ``n`` trials recorded at the rung (this one
  included) and ``n >= min_trials`` (``eta`` by default), the trial continues when fewer than
  ``n // eta`` of them rank strictly ahead of it (ties favour it); otherwise it stops. With fewer
  than ``min_trials`` recorded there is too little to decide from, and it continues. (Optuna's
  ``SuccessiveHalvingPruner`` keeps only the best of the first ``eta - 1``; with several
  objectives "the best" of two is often undefined, so this rule waits.) Decisions are never
  revisited: a trial that continued stays recorded at the rung, whatever arrives later.

The module is pure: the driver passes trial numbers, epochs and vectors, and on a resume it
replays the trials' histories to rebuild the rungs.
"""

from __future__ import annotations

import binascii
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from automl_cnn.engine.objectives import dominates

# the rung settings of services.study.make_pruner, for the same meaning of --pruner
# (tests/test_moasha.py checks that they agree)
MIN_EPOCHS = 1  # SuccessiveHalvingPruner / HyperbandPruner min_resource
ETA = 3  # their reduction_factor
MEDIAN_MIN_TRIALS = 5  # MedianPruner(n_startup_trials=4): four others and this one

Vector = tuple[float, ...]
_MIN = ("minimize",)


@dataclass(frozen=True)
class Bracket:
    """Where a bracket's rungs lie and how many trials each keeps."""

    rungs: tuple[int, ...]  # epochs, ascending
    eta: int = ETA  # a rung keeps the best 1/eta
    min_trials: int = ETA  # fewer recorded at a rung: no decision yet


@dataclass(frozen=True)
class Verdict:
    """What one rung decided about one trial."""

    stop: bool
    epoch: int  # the rung
    trials: int  # recorded at the rung, this one included
    keep: int  # how many of them go on
    ahead: int  # ranked strictly ahead of this one
    dominated_by: int

    def describe(self) -> str:
        others = f"of the {self.trials - 1} other trials at this rung"
        kept = f"which keeps the best {self.keep}"
        if self.dominated_by:
            return f"dominated by {self.dominated_by} {others}, {kept}"
        return f"not dominated but crowded out on the best front: {self.ahead} {others} rank ahead, {kept}"


def rung_epochs(min_epochs: int, eta: int, start: int, max_epochs: int) -> tuple[int, ...]:
    """``min_epochs * eta**(k + s)`` for k = 0, 1, ... below ``max_epochs`` (reaching the last
    epoch is completing, not a rung)."""
    out: list[int] = []
    epoch = min_epochs * eta**start
    while epoch < max_epochs:
        out.append(epoch)
        epoch *= eta
    return tuple(out)


@dataclass
class MultiObjectiveHalving:
    """The rungs of one search and what is recorded at them."""

    name: str  # as the stop reason names it, e.g. "multi-objective ASHA"
    brackets: tuple[Bracket, ...]
    shares: tuple[int, ...] = (1,)  # a bracket's share of the trials
    _recorded: list[dict[int, dict[int, Vector]]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        assert len(self.shares) == len(self.brackets) and all(s > 0 for s in self.shares)
        self._recorded = [{} for _ in self.brackets]

    def bracket_of(self, trial: int) -> int:
        """A trial's bracket, fixed by its number (a stable hash, so a resume agrees)."""
        if len(self.brackets) == 1:
            return 0
        slot = binascii.crc32(str(trial).encode()) % sum(self.shares)
        for index, share in enumerate(self.shares):
            if slot < share:
                return index
            slot -= share
        raise AssertionError("unreachable")

    def recorded(self, epoch: int, bracket: int = 0) -> dict[int, Vector]:
        """Trial number -> vector, as recorded at the rung at ``epoch`` of ``bracket``."""
        return dict(self._recorded[bracket].get(epoch, {}))

    def observe(self, trial: int, epoch: int, vector: Sequence[float]) -> Verdict | None:
        """Record ``trial`` at ``epoch`` if that is one of its rungs and it was not recorded there
        yet, and decide whether it goes on; None when there is nothing to decide."""
        index = self.bracket_of(trial)
        bracket = self.brackets[index]
        if epoch not in bracket.rungs or not all(math.isfinite(v) for v in vector):
            return None
        at_rung = self._recorded[index].setdefault(epoch, {})
        if trial in at_rung:  # a retry or a resume repeating an epoch: decided already
            return None
        at_rung[trial] = tuple(float(v) for v in vector)
        return judge(trial, at_rung, epoch, bracket)

    def replay(self, trial: int, curve: Iterable[tuple[int, Sequence[float]]]) -> None:
        """Rebuild the rungs from a trial's history (epoch, vector), deciding nothing."""
        for epoch, vector in curve:
            self.observe(trial, epoch, vector)


def judge(trial: int, at_rung: dict[int, Vector], epoch: int, bracket: Bracket) -> Verdict:
    """Whether ``trial`` (recorded in ``at_rung``) is among the best ``n // eta`` there."""
    ids = list(at_rung)
    points = [at_rung[i] for i in ids]
    me = ids.index(trial)
    n = len(ids)
    dominated_by = sum(dominates(p, points[me], _MIN * len(p)) for p in points)
    if n < bracket.min_trials:
        return Verdict(False, epoch, n, n, 0, dominated_by)
    keep = max(1, n // bracket.eta)
    fronts = non_dominated_fronts(points)
    mine = next(k for k, front in enumerate(fronts) if me in front)
    crowding = crowding_distances(points, fronts[mine])
    ahead = sum(len(front) for front in fronts[:mine])
    ahead += sum(1 for j in fronts[mine] if crowding[j] > crowding[me])
    return Verdict(ahead >= keep, epoch, n, keep, ahead, dominated_by)


def non_dominated_fronts(points: Sequence[Sequence[float]]) -> list[list[int]]:
    """Indices of ``points`` (all minimised) by front: the first front is dominated by none, the
    next by none but the first, ... (Deb et al. 2002's fast non-dominated sort)."""
    n = len(points)
    beats: list[list[int]] = [[] for _ in range(n)]
    beaten = [0] * n
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(points[i], points[j], _MIN * len(points[i])):
                beats[i].append(j)
                beaten[j] += 1
            elif dominates(points[j], points[i], _MIN * len(points[i])):
                beats[j].append(i)
                beaten[i] += 1
    fronts: list[list[int]] = []
    current = [i for i in range(n) if beaten[i] == 0]
    while current:
        fronts.append(current)
        following: list[int] = []
        for i in current:
            for j in beats[i]:
                beaten[j] -= 1
                if beaten[j] == 0:
                    following.append(j)
        current = sorted(following)
    return fronts


def crowding_distances(points: Sequence[Sequence[float]], front: Sequence[int]) -> dict[int, float]:
    """NSGA-II crowding distance of each member of ``front``: per objective, the gap between its
    two neighbours divided by the objective's range on the front, summed; the extreme points of
    every objective get infinity."""
    distance = dict.fromkeys(front, 0.0)
    if len(front) <= 2:
        return dict.fromkeys(front, math.inf)
    for m in range(len(points[front[0]])):
        order = sorted(front, key=lambda i: points[i][m])
        low, high = points[order[0]][m], points[order[-1]][m]
        distance[order[0]] = distance[order[-1]] = math.inf
        if high == low:
            continue
        for before, here, after in zip(order, order[1:], order[2:], strict=False):
            distance[here] += (points[after][m] - points[before][m]) / (high - low)
    return distance


def for_pruner(name: str, max_epochs: int) -> MultiObjectiveHalving | None:
    """The rule that keeps ``--pruner NAME``'s meaning with several objectives (None: ``none``)."""
    if name == "asha":
        return MultiObjectiveHalving("multi-objective ASHA", (Bracket(rung_epochs(MIN_EPOCHS, ETA, 0, max_epochs)),))
    if name == "hyperband":
        n = 1
        while MIN_EPOCHS * ETA**n <= max_epochs:
            n += 1  # Optuna's floor(log_eta(max / min)) + 1 brackets
        brackets = tuple(Bracket(rung_epochs(MIN_EPOCHS, ETA, s, max_epochs)) for s in range(n))
        # Optuna's budget for bracket s: ceil(n * eta**(n - 1 - s) / (n - s))
        shares = tuple(math.ceil(n * ETA ** (n - 1 - s) / (n - s)) for s in range(n))
        return MultiObjectiveHalving("multi-objective Hyperband", brackets, shares)
    if name == "median":
        every = Bracket(tuple(range(MIN_EPOCHS, max_epochs)), eta=2, min_trials=MEDIAN_MIN_TRIALS)
        return MultiObjectiveHalving("the multi-objective median rule", (every,))
    if name == "none":
        return None
    raise ValueError(f"unknown pruner {name!r}")
