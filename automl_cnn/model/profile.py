"""Static checks of a candidate before anything trains: shapes, parameters, FLOPs, limits.

Shapes are inferred from the record (so the reason for a refusal names the block and layer).
Parameters and FLOPs are torch's count: :func:`traced_profile` builds the network on PyTorch's
``meta`` device and runs it under ``torch.utils.flop_counter.FlopCounterMode`` (nothing is
allocated). For a network built from blocks, :func:`profile` gets the same numbers from the
shapes with torch's FLOP formulas (:mod:`automl_cnn.model.counting`), about a hundred times
faster; tests hold the two equal.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from automl_cnn.model.architecture import Architecture
from automl_cnn.model.builder import build_model
from automl_cnn.model.counting import counts_known, layer_counts
from automl_cnn.model.measures import Profile, Shape
from automl_cnn.model.shapes import feature_shapes


def profile(arch: Architecture, input_shape: Shape, num_classes: int) -> Profile:
    """Shapes, parameter count and FLOPs, without building the network where the shapes tell
    them (a backbone's are traced)."""
    shapes = feature_shapes(arch, input_shape)
    if not counts_known(arch):
        return traced_profile(arch, input_shape, num_classes)
    params, flops = layer_counts(arch, shapes, num_classes)
    return Profile(params=params, flops=flops, feature_shapes=tuple(shapes))


def traced_profile(arch: Architecture, input_shape: Shape, num_classes: int) -> Profile:
    """Shapes, parameter count and FLOPs from a forward pass of the network built on the ``meta``
    device under torch's ``FlopCounterMode`` (the reference count)."""
    shapes = feature_shapes(arch, input_shape)
    with torch.device("meta"):
        model = build_model(arch, input_shape, num_classes).eval()
        x = torch.empty(1, *input_shape)
        with FlopCounterMode(display=False) as counter:
            model(x)
    params = sum(p.numel() for p in model.parameters())
    return Profile(params=params, flops=int(counter.get_total_flops()), feature_shapes=tuple(shapes))


@dataclass(frozen=True)
class Limits:
    """Hard constraints: a candidate beyond any of them is never trained."""

    max_params: int | None = None
    max_flops: int | None = None
    max_latency_ms: float | None = None

    def violations(self, prof: Profile, latency_ms: float | None = None) -> list[str]:
        return [reason for reason, _ in self.check(prof, latency_ms).values()]

    def check(self, prof: Profile, latency_ms: float | None = None) -> dict[str, tuple[str, float]]:
        """Broken limits: ``name -> (reason, relative excess > 0)``, for Optuna constraints."""
        out: dict[str, tuple[str, float]] = {}
        if self.max_params is not None and prof.params > self.max_params:
            out["max_params"] = (
                f"{prof.params:,} parameters exceed --max-params {self.max_params:,}",
                prof.params / self.max_params - 1,
            )
        if self.max_flops is not None and prof.flops > self.max_flops:
            out["max_flops"] = (
                f"{prof.flops:,} FLOPs exceed --max-flops {self.max_flops:,}",
                prof.flops / self.max_flops - 1,
            )
        if self.max_latency_ms is not None and latency_ms is not None and latency_ms > self.max_latency_ms:
            out["max_latency_ms"] = (
                f"{latency_ms:.2f} ms per image exceeds --max-latency-ms {self.max_latency_ms:g}",
                latency_ms / self.max_latency_ms - 1,
            )
        return out


@torch.inference_mode()
def measure_latency_ms(
    network: nn.Module, input_shape: tuple[int, int, int], repeats: int = 15, max_seconds: float = 0.3
) -> float:
    """Median CPU time of one forward pass of one image, in milliseconds (one thread); at most
    ``repeats`` passes, fewer when they add up to ``max_seconds``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        network = network.eval()
        x = torch.rand(1, *input_shape)
        network(x)  # warm-up
        times: list[float] = []
        while len(times) < repeats and sum(times) < max_seconds:
            start = time.perf_counter()
            network(x)
            times.append(time.perf_counter() - start)
        return float(statistics.median(times) * 1000.0)
    finally:
        torch.set_num_threads(threads)
