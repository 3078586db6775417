"""The executor contract, for both implementations: the in-process one (fast tier) and the Ray
one (slow tier, on a real local Ray runtime). The same job runs the same way on both."""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator

import pytest

from automl_cnn.data import load_images, split_data
from automl_cnn.model.architecture import Architecture, Candidate, ConvBlock, Head, TrainConfig
from automl_cnn.services.executor import Executor, cpu_count
from automl_cnn.services.inprocess import InProcessExecutor
from automl_cnn.services.ray_executor import RayExecutor
from automl_cnn.training.messages import JobResult, JobSpec

CANDIDATE = Candidate(Architecture((ConvBlock(filters=4),), Head()), TrainConfig(epochs=2, batch_size=64))


@pytest.fixture(params=["inprocess", pytest.param("ray", marks=pytest.mark.slow)])
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    if request.param == "ray":
        request.getfixturevalue("ray_session")
        ex: Executor = RayExecutor(1, cpus_per_trial=1.0)
    else:
        ex = InProcessExecutor(1)
    yield ex
    ex.shutdown()


def _next(ex: Executor, timeout: float = 120) -> JobResult:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        results = ex.wait(timeout=0.5)
        if results:
            assert len(results) == 1
            return results[0]
    raise AssertionError("no result in time")


def _started(ex: Executor, n: int = 1, timeout: float = 60) -> None:
    """Wait until ``n`` workers have started (Ray places actors asynchronously; jobs go only to
    started ones)."""
    end = time.monotonic() + timeout
    while ex.free < n:
        assert time.monotonic() < end, "workers did not start"
        assert ex.wait(timeout=0.5) == []
    assert ex.waiting() is None


def test_both_implementations_have_every_call_of_the_protocol() -> None:
    wanted = {n for n in dir(Executor) if not n.startswith("_")}
    for impl in (InProcessExecutor, RayExecutor):
        missing = {n for n in wanted if not hasattr(impl, n)}
        assert not missing, (impl, missing)
        for name in wanted - {"free", "jobs"}:
            want = list(inspect.signature(getattr(Executor, name)).parameters)
            assert list(inspect.signature(getattr(impl, name)).parameters) == want, (impl, name)
    assert cpu_count() >= 1


def test_a_job_runs_epoch_by_epoch_then_gives_its_weights(executor: Executor) -> None:
    data = executor.put(split_data(load_images("digits"), seed=0).search_data())
    _started(executor)
    assert executor.free == 1 and executor.jobs == []
    executor.submit(JobSpec("j", CANDIDATE.to_dict(), 0, data, want_checkpoint=True))
    assert executor.free == 0 and executor.jobs == ["j"]
    first = _next(executor)
    assert first.job == "j" and first.error is None and first.epoch is not None and first.epoch.epoch == 1
    assert not first.done and first.checkpoint is not None
    assert executor.where("j")["pid"] > 0
    assert first.epoch.fraction == 1.0
    executor.advance("j", fraction=0.5)  # the data-size fidelity: this epoch on half of the training split
    second = _next(executor)
    assert second.epoch is not None and second.epoch.epoch == 2 and second.done and second.checkpoint is None
    assert second.epoch.fraction == 0.5
    executor.request_weights("j")
    weights = _next(executor).weights
    assert weights is not None and any(k.endswith("weight") for k in weights)
    executor.release("j")
    assert executor.free == 1 and executor.jobs == []


def test_a_job_continues_from_its_checkpoint(executor: Executor) -> None:
    data = executor.put(split_data(load_images("digits"), seed=0).search_data())
    executor.submit(JobSpec("a", CANDIDATE.to_dict(), 0, data, want_checkpoint=True))
    checkpoint = _next(executor).checkpoint
    executor.release("a")
    executor.submit(JobSpec("b", CANDIDATE.to_dict(), 0, data, checkpoint))
    resumed = _next(executor)
    assert resumed.epoch is not None and resumed.epoch.epoch == 2 and resumed.done


def test_a_failing_job_answers_with_its_error(executor: Executor) -> None:
    data = executor.put(split_data(load_images("digits"), seed=0).search_data())
    huge_kernel = Candidate(Architecture((ConvBlock(kernel_size=9, padding="valid"),), Head()), TrainConfig())
    executor.submit(JobSpec("bad", huge_kernel.to_dict(), 0, data))
    result = _next(executor)
    assert result.job == "bad" and result.error and not result.lost and result.epoch is None


def test_threads_for_shares_the_pool_among_concurrent_jobs() -> None:
    ex = InProcessExecutor(4, threads=2)
    assert ex.threads_for(1) == 8 and ex.threads_for(2) == 4 and ex.threads_for(10) == 2


@pytest.mark.slow
def test_a_ray_pool_that_cannot_start_says_what_it_waits_for_then_gives_up(ray_session: None) -> None:
    from automl_cnn.errors import ResourcesUnavailable

    ex = RayExecutor(2, cpus_per_trial=512.0, placement_timeout=14.0)  # no node has 512 CPUs
    try:
        data = ex.put(split_data(load_images("digits"), seed=0).search_data())
        ex.submit(JobSpec("j", CANDIDATE.to_dict(), 0, data))  # queued: no worker has started
        assert ex.free == 0 and ex.jobs == ["j"]
        seen = None
        with pytest.raises(ResourcesUnavailable, match=r"need 512 CPU and 0 GPU each.*--wait-for-resources") as err:
            end = time.monotonic() + 60
            while time.monotonic() < end:
                assert ex.wait(timeout=0.5) == []
                seen = ex.waiting() or seen
        assert seen is not None and seen.startswith("waiting for resources: 2 worker(s) need 512 CPU")
        assert "\n" not in str(err.value)
    finally:
        ex.shutdown()


@pytest.mark.slow
def test_a_job_released_mid_epoch_does_not_hold_its_worker(ray_session: None) -> None:
    """The time budget stops trials mid-epoch and the final fit takes their worker: it must not
    wait for an epoch whose result is dropped (a fresh actor takes the slot)."""
    ex = RayExecutor(1, cpus_per_trial=1.0)
    try:
        data = ex.put(split_data(load_images("digits"), seed=0).search_data())
        _started(ex)
        first_pid = ex.slots[0].info["pid"]
        blocks = tuple(ConvBlock(filters=f, pooling="none", kernel_size=5) for f in (256, 512))
        slow = Candidate(Architecture(blocks, Head()), TrainConfig(epochs=50, batch_size=16))
        ex.submit(JobSpec("slow", slow.to_dict(), 0, data))  # an epoch takes about 20 s on one thread
        time.sleep(4.0)  # its first epoch is running, for longer than a short one would (REPLACE_AFTER_S)
        started = time.monotonic()
        ex.release("slow")
        ex.submit(JobSpec("next", CANDIDATE.to_dict(), 0, data))
        result = _next(ex, timeout=60)
        assert result.job == "next" and result.error is None
        assert time.monotonic() - started < 8
        assert ex.where("next")["pid"] != first_pid
    finally:
        ex.shutdown()


def test_an_answer_lost_with_its_host_is_a_lost_worker_and_the_pool_goes_on(
    ray_session: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call that finished just before its host was lost leaves its answer in that host's
    object store: ``ray.get`` raises an ``ObjectLostError`` (CI's multihost run saw
    ``ObjectReconstructionFailedError`` kill the driver). That is a lost worker, not a crash."""
    import ray
    from ray.exceptions import ObjectReconstructionFailedError

    ex = RayExecutor(1, cpus_per_trial=1.0)
    try:
        data = ex.put(split_data(load_images("digits"), seed=0).search_data())
        _started(ex)
        first_pid = ex.slots[0].info["pid"]
        ex.submit(JobSpec("gone", CANDIDATE.to_dict(), 0, data))
        lost = ex.slots[0].future
        real_get = ray.get

        def get(ref, *args, **kwargs):  # type: ignore[no-untyped-def]
            if ref is lost:  # the answer's only copy went with its host
                raise ObjectReconstructionFailedError(ref.hex(), None, "")
            return real_get(ref, *args, **kwargs)

        monkeypatch.setattr(ray, "get", get)
        result = _next(ex)
        assert (result.job, result.lost) == ("gone", True)
        assert result.error == "trial's answer was lost with its worker node during the trial"
        _started(ex)  # a fresh actor took the slot
        ex.submit(JobSpec("next", CANDIDATE.to_dict(), 0, data))
        result = _next(ex)
        assert result.job == "next" and result.error is None
        assert ex.where("next")["pid"] != first_pid
    finally:
        ex.shutdown()


def test_a_released_job_is_freed_even_inside_a_reference_cycle() -> None:
    """The worker freezes what is alive when it starts (so each release scans only what jobs
    made), and still frees a job's network at release when something holds it in a cycle."""
    import gc
    import weakref

    from automl_cnn.training.worker import TrialWorker

    worker = TrialWorker(threads=1, device="cpu")
    assert gc.get_freeze_count() > 0
    data = split_data(load_images("digits"), seed=0).search_data()
    assert worker.begin(JobSpec("j", CANDIDATE.to_dict(), 0, data)).error is None
    assert worker.trainer is not None
    network = weakref.ref(worker.trainer.model)
    worker.trainer.cycle = worker.trainer  # type: ignore[attr-defined]  # only the cyclic collector frees it
    gc.disable()  # no automatic collection: only the release's
    try:
        worker.release()
        assert network() is None
    finally:
        gc.enable()


def test_a_job_whose_trainer_fails_to_build_is_still_collected_at_release() -> None:
    """A job that fails before its Trainer exists (a bad candidate here; a CUDA OOM while moving
    the model in life) still gets the release's collection, which gives GPU memory back."""
    import gc

    from automl_cnn.training.worker import TrialWorker

    worker = TrialWorker(threads=1, device="cpu")
    data = split_data(load_images("digits"), seed=0).search_data()
    full: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(1)

    gc.disable()
    gc.callbacks.append(count)
    try:
        result = worker.begin(JobSpec("j", {"architecture": "not a candidate"}, 0, data))
    finally:
        gc.callbacks.remove(count)
        gc.enable()
    assert result.error and worker.job is None
    assert full, "the failed job's release ran no collection"
