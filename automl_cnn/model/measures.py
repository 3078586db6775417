"""What is measured of a candidate: its static profile (before training) and one result per epoch.

Plain frozen records with no dependencies, so everything that stores or shows a measurement
(trial records, the run folder, MLflow, the report) imports them without importing torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

Shape = tuple[int, int, int]


@dataclass(frozen=True)
class Profile:
    params: int
    flops: int  # per image, forward pass, as counted by torch (a multiply-add is 2 FLOPs)
    feature_shapes: tuple[Shape, ...]


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float
    lr: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)
