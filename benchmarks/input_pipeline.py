"""The trainer's input pipeline against the usual PyTorch one, on mnist5k, one CPU thread.

    python benchmarks/input_pipeline.py

1. Batches: slices of in-memory tensors (ours) against a ``DataLoader`` over a
   ``TensorDataset`` (0 and 2 loader workers), for one epoch of a small CNN.
2. Augmentation (rotation, translation, scale, per image): one batched ``affine_grid`` /
   ``grid_sample`` (ours) against torchvision's v2 ``RandomAffine`` applied image by image
   (a v2 transform applied to a batch tensor draws one set of parameters for the whole batch).
3. Memory format: channels-last against contiguous NCHW for the same training epoch.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from automl_cnn.data import load_images, split_data
from automl_cnn.model.architecture import Architecture, Augmentation, ConvBlock, Dense, Head
from automl_cnn.model.builder import build_model
from automl_cnn.training.augment import augment

ARCH = Architecture((ConvBlock(filters=32), ConvBlock(filters=64, dropout=0.25)), Head(dense=(Dense(128, 0.5),)))
BATCH = 64


def _epoch(batches, channels_last: bool = True) -> float:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = build_model(ARCH, (1, 28, 28), 10)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters())
    start = time.perf_counter()
    for x, y in batches:
        x = (x.float() / 255.0).contiguous(memory_format=fmt)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def main() -> None:
    torch.set_num_threads(1)
    data = split_data(load_images("mnist5k"), seed=0).search_data()
    x = torch.from_numpy(data.x_train.copy())
    y = torch.from_numpy(data.y_train.copy())
    gen = torch.Generator().manual_seed(0)

    def ours():  # type: ignore[no-untyped-def]
        perm = torch.randperm(len(x), generator=gen)
        for s in range(0, len(x) - BATCH + 1, BATCH):
            idx = perm[s : s + BATCH]
            yield x[idx], y[idx]

    rows = [("in-memory tensor slices (ours)", _epoch(ours()))]
    for workers in (0, 2):
        loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True, drop_last=True, num_workers=workers)
        rows.append((f"DataLoader(TensorDataset), {workers} workers", _epoch(loader)))
    base = rows[0][1]
    print("\n1. one training epoch of a small CNN (3,500 images, batch 64)\n")
    print("| input pipeline | seconds | vs ours |")
    print("|---|---|---|")
    for name, secs in rows:
        print(f"| {name} | {secs:.2f} | {secs / base:.2f}x |")

    from torchvision.transforms import v2

    aug = Augmentation(rotation=10.0, translate=0.1, scale=0.1)
    tv = v2.RandomAffine(degrees=10.0, translate=(0.1, 0.1), scale=(0.9, 1.1))
    batches = [(x[s : s + BATCH].float() / 255.0) for s in range(0, len(x) - BATCH + 1, BATCH)]
    start = time.perf_counter()
    for b in batches:
        augment(b, aug, gen)
    batched = time.perf_counter() - start
    start = time.perf_counter()
    for b in batches:
        torch.stack([tv(img) for img in b])
    per_image = time.perf_counter() - start
    print("\n2. augmenting one epoch (rotation, translation, scale drawn per image)\n")
    print("| augmentation | seconds | vs ours |")
    print("|---|---|---|")
    print(f"| batched affine_grid + grid_sample (ours) | {batched:.2f} | 1.00x |")
    print(f"| torchvision v2 RandomAffine, image by image | {per_image:.2f} | {per_image / batched:.2f}x |")

    last = _epoch(ours(), channels_last=True)
    first = _epoch(ours(), channels_last=False)
    print("\n3. memory format for the same epoch\n")
    print("| memory format | seconds | vs channels-last |")
    print("|---|---|---|")
    print(f"| channels-last (ours) | {last:.2f} | 1.00x |")
    print(f"| contiguous NCHW | {first:.2f} | {first / last:.2f}x |")


if __name__ == "__main__":
    main()
