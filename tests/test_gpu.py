"""The CUDA path: bf16 autocast, channels-last, data resident on the GPU, out-of-memory
recorded on its trial with memory given back. Skipped without a GPU; the same code runs on CPU
in every other test."""

from __future__ import annotations

import pytest
import torch

from automl_cnn.data import load_images, split_data
from automl_cnn.model.architecture import Architecture, Candidate, ConvBlock, Dense, Head, TrainConfig
from automl_cnn.training.messages import JobSpec
from automl_cnn.training.trainer import Trainer
from automl_cnn.training.worker import TrialWorker

pytestmark = pytest.mark.gpu  # skipped without a CUDA device (tests/conftest.py)

SMALL = Candidate(
    Architecture((ConvBlock(filters=32), ConvBlock(filters=64, dropout=0.25)), Head(dense=(Dense(128, 0.5),))),
    TrainConfig(epochs=3, batch_size=64, lr_schedule="cosine"),
)
HUGE = Candidate(  # about 20 billion parameters: more than any GPU holds
    Architecture((ConvBlock(filters=8192, kernel_size=7, pooling="none", convs=2),) * 3, Head()),
    TrainConfig(epochs=1, batch_size=1024),
)


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    return split_data(load_images("digits"), seed=0).search_data()


def test_cuda_training_uses_bf16_channels_last_and_resident_data(digits) -> None:  # type: ignore[no-untyped-def]
    trainer = Trainer(SMALL, digits, seed=0, device="cuda")
    assert trainer.device.type == "cuda"
    assert trainer.autocast_dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else None)
    assert trainer.train_batches.x.device.type == "cuda"  # type: ignore[attr-defined]
    conv = trainer.model.block1[0]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    history = [trainer.run_epoch() for _ in range(3)]
    assert history[-1].val_acc > 0.9


def test_out_of_memory_fails_only_its_trial_and_memory_is_released(digits) -> None:  # type: ignore[no-untyped-def]
    worker = TrialWorker(device="cuda")
    before = torch.cuda.memory_allocated()
    result = worker.begin(JobSpec("huge", HUGE.to_dict(), 0, digits))
    assert result.error is not None and "out of memory" in result.error
    assert torch.cuda.memory_allocated() <= before + 64 * 1024**2
    ok = worker.begin(JobSpec("small", SMALL.to_dict(), 0, digits))
    assert ok.error is None and ok.epoch is not None and ok.epoch.val_acc > 0.5
    worker.release()
    assert torch.cuda.memory_allocated() <= before + 64 * 1024**2
