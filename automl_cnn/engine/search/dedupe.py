"""No repeated work: candidates equal after canonicalisation share one result.

Samplers re-propose the same network more and more often as a search converges (and small
discrete spaces run out). A candidate's canonical key (see :meth:`Candidate.key`) identifies
it; a repeat of a finished candidate reuses that result, a repeat of a running one waits for it,
and results of an earlier search on the same data (``--warm-start FOLDER``) count too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from automl_cnn.engine.outcome import Outcome
from automl_cnn.model.measures import EpochResult, Profile


@dataclass(frozen=True)
class KnownResult:
    """What a finished trial produced, as much as a repeat needs."""

    number: int
    outcome: Outcome
    reason: str
    values: tuple[float, ...] | None  # the study values of a completed trial
    intermediate: dict[int, float] = field(default_factory=dict)
    constraints: dict[str, float] = field(default_factory=dict)
    history: tuple[EpochResult, ...] = ()
    profile: Profile | None = None
    latency_ms: float | None = None
    source: str = ""  # "" for this search, else where the result came from


@dataclass
class Known:
    """Canonical key -> the finished outcome, or the job still computing it."""

    results: dict[str, KnownResult] = field(default_factory=dict)
    running: dict[str, str] = field(default_factory=dict)  # key -> job
    waiting: dict[str, list[Any]] = field(default_factory=dict)  # job -> repeats waiting for it
    repeats: int = 0  # consecutive repeats, to notice an exhausted space

    def lookup(self, key: str) -> KnownResult | str | None:
        """The outcome, the running job's name, or None for a new candidate."""
        if key in self.results:
            return self.results[key]
        return self.running.get(key)

    def start(self, key: str, job: str) -> None:
        self.running[key] = job
        self.repeats = 0

    def wait_for(self, job: str, item: Any) -> None:
        self.waiting.setdefault(job, []).append(item)
        self.repeats += 1

    def finish(self, key: str, outcome: KnownResult) -> list[Any]:
        """Record ``outcome``; returns the repeats that waited for it."""
        job = self.running.pop(key, None)
        self.results.setdefault(key, outcome)
        return self.waiting.pop(job, []) if job else []
