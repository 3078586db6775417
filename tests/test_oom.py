"""Out of memory is not the end of a trial: the epoch reruns with half the batch size and the
learning rate scaled with it, at most twice, and only then does the trial fail.

The trainer, the optimiser, the schedule and the data are real (the digits, on the CPU); the only
stand-in is the network's memory: the test's builder wraps the real network in one that raises the
error torch raises when a training batch is larger than a limit (a CUDA or a CPU allocation
failure). On a GPU, a real CUDA out-of-memory is provoked under a per-process memory cap.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from mlflow.tracking import MlflowClient
from sessions import SINGLE, plan_for, session_for
from torch import nn

import automl_cnn.training.trainer as trainer_module
from automl_cnn.codec import from_jsonable
from automl_cnn.data import load_images, split_data
from automl_cnn.engine.final.fits import final_fit
from automl_cnn.engine.outcome import Outcome
from automl_cnn.engine.search.driver import SearchDriver
from automl_cnn.errors import TrialError
from automl_cnn.model.architecture import Architecture, Candidate, ConvBlock, Head, TrainConfig
from automl_cnn.model.measures import EpochResult
from automl_cnn.services.inprocess import InProcessExecutor
from automl_cnn.training.messages import JobResult, JobSpec
from automl_cnn.training.oom import is_out_of_memory
from automl_cnn.training.trainer import Trainer

ARCH = Architecture((ConvBlock(filters=8, pooling="max"),), Head())
LR = 2e-3
STEPS_AT_64 = 1257 // 64  # training steps of one epoch at the candidate's batch size (1,257 images)


def cuda_oom(n: int) -> BaseException:
    return torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {n} MiB (batch of {n})")


def cpu_oom(n: int) -> BaseException:  # how torch's CPU allocator fails
    return RuntimeError(
        "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
        f"you tried to allocate {n * 2**20} bytes. Error code 12 (Cannot allocate memory)"
    )


class TightMemory(nn.Module):
    """The real network, in a memory that holds training batches of at most ``limit`` images once
    ``after`` training steps have run (an epoch can run out part-way through)."""

    def __init__(self, net: nn.Module, limit: int, after: int, error: Callable[[int], BaseException]) -> None:
        super().__init__()
        self.net, self.limit, self.after, self.error = net, limit, after, error
        self.steps = 0
        self.sizes: list[int] = []  # the training batch sizes that ran

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.steps += 1
            if len(x) > self.limit and self.steps > self.after:
                raise self.error(len(x))
            self.sizes.append(len(x))
        return self.net(x)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    return split_data(load_images("digits"), seed=0).search_data()


@pytest.fixture
def tight(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., list[TightMemory]]]:
    """``tight(limit, after=0, error=cuda_oom)``: every network the trainer builds from now on
    lives in that memory; returns the list of them, in the order built."""
    built: list[TightMemory] = []
    real = trainer_module.build_model

    def install(limit: int, after: int = 0, error: Callable[[int], BaseException] = cuda_oom) -> list[TightMemory]:
        def build(*args: Any, **kwargs: Any) -> nn.Module:
            built.append(TightMemory(real(*args, **kwargs), limit, after, error))
            return built[-1]

        monkeypatch.setattr(trainer_module, "build_model", build)
        return built

    yield install


def candidate(epochs: int = 3, schedule: str = "constant", optimizer: str = "adam") -> Candidate:
    return Candidate(
        ARCH, TrainConfig(epochs=epochs, batch_size=64, learning_rate=LR, lr_schedule=schedule, optimizer=optimizer)
    )


@pytest.mark.parametrize("error", [cuda_oom, cpu_oom], ids=["cuda", "cpu-allocator"])
def test_an_epoch_out_of_memory_reruns_at_half_the_batch_with_half_the_learning_rate(  # type: ignore[no-untyped-def]
    digits, tight, error
) -> None:
    nets = tight(32, error=error)
    trainer = Trainer(candidate(), digits, seed=3, device="cpu")
    history = [trainer.run_epoch() for _ in range(3)]
    assert trainer.done and [e.epoch for e in history] == [1, 2, 3]
    assert [(e.batch_size, e.oom_backoffs) for e in history] == [(32, 1)] * 3
    assert all(e.lr == pytest.approx(LR / 2) for e in history)  # the linear scaling rule
    assert set(nets[0].sizes) == {32} and len(nets[0].sizes) == 3 * (1257 // 32)
    assert history[-1].val_acc > 0.8  # it learned

    # the rerun is the epoch from the state before it: the same as starting at the smaller batch
    tight(10_000)
    same = Trainer(candidate(), digits, seed=3, device="cpu")
    same.use_backoffs(1)
    assert [e.val_loss for e in (same.run_epoch() for _ in range(3))] == [e.val_loss for e in history]


def test_out_of_memory_part_way_through_an_epoch_keeps_the_schedule(digits, tight) -> None:  # type: ignore[no-untyped-def]
    tight(32, after=STEPS_AT_64 + 3)  # epoch 2 runs out of memory at its fourth step
    epochs = 4
    trainer = Trainer(candidate(epochs, "cosine", "sgd"), digits, seed=1, device="cpu")
    history = [trainer.run_epoch() for _ in range(epochs)]
    assert [(e.batch_size, e.oom_backoffs) for e in history] == [(64, 0)] + [(32, 1)] * 3
    # after epoch k the cosine schedule is at k/epochs of training, from the scaled peak
    peaks = [LR] + [LR / 2] * 3
    for e, peak in zip(history, peaks, strict=True):
        assert e.lr == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi * e.epoch / epochs)))

    tight(10_000)  # the same, without running out: one epoch at 64, then halved before epoch 2
    plain = Trainer(candidate(epochs, "cosine", "sgd"), digits, seed=1, device="cpu")
    first = plain.run_epoch()
    plain.use_backoffs(1)
    rest = [plain.run_epoch() for _ in range(epochs - 1)]
    assert [e.val_loss for e in (first, *rest)] == [e.val_loss for e in history]


def test_past_two_halvings_the_trial_fails_saying_so(digits, tight) -> None:  # type: ignore[no-untyped-def]
    nets = tight(10)
    trainer = Trainer(candidate(), digits, seed=0, device="cpu")
    with pytest.raises(TrialError, match=r"^out of memory at batch size 16 after 2 halvings \(from 64\): CUDA out"):
        trainer.run_epoch()
    assert nets[0].sizes == []  # nothing trained at 64, 32 or 16
    assert trainer.oom_backoffs == 2


def test_other_runtime_errors_are_not_taken_for_out_of_memory(digits, tight) -> None:  # type: ignore[no-untyped-def]
    tight(32, error=lambda n: RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({n}x3 and 4x5)"))
    trainer = Trainer(candidate(), digits, seed=0, device="cpu")
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        trainer.run_epoch()
    assert trainer.batch_size == 64 and trainer.oom_backoffs == 0


def test_a_real_cpu_allocation_failure_reads_as_out_of_memory() -> None:
    try:
        torch.empty(2**62, dtype=torch.uint8)  # 4 EiB: refused at once, nothing is touched
    except RuntimeError as exc:
        assert is_out_of_memory(exc)
    else:  # an allocator that overcommits without limit hands out the address space
        pytest.skip("this machine's allocator accepted a 4 EiB tensor")
    assert not is_out_of_memory(ValueError("out of memory"))  # only what torch raises


def test_a_checkpoint_after_a_back_off_resumes_at_the_smaller_batch(digits, tight) -> None:  # type: ignore[no-untyped-def]
    tight(32)
    first = Trainer(candidate(3, "onecycle"), digits, seed=2, device="cpu")
    straight = [first.run_epoch()]
    blob = first.checkpoint()
    straight += [first.run_epoch() for _ in range(2)]

    resumed = Trainer(candidate(3, "onecycle"), digits, seed=99, device="cpu")  # another worker
    assert (resumed.batch_size, resumed.oom_backoffs) == (64, 0)
    resumed.restore(blob)
    assert (resumed.batch_size, resumed.oom_backoffs, resumed.lr) == (32, 1, LR / 2)
    rest = [resumed.run_epoch() for _ in range(2)]
    assert [(e.batch_size, e.oom_backoffs) for e in rest] == [(32, 1)] * 2
    assert [e.val_loss for e in rest] == [e.val_loss for e in straight[1:]]


def test_checkpoints_and_records_from_before_back_offs_still_load(digits) -> None:  # type: ignore[no-untyped-def]
    old = Trainer(candidate(2), digits, seed=4, device="cpu")
    reference = [old.run_epoch()]
    state = torch.load(io.BytesIO(old.checkpoint()), weights_only=True)
    del state["batch_size"], state["oom_backoffs"]  # as checkpoints were written before
    buf = io.BytesIO()
    torch.save(state, buf)
    reference.append(old.run_epoch())

    resumed = Trainer(candidate(2), digits, seed=0, device="cpu")
    resumed.restore(buf.getvalue())
    assert resumed.run_epoch().val_loss == reference[1].val_loss and resumed.batch_size == 64

    fields = {"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.1, "val_acc": 0.4, "seconds": 2, "lr": 0.1}
    for record in (EpochResult(**fields), from_jsonable(EpochResult, fields)):  # run folders, trials.jsonl
        assert (record.batch_size, record.oom_backoffs) == (0, 0)  # 0: not recorded


def _next(ex: InProcessExecutor) -> JobResult:
    end = time.monotonic() + 120
    while time.monotonic() < end:
        results = ex.wait(timeout=0.5)
        if results:
            return results[0]
    raise AssertionError("no result in time")


def test_the_executor_contract_reports_the_back_off(digits, tight) -> None:  # type: ignore[no-untyped-def]
    ex = InProcessExecutor(1)
    try:
        tight(32)
        cand = candidate(2).to_dict()
        ex.submit(JobSpec("j", cand, 0, digits, want_checkpoint=True))
        first = _next(ex)
        assert first.error is None and first.epoch is not None and first.checkpoint is not None
        assert (first.epoch.batch_size, first.epoch.oom_backoffs, first.epoch.lr) == (32, 1, LR / 2)
        ex.release("j")

        tight(10_000)  # another worker, with room: the checkpoint keeps the smaller batch
        ex.submit(JobSpec("resumed", cand, 0, digits, first.checkpoint))
        resumed = _next(ex)
        assert resumed.done and resumed.epoch is not None
        assert (resumed.epoch.epoch, resumed.epoch.batch_size, resumed.epoch.oom_backoffs) == (2, 32, 1)
        ex.release("resumed")

        ex.submit(JobSpec("final", cand, 0, digits, oom_backoffs=1))  # a final fit of that trial
        final = _next(ex)
        assert final.epoch is not None and (final.epoch.batch_size, final.epoch.lr) == (32, LR / 2)
        ex.release("final")

        tight(10)
        ex.submit(JobSpec("failed", cand, 0, digits))
        failed = _next(ex)
        assert failed.epoch is None and not failed.lost
        assert failed.error is not None and failed.error.startswith("out of memory at batch size 16 after 2 halvings")
        ex.release("failed")
    finally:
        ex.shutdown()


def test_the_search_records_the_batch_size_a_trial_trained_with(tmp_path: Path, tight) -> None:  # type: ignore[no-untyped-def]
    nets = tight(32)  # the space's one candidate trains at 64
    plan = plan_for(tmp_path, SINGLE, trials=1, pruner="none")
    with session_for(plan) as s:
        [rec] = SearchDriver(s, lambda _records: math.inf).run()
        [stored] = s.state.finished_records()
        assert rec.outcome == Outcome.COMPLETED
        assert [(e.batch_size, e.oom_backoffs) for e in stored.history] == [(32, 1)] * 2  # trials.jsonl
        tags = MlflowClient(plan.config.resolved_tracking_uri()).get_run(rec.run_id).data.tags
        assert (tags["automl_cnn.batch_size_used"], tags["automl_cnn.oom_backoffs"]) == ("32", "1")
        built = len(nets)
        [fit] = final_fit(s, [(rec, 7)])  # the final fit starts at the batch size the trial backed off to
    assert [(e.batch_size, e.oom_backoffs) for e in fit.history] == [(32, 1)] * 2
    assert set(nets[built].sizes) == {32}  # it never tried 64 again


@pytest.mark.gpu
def test_a_real_cuda_out_of_memory_backs_off(digits) -> None:  # type: ignore[no-untyped-def]
    """A network whose memory is its activations, under a per-process cap that holds its training
    at a quarter of the batch (measured first) but not at the full batch."""
    wide = Candidate(
        Architecture((ConvBlock(filters=1024, pooling="none"),), Head(type="global_avg")),
        TrainConfig(epochs=1, batch_size=1024),
    )
    device = torch.device("cuda")
    torch.cuda.empty_cache()
    base = torch.cuda.memory_reserved(device)
    probe = Trainer(wide, digits, seed=0, device=device)
    probe.use_backoffs(2)  # a quarter of the batch: 256
    torch.cuda.reset_peak_memory_stats(device)
    probe.run_epoch()
    need = torch.cuda.max_memory_reserved(device) - base
    del probe
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, (base + 1.5 * need) / total), device)
    try:
        trainer = Trainer(wide, digits, seed=0, device=device)
        epoch = trainer.run_epoch()
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
    assert trainer.done and 1 <= epoch.oom_backoffs <= 2
    assert epoch.batch_size == 1024 >> epoch.oom_backoffs and math.isfinite(epoch.val_loss)
