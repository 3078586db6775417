"""What a search returns."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from automl_cnn.data import DataBundle
from automl_cnn.deliver.perclass import PerClass
from automl_cnn.engine.final.outcome import Decision, FinalOutcome, Member
from automl_cnn.engine.records import TrialRecord
from automl_cnn.metrics import label
from automl_cnn.model.architecture import Candidate
from automl_cnn.model.trained import TrainedModel


@dataclass
class SearchResult:
    model: TrainedModel
    candidate: Candidate
    best_trial: int
    val_accuracy: float
    test_accuracy: float
    test_accuracy_std: float | None
    test_accuracies: list[float]
    counts: dict[str, int]
    wall_seconds: float
    out_dir: Path
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    model_uri: str
    model_version: str
    trials: list[TrialRecord] = field(repr=False, default_factory=list)
    data: DataBundle | None = field(repr=False, default=None)
    pareto: list[dict[str, Any]] = field(default_factory=list)  # several objectives: the front
    final_table: list[dict[str, Any]] = field(default_factory=list)  # test scores of the retrained
    pick_rule: str = ""
    promotion: str = ""  # the alias the new version took: champion, or challenger (not promoted)
    promotion_reason: str = ""  # why, e.g. "not promoted, test 0.9520 vs champion version 2 0.9610 on ..."
    val_images: int = 0  # the sizes the accuracies were measured on (for their intervals)
    test_images: int = 0
    final: FinalOutcome | None = None  # what the final phase delivered, and its decisions
    per_class: PerClass | None = None  # the delivered model's per-class figures on the test split
    metric: str = "accuracy"  # what the search optimised: accuracy, balanced_accuracy or macro_f1 (--metric)
    metric_reason: str = ""  # why (auto: the classes' imbalance)
    training_length: str = ""  # the epochs the search settled on, and why (engine/search/pausing.py)

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """Per member: trial, seed, weight, which weights, validation accuracy, parameters, architecture."""
        return [asdict(m) for m in self.final.members] if self.final else []

    @property
    def decisions(self) -> list[Decision]:
        """One verdict per topic, in a fixed order (the winner, second seeds, ensemble, final fit, EMA)."""
        return self.final.verdicts() if self.final else []

    @property
    def notes(self) -> list[str]:
        """The decisions, one line each: topic, answer and reason."""
        return [d.line() for d in self.decisions]

    @property
    def warnings(self) -> list[str]:  # a task far from solved; a winner without convolutions
        return list(self.final.warnings) if self.final else []

    @property
    def check_accuracy(self) -> float | None:  # the delivered model on the held-out half of validation
        return self.final.check_accuracy if self.final else None

    @property
    def check_images(self) -> int:
        return self.final.check_images if self.final else 0

    @property
    def is_ensemble(self) -> bool:
        return len(self.delivered) > 1

    def delivered_lines(self) -> list[str]:
        """What was delivered and why, for the summary: one line per decision, in a fixed order."""
        if not self.final:
            return []
        lines = delivered_lines(self.final)
        if self.metric != "accuracy":  # the decisions' scores are in the search's metric
            lines = [f"how it was chosen (every score is {label(self.metric)}):" if line ==
                     "how it was chosen:" else line for line in lines]  # fmt: skip
        return lines

    def summary(self) -> str:
        test = f"{self.test_accuracy:.4f}"
        if len(self.test_accuracies) > 1:
            test += f" (delivered model); this design: {accuracy_text(self.test_accuracies)}"
        counts = ", ".join(f"{v} {k}" for k, v in self.counts.items())
        reason = f": {self.promotion_reason}" if self.promotion_reason else ""
        lines = []
        if self.pareto:
            names = [k for k in self.pareto[0] if k not in ("trial", "architecture")]
            lines.append(f"Pareto front ({len(self.pareto)} trials; delivered: {self.pick_rule}):")
            lines.append("  trial  " + "  ".join(f"{n:>12}" for n in names) + "  architecture")
            for row in self.pareto:
                mark = "*" if row["trial"] == self.best_trial else " "
                cells = "  ".join(f"{_fmt(row[n]):>12}" for n in names)
                lines.append(f"{mark} {row['trial']:>5}  {cells}  {row['architecture']}")
            lines.append("")
        if len(self.final_table) > 1:
            lines.append("final evaluation (retrained on train + half of validation, scored on test):")
            for row in self.final_table:
                mark = "*" if row["trial"] == self.best_trial else " "
                lines.append(
                    f"{mark} trial {row['trial']:>4}  val {row['val_accuracy']:.4f}  test {row['test_accuracy']}  "
                    f"{row['architecture']}"
                )
            lines.append("")
        return "\n".join(
            [
                *lines,
                f"best architecture   {self.candidate.architecture.describe()}",
                f"                    {self.model.info.get('params', 0):,} parameters, "
                f"{self.model.info.get('flops', 0):,} FLOPs (trial {self.best_trial})",
                *self._metric_lines(),
                f"test accuracy       {with_interval(self.test_accuracy, self.test_images)}{test[6:]}",
                *self._balanced_lines(),
                *(
                    [f"                    {INTERVAL_NOTE.format(self.val_images, self.test_images)}"]
                    if self.val_images and self.test_images
                    else []
                ),
                *([f"training length     {self.training_length}"] if self.training_length else []),
                *self.delivered_lines(),
                *(self.per_class.summary_lines() if self.per_class else []),
                f"trials              {counts}",
                f"wall time           {self.wall_seconds:.0f} s",
                f"model folder        {self.out_dir}",
                f"registered model    {self.model_uri} (version {self.model_version}){reason}",
                f"MLflow              {self.tracking_uri} (experiment {self.experiment_id}, run {self.parent_run_id})",
                f"browse              automl-cnn ui --tracking-uri {self.tracking_uri}",
            ]
        )

    def _metric_lines(self) -> list[str]:
        """The search's metric (when not plain accuracy) and the winner's validation score in it."""
        if self.metric == "accuracy":
            return [f"validation accuracy {with_interval(self.val_accuracy, self.val_images)}"]
        lines = [
            f"metric              {label(self.metric)} ({self.metric_reason}): it chose, pruned and promoted",
            f"validation score    {100 * self.val_accuracy:.1f}% {label(self.metric)} ({self.val_images} images)",
        ]
        if self.metric == "balanced_accuracy":  # training/posthoc.py
            lines.append(
                "decision rule       trained with the plain loss, a network predicts from its logits - log(prior)"
            )
        return lines

    def _balanced_lines(self) -> list[str]:
        if self.metric == "accuracy" or self.per_class is None:
            return []
        if self.metric == "macro_f1" and self.per_class.f1_interval is not None:
            lo, hi = self.per_class.f1_interval
            value = self.per_class.macro_f1
            interval = f"{100 * lo:.1f}–{100 * hi:.1f}, bootstrap over test images"
            return [f"test macro F1       {100 * value:.1f}% ({interval})"]
        lo, hi = self.per_class.balanced_interval()
        value = self.per_class.balanced_accuracy
        return [f"test balanced acc.  {100 * value:.1f}% ({100 * lo:.1f}–{100 * hi:.1f}, normal approx. over classes)"]


def delivered_lines(final: FinalOutcome) -> list[str]:
    """``delivered``, the held-out score, then one line per decision and the warnings."""
    members = final.members
    if len(members) > 1:
        seeds = len({m.trial for m in members}) < len(members)  # a seed ensemble
        parts = ", ".join(_member(m, seeds) for m in members)
        lines = [f"delivered           {final.kind}: {parts}"]
    else:
        lines = [f"delivered           trial {members[0].trial}, {members[0].weights}"]
    if final.check_accuracy is not None:
        lines.append(
            f"held-out score      {with_interval(final.check_accuracy, final.check_images)} on the held-out half "
            f"of validation ({final.check_images} images the final fit did not train on)"
        )
    lines.append("how it was chosen:")
    lines += [f"  {d.topic:<28}{d.answer}: {d.reason}" for d in final.verdicts()]
    lines += [f"warning             {w}" for w in final.warnings]
    return lines


def _member(model: Member, seeds: bool) -> str:
    """``trial 3 ×0.50 (final fit)``; with the seed where one trial is fitted several times."""
    seed = f" seed {model.seed}" if seeds else ""
    return f"trial {model.trial}{seed} ×{model.weight:.2f} ({model.weights})"


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value < 1.0:
        return f"{value:.4f}"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.3f}"
    return f"{int(value):,}"


INTERVAL_NOTE = "(95% Wilson intervals over {} validation and {} test images)"


def wilson(acc: float, images: int, z_score: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of an accuracy measured on ``images`` images: how far the score
    of a finite split can be from the model's true accuracy (exact enough near 0 and 1, where
    the normal approximation is not)."""
    if images <= 0:
        return acc, acc
    centre = (acc + z_score * z_score / (2 * images)) / (1 + z_score * z_score / images)
    half = (
        z_score
        * math.sqrt(acc * (1 - acc) / images + z_score * z_score / (4 * images * images))
        / (1 + z_score * z_score / images)
    )
    return max(0.0, centre - half), min(1.0, centre + half)


def with_interval(acc: float, images: int) -> str:
    """``99.3% (98.7–99.7)`` for an accuracy on ``n`` images; the bare score when ``n`` is unknown."""
    if images <= 0:
        return f"{acc:.4f}"
    lo, hi = wilson(acc, images)
    return f"{100 * acc:.1f}% ({100 * lo:.1f}–{100 * hi:.1f})"


def accuracy_text(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} over {len(values)} seeds"
