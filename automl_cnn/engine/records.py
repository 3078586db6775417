"""One trial's record: what was trained, how it went, where it ran; with a JSON round trip."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from automl_cnn.model.architecture import Candidate
from automl_cnn.model.measures import EpochResult, Profile


def trial_seed(seed: int, number: int) -> int:
    return (seed * 1_000_003 + number * 7919 + 17) % (2**31 - 1)


@dataclass
class TrialRecord:
    number: int
    seed: int
    run_id: str
    candidate: Candidate | None = None
    profile: Profile | None = None
    outcome: str = "running"
    reason: str = ""
    history: list[EpochResult] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    where: dict[str, Any] = field(default_factory=dict)
    too_slow: bool = False  # stopped because it could not finish inside its share of the budget
    latency_ms: float | None = None  # one image, one CPU thread, median
    duplicate_of: int | None = None  # the trial whose result this one reuses
    preset: str | None = None  # the warm-start design it came from
    retries: int = 0  # restarts from a checkpoint after its worker died
    reused_from: str = ""  # for a repeat of an earlier search's trial: that search's folder

    @property
    def job(self) -> str:
        return f"trial-{self.number}"

    @property
    def val_acc(self) -> float | None:
        return self.history[-1].val_acc if self.history else None

    @property
    def train_seconds(self) -> float:
        return sum(e.seconds for e in self.history)

    @property
    def epochs(self) -> int:
        return self.candidate.training.epochs if self.candidate else 0

    def projected_seconds(self) -> float | None:
        """Training time for all epochs: the epochs run so far plus the rest at the pace of the
        latest ones (the first epoch also pays for warm-up and for a busy start of the search)."""
        if not self.history:
            return None
        recent = sorted(e.seconds for e in self.history[1:][-3:]) or [self.history[0].seconds]
        pace = recent[(len(recent) - 1) // 2]
        return self.train_seconds + max(0, self.epochs - len(self.history)) * pace

    def objective(self, name: str) -> float:
        if name == "accuracy":
            return float(self.val_acc or 0.0)
        if name == "latency":
            return float(self.latency_ms or 0.0)
        assert self.profile is not None
        return float(getattr(self.profile, name))


def record_to_json(rec: TrialRecord) -> dict[str, Any]:
    return {
        "number": rec.number,
        "seed": rec.seed,
        "run_id": rec.run_id,
        "candidate": rec.candidate.to_dict() if rec.candidate else None,
        "profile": dataclasses.asdict(rec.profile) if rec.profile else None,
        "outcome": rec.outcome,
        "reason": rec.reason,
        "history": [e.to_dict() for e in rec.history],
        "seconds": rec.seconds,
        "too_slow": rec.too_slow,
        "latency_ms": rec.latency_ms,
        "duplicate_of": rec.duplicate_of,
        "preset": rec.preset,
        "retries": rec.retries,
        "reused_from": rec.reused_from,
    }


def record_from_json(d: dict[str, Any]) -> TrialRecord:
    prof = d.get("profile")
    return TrialRecord(
        number=d["number"],
        seed=d["seed"],
        run_id=d["run_id"],
        candidate=Candidate.from_dict(d["candidate"]) if d.get("candidate") else None,
        profile=Profile(prof["params"], prof["flops"], tuple(tuple(s) for s in prof["feature_shapes"]))
        if prof
        else None,
        outcome=d["outcome"],
        reason=d.get("reason", ""),
        history=[EpochResult(**e) for e in d.get("history", [])],
        seconds=d.get("seconds", 0.0),
        too_slow=d.get("too_slow", False),
        latency_ms=d.get("latency_ms"),
        duplicate_of=d.get("duplicate_of"),
        preset=d.get("preset"),
        retries=d.get("retries", 0),
        reused_from=d.get("reused_from", ""),
    )
