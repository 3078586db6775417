"""What a trial worker pays to start and release a job, with and without the frozen heap.

A worker collects garbage when it releases a job (a trial's network in a reference cycle is
freed at once, and GPU memory goes back). A full collection scans every tracked object of the
process: in a process that imported torch, MLflow, Optuna and Ray that is several hundred
thousand objects, twice a trial. :class:`TrialWorker` freezes what is alive when it starts, so
each collection scans only what jobs made. The baseline here unfreezes that heap again, in the
same process, and runs the same jobs.

    python benchmarks/worker_release.py --jobs 20
"""

from __future__ import annotations

import argparse
import gc
import time

import mlflow  # noqa: F401  # the imports of a driver process (the in-process executor's)
import optuna  # noqa: F401
import ray  # noqa: F401

from automl_cnn.data import load_images, split_data
from automl_cnn.model.architecture import Architecture, Candidate, ConvBlock, Head, TrainConfig
from automl_cnn.training.messages import JobSpec
from automl_cnn.training.worker import TrialWorker

CANDIDATE = Candidate(Architecture((ConvBlock(filters=4),), Head()), TrainConfig(epochs=1, batch_size=256))


def seconds_per_job(jobs: int, frozen: bool) -> tuple[float, float]:
    """Mean seconds per job (begin, one epoch, release) and per release alone."""
    worker = TrialWorker(threads=1, device="cpu")
    if not frozen:
        gc.unfreeze()
    data = split_data(load_images("digits"), seed=0).search_data()
    in_release = 0.0
    start = time.perf_counter()
    for i in range(jobs):
        result = worker.begin(JobSpec(f"j{i}", CANDIDATE.to_dict(), i, data))
        assert result.error is None, result.error
        t = time.perf_counter()
        worker.release()
        in_release += time.perf_counter() - t
    return (time.perf_counter() - start) / jobs, in_release / jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    args = parser.parse_args()
    seconds_per_job(2, frozen=True)  # warm-up: torch's first calls
    gc.unfreeze()
    print(f"tracked objects in this process: {len(gc.get_objects()):,}")
    base_job, base_release = seconds_per_job(args.jobs, frozen=False)
    gc.unfreeze()
    job, release = seconds_per_job(args.jobs, frozen=True)
    print(f"unfrozen heap (before): {base_job * 1000:7.1f} ms a job, {base_release * 1000:6.1f} ms of it in release")
    print(f"frozen heap (now):      {job * 1000:7.1f} ms a job, {release * 1000:6.1f} ms of it in release")
    print(f"release {base_release / max(release, 1e-9):.0f}x cheaper; a job {base_job / job:.2f}x faster")


if __name__ == "__main__":
    main()
