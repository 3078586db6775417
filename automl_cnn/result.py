"""What a search returns."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from automl_cnn.architecture import Candidate
from automl_cnn.data import DataBundle
from automl_cnn.driver import TrialRecord
from automl_cnn.model import TrainedModel


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

    def summary(self) -> str:
        test = accuracy_text(self.test_accuracies)
        counts = ", ".join(f"{v} {k}" for k, v in self.counts.items())
        return "\n".join(
            [
                f"best architecture   {self.candidate.architecture.describe()}",
                f"                    {self.model.info.get('params', 0):,} parameters, "
                f"{self.model.info.get('flops', 0):,} FLOPs (trial {self.best_trial})",
                f"validation accuracy {self.val_accuracy:.4f}",
                f"test accuracy       {test}",
                f"trials              {counts}",
                f"wall time           {self.wall_seconds:.0f} s",
                f"model folder        {self.out_dir}",
                f"registered model    {self.model_uri} (version {self.model_version})",
                f"MLflow              {self.tracking_uri} (experiment {self.experiment_id}, run {self.parent_run_id})",
                f"browse              automl-cnn ui --tracking-uri {self.tracking_uri}",
            ]
        )


def accuracy_text(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} over {len(values)} seeds"
