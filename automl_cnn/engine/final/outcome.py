"""What the final phase decided and delivered, as typed records.

Every question the final phase answers is a :class:`Decision`: the candidates it compared, their
scores on the same images, the rule it applied, and the answer with its reason. The summary,
the report and the MLflow tags print them, one verdict per topic, in the order of :data:`TOPICS`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from typing import Any

WINNER = "winner"
SECOND_SEEDS = "second seeds"
ENSEMBLE = "ensemble"
FINAL_FIT = "final fit or trial weights"
EMA = "weight average"
TOPICS = (WINNER, SECOND_SEEDS, ENSEMBLE, FINAL_FIT, EMA)  # the fixed order they are printed in

HELD_OUT = "the held-out half of validation"  # the images the final fit did not train on
TIE_SIMPLER = "a tie goes to the simpler model"


@dataclass(frozen=True)
class Decision:
    """One question the final phase answered, and why."""

    topic: str  # one of TOPICS
    question: str
    candidates: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()  # accuracy of each candidate, on the same images
    images: int = 0  # how many images the scores were measured on
    rule: str = ""
    answer: str = ""
    reason: str = ""

    def line(self) -> str:
        """``ensemble: no (a tie goes to the simpler model: ...)``"""
        return f"{self.topic}: {self.answer} ({self.reason})" if self.reason else f"{self.topic}: {self.answer}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        fields = {**data, "candidates": tuple(data.get("candidates", ())), "scores": tuple(data.get("scores", ()))}
        return cls(**fields)


_ACCURACY = re.compile(r"(?<!balanced )\baccuracy\b")


def in_metric(decisions: tuple[Decision, ...], label: str, test: str = "McNemar") -> tuple[Decision, ...]:
    """``decisions`` with their rules and reasons naming ``label`` (the search's metric, e.g.
    ``balanced accuracy``) where they say accuracy, and ``test`` (its paired test) where they
    say McNemar: their scores and tests are that metric's."""
    if label == "accuracy":
        return decisions

    def named(text: str) -> str:
        return _ACCURACY.sub(label, text).replace("McNemar", test)

    return tuple(replace(d, rule=named(d.rule), reason=named(d.reason)) for d in decisions)


def decisions_from_json(texts: list[str]) -> tuple[Decision, ...]:
    """Decisions saved with :meth:`Decision.to_json` (the run folder's ``run.json``); other text
    (an older run's notes) is skipped."""
    out = []
    for text in texts:
        try:
            out.append(Decision.from_dict(json.loads(text)))
        except (ValueError, TypeError):
            continue
    return tuple(out)


def merged(topic: str, parts: list[tuple[str, Decision]]) -> Decision:
    """One verdict for ``topic`` from one decision per member (``parts``: (label, decision)):
    the decision itself where the members agree, else each member's answer and reason."""
    if not parts:
        return Decision(topic, "", answer="not asked", reason="nothing was fitted")
    first = parts[0][1]
    if len(parts) == 1:
        return first
    answers = {d.answer for _, d in parts}
    if len(answers) == 1:
        reason = "; ".join(f"{label}: {d.reason}" for label, d in parts)
        return Decision(topic, first.question, first.candidates, (), first.images, first.rule, first.answer, reason)
    by_answer: dict[str, list[str]] = {}
    for label, d in parts:
        by_answer.setdefault(d.answer, []).append(label)
    answer = ", ".join(f"{ans} ({', '.join(labels)})" for ans, labels in by_answer.items())
    reason = "; ".join(f"{label}: {d.reason}" for label, d in parts)
    return Decision(topic, first.question, first.candidates, (), first.images, first.rule, answer, reason)


@dataclass(frozen=True)
class Member:
    """One network of the delivered model."""

    trial: int
    seed: int
    weight: float  # in the ensemble (1.0 alone)
    weights: str  # which weights: the final fit's, its weight average, or the trial's own
    val_accuracy: float | None
    params: int | None
    architecture: str


@dataclass(frozen=True)
class FinalOutcome:
    """What was delivered (its members) and the decisions that led to it, one per topic."""

    members: tuple[Member, ...]
    decisions: tuple[Decision, ...]
    check_accuracy: float | None  # the delivered model on the held-out half of validation
    check_images: int
    warnings: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        if len(self.members) == 1:
            return "one network"
        if len({m.trial for m in self.members}) == 1:
            return f"a seed ensemble of {len(self.members)} fits"
        return f"an ensemble of {len(self.members)} trials"

    def verdicts(self) -> list[Decision]:
        """One decision per topic, in the order of :data:`TOPICS`."""
        by_topic = {d.topic: d for d in self.decisions}
        return [by_topic[t] for t in TOPICS if t in by_topic]

    def to_record(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "members": [asdict(m) for m in self.members],
            "decisions": [d.to_dict() for d in self.verdicts()],
            "check_accuracy": self.check_accuracy,
            "check_images": self.check_images,
            "warnings": list(self.warnings),
        }
