"""Training one candidate: plain PyTorch on in-memory tensors, one epoch at a time.

A :class:`Trainer` is a pure computation (no Optuna, Ray or MLflow), one :class:`EpochResult`
an epoch, for a Ray worker, the final fit, a plain Optuna loop and the tests alike. Its whole
state fits in a checkpoint, so an interrupted trial continues where it stopped.

An epoch may train on a fraction of the training split (``run_epoch(fraction)``, a data-size
fidelity: :mod:`automl_cnn.training.subsets`); the schedule runs in full-data steps, so it holds
whatever fractions the epochs train on.

On the ``wsd`` schedule (:mod:`automl_cnn.training.schedules`) the learning rate at a step does
not depend on the planned number of epochs, so a trial trained to epoch k and continued from its
checkpoint to epoch m ends with the weights of one trained straight to m. Each epoch's score (and
so a rung's) is then that of the weight average (:meth:`Trainer.scored`), the stand-in for the
schedule's cooldown, and the average is what the trial's :class:`Outputs` hold.

An epoch that runs out of memory reruns from the state before it with half the batch size and
the learning rate scaled with it (at most :data:`~automl_cnn.training.oom.MAX_OOM_BACKOFFS`
halvings a job); every :class:`EpochResult` says its batch size and the halvings taken.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from automl_cnn.data.bundle import TrainData
from automl_cnn.data.bundle import class_weights_for as inverse_frequency
from automl_cnn.errors import TrialError
from automl_cnn.metrics import score
from automl_cnn.model.architecture import Candidate, TrainConfig
from automl_cnn.model.backbone import load_pretrained, optimizer_params, set_phase
from automl_cnn.model.builder import build_model
from automl_cnn.model.measures import EpochResult
from automl_cnn.training.augment import augment
from automl_cnn.training.averaging import WeightAverage
from automl_cnn.training.batches import Batches, make_batches
from automl_cnn.training.messages import Outputs
from automl_cnn.training.oom import (
    MAX_OOM_BACKOFFS,
    first_line,
    free_memory,
    halved,
    is_out_of_memory,
    out_of_memory_message,
)
from automl_cnn.training.posthoc import prior_terms, shifted
from automl_cnn.training.schedules import fast_forward, make_scheduler, move_to
from automl_cnn.training.subsets import nested_order, subset_size

EVAL_BATCH = 1024
LOADER_WORKERS = 2  # DataLoader workers of a streamed split


def _optimizer(cfg: TrainConfig, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    params = optimizer_params(model, lr)  # a backbone's in two groups: the head's, then the backbone's
    wd = cfg.weight_decay
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd, momentum=cfg.momentum)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def pick_device(prefer: str | None = None) -> torch.device:
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Trainer:
    """Trains ``candidate`` on ``data.x_train`` and scores it on ``data.x_eval`` each epoch."""

    def __init__(
        self,
        candidate: Candidate,
        data: TrainData,
        seed: int,
        device: torch.device | str | None = None,
        *,
        channels_last: bool = True,
        amp: bool | None = None,
        average: bool = False,
    ) -> None:
        self.candidate = candidate
        self.cfg = candidate.training
        self.device = pick_device(str(device) if device is not None else None)
        self.seed = seed
        torch.manual_seed(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        on_cuda = self.device.type == "cuda"
        use_amp = on_cuda and torch.cuda.is_bf16_supported() if amp is None else amp
        self.autocast_dtype = torch.bfloat16 if use_amp else None
        with self.device:  # parameters are created where they train (a huge one fails there, not in RAM)
            model = build_model(candidate.architecture, data.input_shape, data.num_classes, data.mean, data.std)
        self.model = model.to(self.device).to(memory_format=self.memory_format)
        load_pretrained(self.model)  # a backbone candidate's weights file, if it has one
        self.train_batches = make_batches(data.x_train, data.y_train, self.device, LOADER_WORKERS)
        self.eval_batches = make_batches(data.x_eval, data.y_eval, self.device, LOADER_WORKERS)
        self.metric = data.metric  # what an epoch's score is: accuracy, or balanced accuracy
        weights = data.class_weights  # --class-weights, or a candidate that searched a weighted loss
        if weights is None and self.cfg.class_weighted:
            weights = inverse_frequency(data.y_train, data.num_classes)
        self.class_weights = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=self.device)
        # the logit-adjusted loss's offset; the post-hoc shift and the layer that carries it (training/posthoc.py)
        self.logit_offset, self.shift, self.classifier = prior_terms(self.cfg, data, self.model, self.device)
        n = len(self.train_batches)
        self.first_batch_size = max(1, min(self.cfg.batch_size, n))  # the candidate's, before any back-off
        self.batch_size = self.first_batch_size
        self.oom_backoffs = 0  # halvings of the batch size after running out of memory
        self.lr = self.cfg.learning_rate
        self.steps_per_epoch = max(1, n // self.batch_size)  # drop the ragged last batch
        self.optimizer = _optimizer(self.cfg, self.model, self.lr)
        self.scheduler = self._schedule()
        self.epoch = 0
        self.y_train = data.y_train
        self._order: torch.Tensor | None = None  # nested_order of the training split, when a subset is used
        self._saved: tuple[int, bytes] | None = None  # a checkpoint taken since the last training step
        # on wsd the average is kept always, and is what is scored: its horizon follows the steps
        # taken so far (the decay branch of warmup-stable-decay, without extra steps)
        self.extendable = self.cfg.lr_schedule == "wsd"
        horizon = None if self.extendable else self.steps_per_epoch * self.cfg.epochs
        self.average = WeightAverage(self.model, horizon) if average or self.extendable else None
        self.average_requested = average

    def _schedule(self) -> Any:
        total = self.steps_per_epoch * self.cfg.epochs
        return make_scheduler(self.cfg.lr_schedule, self.optimizer, total, self.steps_per_epoch, self.lr)

    @property
    def scored(self) -> nn.Module:
        """The network each epoch is scored with: the weight average on ``wsd``, else the one training."""
        return self.average.module if self.extendable and self.average is not None else self.model

    # -- one epoch -----------------------------------------------------------------------------
    def _batch(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        return x.contiguous(memory_format=self.memory_format)

    def _autocast(self) -> Any:
        if self.autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def run_epoch(self, fraction: float = 1.0) -> EpochResult:
        """Train one epoch on ``fraction`` of the training split (a nested stratified subset;
        1: all of it), then score it. An epoch that runs out of memory (a CUDA or a CPU
        allocation) reruns from the state before it with half the batch size, at most
        ``MAX_OOM_BACKOFFS`` times a job; past that the job fails with a :class:`TrialError`."""
        if self.epoch >= self.cfg.epochs:
            raise RuntimeError("all epochs already ran")
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction {fraction} is not in (0, 1]")
        before = self._state_before_epoch()
        while True:
            try:
                return self._train_epoch(fraction)
            except RuntimeError as exc:  # torch.OutOfMemoryError is one
                if not is_out_of_memory(exc):
                    raise
                what = first_line(exc)
            # out here, the exception and the frames (the batch, the activations) it held are gone
            self._back_off(before, what)

    def _state_before_epoch(self) -> bytes:
        """The state to rerun this epoch from: the checkpoint the worker just took, or a new one."""
        saved, self._saved = self._saved, None
        if saved is not None and saved[0] == self.epoch:
            return saved[1]
        return self.checkpoint()

    def _back_off(self, before: bytes, what: str) -> None:
        """After running out of memory: free it, go back to ``before`` and halve the batch size."""
        if self.oom_backoffs >= MAX_OOM_BACKOFFS or self.batch_size == 1:
            raise TrialError(out_of_memory_message(self.batch_size, self.oom_backoffs, self.first_batch_size, what))
        smaller, backoffs = halved(self.batch_size), self.oom_backoffs + 1
        self.model.zero_grad(set_to_none=True)
        free_memory(self.device)
        self.restore(before)
        self._rebatch(smaller, backoffs)

    def use_backoffs(self, backoffs: int) -> None:
        """Start at the batch size ``backoffs`` halvings below the candidate's, the learning rate
        scaled with it (a final fit of a trial that backed off); they count towards the limit."""
        if backoffs > 0:
            self._rebatch(halved(self.first_batch_size, backoffs), backoffs)

    def _rebatch(self, batch_size: int, backoffs: int) -> None:
        """Train on from the current epoch with ``batch_size``: the optimiser keeps its
        per-parameter state (momenta, Adam's moments), the schedule its progress through training."""
        self.batch_size, self.oom_backoffs = batch_size, backoffs
        self.steps_per_epoch = max(1, len(self.train_batches) // batch_size)
        # The linear scaling rule (Goyal et al. 2017, "Accurate, large minibatch SGD"): the
        # learning rate is proportional to the batch size, so half the batch takes half the step.
        self.lr = self.cfg.learning_rate * batch_size / self.first_batch_size
        moments = self.optimizer.state_dict()["state"]
        self.optimizer = _optimizer(self.cfg, self.model, self.lr)
        self.optimizer.load_state_dict({**self.optimizer.state_dict(), "state": moments})
        self.scheduler = self._schedule()
        fast_forward(self.scheduler, self.epoch * self.steps_per_epoch)
        self._saved = None

    def _subset(self, fraction: float) -> torch.Tensor:
        """The positions of the ``fraction`` subset, shuffled for this epoch."""
        if self._order is None:
            self._order = torch.from_numpy(nested_order(np.asarray(self.y_train)))
        part = self._order[: subset_size(len(self._order), fraction)]
        return part[torch.randperm(len(part), generator=self.gen)]

    def _train_epoch(self, fraction: float = 1.0) -> EpochResult:
        start = time.perf_counter()
        self.model.train()
        set_phase(self.model, self.epoch)  # a backbone's frozen parts at this epoch
        full = fraction >= 1.0
        perm = torch.randperm(len(self.train_batches), generator=self.gen) if full else self._subset(fraction)
        # on a subset the schedule still moves by full-data steps: step i of k ends at i/k of the epoch
        steps = max(1, len(perm) // self.batch_size)
        first_step = self.epoch * self.steps_per_epoch
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        aug = self.cfg.augmentation
        check_each_step = self.device.type == "cpu"  # on a GPU, checking each step would sync
        batches = self.train_batches.iterate(perm, self.batch_size, drop_last=len(perm) >= self.batch_size)
        for step, (x_raw, yb) in enumerate(batches):
            xb = augment(self._batch(x_raw), aug, self.gen)
            with self._autocast():
                logits = self.model(xb).float()
                seen_by_loss = logits if self.logit_offset is None else logits + self.logit_offset
                loss = F.cross_entropy(
                    seen_by_loss, yb, weight=self.class_weights, label_smoothing=self.cfg.label_smoothing
                )
            if check_each_step and not torch.isfinite(loss):
                raise TrialError(
                    f"NaN/inf loss ({loss.item()}) at epoch {self.epoch + 1}, step {step + 1}; "
                    "the learning rate may be too high"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if full:
                self.scheduler.step()
            else:
                move_to(self.scheduler, first_step + round((step + 1) * self.steps_per_epoch / steps))
            if self.average is not None:
                self.average.update(self.model)
            total_loss += loss.detach() * len(yb)
            correct += (logits.argmax(1) == yb).sum()
            seen += len(yb)
        if not torch.isfinite(total_loss):
            raise TrialError(f"NaN/inf loss ({float(total_loss)}) during epoch {self.epoch + 1}")
        lr = float(self.optimizer.param_groups[0]["lr"])
        val_loss, val_acc = self.evaluate(self.eval_batches, self.scored)
        self.epoch += 1
        return EpochResult(
            epoch=self.epoch,
            train_loss=float(total_loss) / seen,
            train_acc=float(correct) / seen,
            val_loss=val_loss,
            val_acc=val_acc,
            seconds=time.perf_counter() - start,
            lr=lr,
            batch_size=self.batch_size,
            oom_backoffs=self.oom_backoffs,
            fraction=min(1.0, fraction),
        )

    @torch.inference_mode()
    def predict_logits(self, batches: Batches, model: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (of ``model``, by default the one training) and labels of every image of
        ``batches``, in order."""
        model = model or self.model
        model.eval()
        logits, labels = [], []
        size = max(1, EVAL_BATCH >> self.oom_backoffs)  # smaller too after running out of memory
        for x, y in batches.iterate(torch.arange(len(batches)), size, drop_last=False):
            with self._autocast():
                logits.append(model(self._batch(x)).float())
            labels.append(y)
        if not logits:
            return torch.zeros((0, 0)), torch.zeros((0,), dtype=torch.long)
        out = torch.cat(logits)
        return (out if self.shift is None else out - self.shift), torch.cat(labels)

    def eval_probs(self, model: nn.Module | None = None) -> np.ndarray:
        """Class probabilities on the scoring split, in its order (float16, images x classes)."""
        logits, _ = self.predict_logits(self.eval_batches, model)
        return torch.softmax(logits, dim=1).to("cpu", torch.float16).numpy()

    def outputs(self) -> Outputs:
        """The weights and the scoring split's probabilities, and the same of the weight average
        (when asked for). On ``wsd`` without an average asked for: the average's, which is what
        each epoch was scored with."""

        def handed(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:  # the adjusted network's, if shifted
            return weights if self.shift is None else shifted(weights, self.classifier, self.shift.cpu())

        if self.average is None:
            return Outputs(handed(self.cpu_state_dict()), self.eval_probs())
        if not self.average_requested:
            return Outputs(handed(self.average.cpu_weights()), self.eval_probs(self.average.module))
        averaged, weights = self.average.module, handed(self.cpu_state_dict())
        return Outputs(weights, self.eval_probs(), handed(self.average.cpu_weights()), self.eval_probs(averaged))

    def evaluate(self, batches: Batches, model: nn.Module | None = None) -> tuple[float, float]:
        if len(batches) == 0:
            return float("nan"), float("nan")
        logits, y = self.predict_logits(batches, model)
        loss = float(F.cross_entropy(logits, y))
        if not math.isfinite(loss):
            raise TrialError(f"NaN/inf validation loss ({loss}) at epoch {self.epoch + 1}")
        if self.metric == "accuracy":
            return loss, float((logits.argmax(1) == y).float().mean())
        return loss, score(self.metric, logits.argmax(1).cpu().numpy(), y.cpu().numpy())

    @property
    def done(self) -> bool:
        return self.epoch >= self.cfg.epochs

    # -- checkpoints ---------------------------------------------------------------------------
    def checkpoint(self) -> bytes:
        """Everything needed to continue after the last finished epoch (tensors and numbers), the
        batch size after any back-off included."""
        buf = io.BytesIO()
        torch.save(
            {
                "epoch": self.epoch,
                "batch_size": self.batch_size,
                "oom_backoffs": self.oom_backoffs,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "gen": self.gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                **({"average": self.average.state_dict()} if self.average is not None else {}),
            },
            buf,
        )
        self._saved = (self.epoch, buf.getvalue())  # also the state to rerun the next epoch from
        return self._saved[1]

    def restore(self, blob: bytes) -> None:
        state = torch.load(io.BytesIO(blob), map_location=self.device, weights_only=True)
        # checkpoints from before back-offs existed hold no batch size: they trained at the first one
        batch_size = int(state.get("batch_size", self.batch_size))
        backoffs = int(state.get("oom_backoffs", self.oom_backoffs))
        if (batch_size, backoffs) != (self.batch_size, self.oom_backoffs):
            self._rebatch(batch_size, backoffs)  # the optimiser and schedule for it, loaded below
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.average is not None and "average" in state:
            self.average.load_state_dict(state["average"])
        self.gen.set_state(state["gen"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        self.epoch = int(state["epoch"])

    def start_from(self, weights: dict[str, torch.Tensor]) -> None:
        """Train on from ``weights`` (this network's state dict, e.g. a trial's kept weights)
        instead of the random init: the weights alone, before the first epoch; the optimiser,
        schedule, epoch count and random streams stay those of a fresh job. The weight average
        needs no reset: its first update copies the network. Weights handed in with a post-hoc
        shift are unshifted first."""
        if self.epoch:
            raise RuntimeError("start_from() is for a job that has not trained yet")
        self.model.load_state_dict(weights if self.shift is None else shifted(weights, self.classifier, self.shift, +1))
        self._saved = None

    def cpu_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu").contiguous() for k, v in self.model.state_dict().items()}


def fit(
    candidate: Candidate,
    data: TrainData,
    seed: int = 0,
    device: torch.device | str | None = None,
    on_epoch: Callable[[EpochResult], bool | None] | None = None,
) -> tuple[Trainer, list[EpochResult]]:
    """Train all epochs (``on_epoch`` returning True stops early); returns the trainer and history."""
    trainer = Trainer(candidate, data, seed, device)
    history: list[EpochResult] = []
    while not trainer.done:
        history.append(trainer.run_epoch())
        if on_epoch is not None and on_epoch(history[-1]):
            break
    return trainer, history
