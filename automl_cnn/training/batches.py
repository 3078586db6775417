"""Batches for the trainer: slices of in-memory tensors, or images streamed from disk.

In memory, a batch is one index into a tensor already on the training device: no data loader,
no per-batch copies beyond the slice. Images that do not fit the memory budget are decoded by
DataLoader worker processes, in the order the trainer draws (so a checkpoint resumes exactly).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from automl_cnn.data.images import ImageFiles, Pixels

Batch = tuple[torch.Tensor, torch.Tensor]


class Batches(Protocol):
    def __len__(self) -> int: ...

    def iterate(self, order: torch.Tensor, batch_size: int, drop_last: bool) -> Iterator[Batch]: ...


def _spans(n: int, batch_size: int, drop_last: bool) -> range:
    return range(0, (n // batch_size) * batch_size if drop_last else n, batch_size)


GPU_RESIDENT_SHARE = 0.25  # a dataset lives on the GPU when it takes at most this share of free memory


def fits_on_gpu(nbytes: int, device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes <= GPU_RESIDENT_SHARE * free


class TensorBatches:
    """In-memory tensors: on the GPU when they fit there (batches are then pure indexing),
    otherwise in pinned host memory, each batch copied asynchronously."""

    def __init__(self, x: np.ndarray, y: np.ndarray, device: torch.device) -> None:
        host_x = torch.from_numpy(np.ascontiguousarray(x).copy())
        host_y = torch.as_tensor(y, dtype=torch.long)
        self.device = device
        self.resident = device.type == "cpu" or fits_on_gpu(host_x.nbytes + host_y.nbytes, device)
        if self.resident:
            self.x, self.y = host_x.to(device), host_y.to(device)
        else:
            self.x, self.y = host_x.pin_memory(), host_y.pin_memory()

    def __len__(self) -> int:
        return len(self.y)

    def iterate(self, order: torch.Tensor, batch_size: int, drop_last: bool) -> Iterator[Batch]:
        order = order.to(self.x.device)
        for start in _spans(len(order), batch_size, drop_last):
            idx = order[start : start + batch_size]
            if self.resident:
                yield self.x[idx], self.y[idx]
            else:
                yield self.x[idx].to(self.device, non_blocking=True), self.y[idx].to(self.device, non_blocking=True)


class _Files(Dataset[tuple[torch.Tensor, int]]):
    def __init__(self, files: ImageFiles, y: np.ndarray) -> None:
        self.files, self.y = files, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.files.read([i])[0]), int(self.y[i])


class FileBatches:
    def __init__(self, files: ImageFiles, y: np.ndarray, device: torch.device, workers: int = 2) -> None:
        self.dataset = _Files(files, np.asarray(y))
        self.device = device
        self.workers = workers

    def __len__(self) -> int:
        return len(self.dataset)

    def iterate(self, order: torch.Tensor, batch_size: int, drop_last: bool) -> Iterator[Batch]:
        ids = order.tolist()
        plan = [ids[s : s + batch_size] for s in _spans(len(ids), batch_size, drop_last)]
        loader = DataLoader(
            self.dataset,
            batch_sampler=plan,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
        )
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def make_batches(x: Pixels, y: np.ndarray, device: torch.device, workers: int = 2) -> Batches:
    if isinstance(x, ImageFiles):
        return FileBatches(x, y, device, workers)
    return TensorBatches(x, y, device)
