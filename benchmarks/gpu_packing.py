"""Trials per hour with 1, 2 and 4 trials packed on one GPU (``--gpus-per-trial 1, 0.5, 0.25``).

Each packed trial is a separate process running automl-cnn's own trial worker
(``automl_cnn.training.worker.TrialWorker`` on ``cuda``: bf16 autocast, channels-last, data resident on
the GPU), the same code a Ray actor runs; N processes share the GPU as N Ray actors with
``num_gpus=1/N`` do. Every packing runs the same list of candidates to the end.

    # here (needs Optuna): sample the candidates and write the data once
    python benchmarks/gpu_packing.py --prepare .gpu --trials 24
    # on the GPU machine (needs only torch, numpy, pillow, pyyaml, safetensors)
    python benchmarks/gpu_packing.py --run .gpu --packs 1,2,4
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def prepare(folder: Path, trials: int, max_epochs: int, seed: int) -> None:
    import numpy as np
    import optuna

    from automl_cnn.data import load_images
    from automl_cnn.errors import InfeasibleArchitecture
    from automl_cnn.model.profile import profile
    from automl_cnn.space.sampling import sample_candidate
    from automl_cnn.space.schema import load_space

    folder.mkdir(parents=True, exist_ok=True)
    images = load_images("mnist5k")
    np.savez(folder / "mnist5k.npz", x=images.x, y=images.y)
    space = load_space("default").with_max_epochs(max_epochs)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    while len(out) < trials:
        trial = study.ask()
        cand = sample_candidate(trial, space)
        try:
            profile(cand.architecture, images.input_shape, images.num_classes)
        except InfeasibleArchitecture:
            continue
        out.append(cand.to_dict())
        study.tell(trial, 0.0)
    (folder / "candidates.json").write_text(json.dumps(out))
    print(f"wrote {len(out)} candidates and mnist5k.npz to {folder}")


def _worker(index: int, jobs: mp.Queue, results: mp.Queue, data_path: str) -> None:  # type: ignore[type-arg]
    import torch

    from automl_cnn.data import load_images, split_data
    from automl_cnn.training.messages import JobSpec
    from automl_cnn.training.worker import TrialWorker

    data = split_data(load_images(data_path), seed=0).search_data()
    worker = TrialWorker(threads=2, device="cuda")
    torch.cuda.reset_peak_memory_stats()
    while True:
        job = jobs.get()
        if job is None:
            break
        number, cand = job
        start = time.perf_counter()
        res = worker.begin(JobSpec(f"t{number}", cand, number, data))
        epochs = []
        while res.error is None:
            epochs.append(res.epoch)
            if res.done:
                break
            res = worker.step()
        worker.release()
        results.put(
            {
                "trial": number,
                "seconds": time.perf_counter() - start,
                "epochs": len(epochs),
                "val_acc": epochs[-1].val_acc if epochs else None,
                "error": res.get("error"),
                "peak_mem_mb": torch.cuda.max_memory_allocated() / 2**20,
            }
        )


def run(folder: Path, packs: list[int]) -> None:
    import torch

    cands = json.loads((folder / "candidates.json").read_text())
    data_path = str(folder / "mnist5k.npz")
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, bf16 {torch.cuda.is_bf16_supported()}")
    print(f"{len(cands)} candidates from search_spaces/default.yaml (mnist5k, 3,500 training images)\n")
    ctx = mp.get_context("spawn")
    rows = []
    for n in packs:
        jobs, results = ctx.Queue(), ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(i, jobs, results, data_path)) for i in range(n)]
        for p in procs:
            p.start()
        time.sleep(0.5)
        start = time.perf_counter()
        for i, c in enumerate(cands):
            jobs.put((i, c))
        for _ in procs:
            jobs.put(None)
        done = [results.get() for _ in cands]
        wall = time.perf_counter() - start
        for p in procs:
            p.join()
        failed = sum(1 for d in done if d["error"])
        per_trial = statistics.mean(d["seconds"] for d in done)
        rows.append((n, wall, len(cands) / wall * 3600, per_trial, failed, max(d["peak_mem_mb"] for d in done)))
        print(f"packed {n}: {wall:.1f} s for {len(cands)} trials", flush=True)
    base = rows[0][2]
    header = ["trials per GPU", "wall seconds", "trials per hour", "vs 1 per GPU", "mean seconds per trial"]
    print("\n| " + " | ".join([*header, "failed", "peak MiB per trial"]) + " |")
    print("|---|---|---|---|---|---|---|")
    for n, wall, tph, per, failed, mem in rows:
        print(f"| {n} | {wall:.1f} | {tph:.0f} | {tph / base:.2f}x | {per:.1f} | {failed} | {mem:.0f} |")


def run_ray(folder: Path, packs: list[int]) -> None:
    """The same candidates through automl-cnn's Ray executor: N actors with num_gpus=1/N."""
    import ray
    import torch

    from automl_cnn.data import load_images, split_data
    from automl_cnn.services.ray_executor import RayExecutor
    from automl_cnn.training.messages import JobSpec

    cands = json.loads((folder / "candidates.json").read_text())
    data = split_data(load_images(str(folder / "mnist5k.npz")), seed=0).search_data()
    ray.init(num_cpus=os.cpu_count(), num_gpus=torch.cuda.device_count(), include_dashboard=False, log_to_driver=False)
    ref = ray.put(data)
    print(f"Ray {ray.__version__}: {ray.cluster_resources().get('GPU', 0):g} GPU(s)\n")
    rows = []
    for n in packs:
        ex = RayExecutor(n_workers=n, cpus_per_trial=2, gpus_per_trial=1.0 / n)
        todo = list(enumerate(cands))
        seconds: dict[str, float] = {}
        failed = 0
        devices: set[str] = set()
        start = time.perf_counter()
        began: dict[str, float] = {}
        while todo or ex.jobs:
            while todo and ex.free:
                i, cand = todo.pop(0)
                began[f"t{i}"] = time.perf_counter()
                ex.submit(JobSpec(f"t{i}", cand, i, ref))
            for res in ex.wait(timeout=1.0):
                job = str(res.job)
                devices.add(str(ex.where(job).get("device")))
                if res.error is not None or res.done:
                    failed += res.error is not None
                    seconds[job] = time.perf_counter() - began[job]
                    ex.release(job)
                else:
                    ex.advance(job)
        wall = time.perf_counter() - start
        ex.shutdown()
        rows.append((n, wall, len(cands) / wall * 3600, statistics.mean(seconds.values()), failed, devices))
        print(f"Ray, {n} actor(s) with num_gpus={1 / n:g}: {wall:.1f} s for {len(cands)} trials", flush=True)
    base = rows[0][2]
    print("\n| trials per GPU (num_gpus) | wall seconds | trials per hour | vs 1 per GPU | mean s per trial | failed |")
    print("|---|---|---|---|---|---|")
    for n, wall, tph, per, failed, _dev in rows:
        print(f"| {n} ({1 / n:g}) | {wall:.1f} | {tph:.0f} | {tph / base:.2f}x | {per:.1f} | {failed} |")
    ray.shutdown()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prepare", type=Path)
    p.add_argument("--run", type=Path)
    p.add_argument("--ray", type=Path, help="run the packs through automl-cnn's Ray executor")
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--max-epochs", type=int, default=10)
    p.add_argument("--packs", default="1,2,4")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if args.prepare:
        prepare(args.prepare, args.trials, args.max_epochs, args.seed)
    if args.run:
        run(args.run, [int(x) for x in args.packs.split(",")])
    if args.ray:
        run_ray(args.ray, [int(x) for x in args.packs.split(",")])


if __name__ == "__main__":
    main()
