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
    # the batch size this epoch trained with (0: not recorded, a record from before it was), and
    # the halvings of the candidate's batch size its job took after running out of memory
    batch_size: int = 0
    oom_backoffs: int = 0
    fraction: float = 1.0  # the share of the training split it trained on (a data-size fidelity)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)
