"""Unit tests of the trainer's batches (automl_cnn.training.batches) and of the training-time
estimate a time-budgeted search uses (automl_cnn.engine.search.cost)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from automl_cnn.data.images import ImageFiles
from automl_cnn.engine.search.cost import CostModel, next_rung, rung_words, rungs, to_next_rung
from automl_cnn.training.batches import FileBatches, TensorBatches, fits_on_gpu, make_batches

CPU = torch.device("cpu")


def labelled_images(n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Images whose every pixel is their own index, so a batch says which images it holds."""
    x = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 1, 3, 4)).copy()
    y = (np.arange(n) * 7) % 5
    return x, y


def write_files(tmp_path: Path, x: np.ndarray) -> ImageFiles:
    paths = []
    for i, img in enumerate(x):
        p = tmp_path / f"{i}.png"
        Image.fromarray(img[0]).save(p)
        paths.append(str(p))
    return ImageFiles(tuple(paths), "L", (x.shape[2], x.shape[3]))


def drawn(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> list[list[int]]:
    return [xb[:, 0, 0, 0].tolist() for xb, _ in batches]


# -- in-memory tensors ------------------------------------------------------------------------------


def test_tensor_batches_follow_the_order_and_keep_labels_with_images() -> None:
    x, y = labelled_images(10)
    batches = TensorBatches(x, y, CPU)
    assert len(batches) == 10 and batches.resident
    order = torch.tensor([9, 2, 5, 0, 1, 3, 8, 7, 6, 4])
    got = list(batches.iterate(order, 4, drop_last=False))
    assert drawn(got) == [[9, 2, 5, 0], [1, 3, 8, 7], [6, 4]]
    for xb, yb in got:
        assert xb.dtype == torch.uint8 and yb.dtype == torch.long
        assert xb.shape[1:] == (1, 3, 4)
        np.testing.assert_array_equal(yb.numpy(), y[xb[:, 0, 0, 0].numpy()])


def test_tensor_batches_drop_last() -> None:
    x, y = labelled_images(10)
    batches = TensorBatches(x, y, CPU)
    got = list(batches.iterate(torch.arange(10), 4, drop_last=True))
    assert drawn(got) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert list(batches.iterate(torch.arange(3), 4, drop_last=True)) == []
    assert drawn(list(batches.iterate(torch.arange(3), 4, drop_last=False))) == [[0, 1, 2]]


def test_tensor_batches_hold_their_own_copy() -> None:
    x, y = labelled_images(4)
    x_float = x.astype(np.float32) / 255.0
    batches = TensorBatches(x_float, y, CPU)
    x_float[:] = 1.0  # the caller's array changes after the batches were made
    (xb, _), *_ = batches.iterate(torch.arange(4), 4, drop_last=False)
    assert xb.dtype == torch.float32
    assert torch.allclose(xb[:, 0, 0, 0], torch.arange(4, dtype=torch.float32) / 255.0)


def test_a_subset_order_draws_only_those_images() -> None:
    x, y = labelled_images(10)
    got = list(TensorBatches(x, y, CPU).iterate(torch.tensor([7, 3]), 64, drop_last=False))
    assert drawn(got) == [[7, 3]]


def test_cpu_data_never_counts_as_fitting_on_a_gpu() -> None:
    assert fits_on_gpu(0, CPU) is False
    assert fits_on_gpu(10**15, torch.device("meta")) is False


@pytest.mark.gpu
def test_gpu_residency_follows_free_memory() -> None:
    cuda = torch.device("cuda")
    assert fits_on_gpu(1024, cuda)
    assert not fits_on_gpu(10**15, cuda)
    x, y = labelled_images(8)
    batches = TensorBatches(x, y, cuda)
    assert batches.resident and batches.x.device.type == "cuda"
    xb, yb = next(iter(batches.iterate(torch.arange(8), 8, drop_last=False)))
    assert xb.device.type == "cuda" and yb.device.type == "cuda"


# -- images streamed from disk ----------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 1])
def test_file_batches_read_the_same_batches_as_memory(tmp_path: Path, workers: int) -> None:
    x, y = labelled_images(9)
    files = write_files(tmp_path, x)
    streamed = make_batches(files, y, CPU, workers=workers)
    in_memory = make_batches(x, y, CPU)
    assert isinstance(streamed, FileBatches) and isinstance(in_memory, TensorBatches)
    assert len(streamed) == len(in_memory) == 9
    order = torch.randperm(9, generator=torch.Generator().manual_seed(0))
    for drop_last in (False, True):
        a = list(streamed.iterate(order, 4, drop_last))
        b = list(in_memory.iterate(order, 4, drop_last))
        assert len(a) == len(b) == (2 if drop_last else 3)
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            assert xa.dtype == xb.dtype == torch.uint8
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


# -- the cost model ---------------------------------------------------------------------------------


def test_work_counts_backward_on_train_and_forward_on_val() -> None:
    cost = CostModel(n_train=100, n_val=20)
    assert cost.work(1_000) == 1_000 * (3 * 100 + 20)
    assert cost.work(2_000) == 2 * cost.work(1_000)
    assert CostModel(n_train=200, n_val=20).work(1_000) > cost.work(1_000)


def test_no_estimate_before_three_measurements() -> None:
    cost = CostModel(n_train=100, n_val=20)
    assert cost.lower_bound_seconds(10**6, epochs=5) is None
    cost.observe(10**6, 2.0)
    cost.observe(10**6, 1.0)
    assert cost.lower_bound_seconds(10**6, epochs=5) is None
    cost.observe(10**6, 4.0)
    assert cost.lower_bound_seconds(10**6, epochs=5) is not None


def test_lower_bound_uses_the_fastest_measured_rate() -> None:
    cost = CostModel(n_train=1_000, n_val=200)
    for seconds in (4.0, 1.0, 2.0):  # the same network: the 1 s epoch is the fastest rate
        cost.observe(5 * 10**6, seconds)
    # the same network for 3 epochs: at best 3 x its fastest epoch
    assert cost.lower_bound_seconds(5 * 10**6, epochs=3) == pytest.approx(3.0)
    # twice the FLOPs take (at least) twice as long
    assert cost.lower_bound_seconds(10**7, epochs=3) == pytest.approx(6.0)
    cost.observe(5 * 10**6, 0.5)  # a faster epoch lowers the bound; a slower one would not
    assert cost.lower_bound_seconds(5 * 10**6, epochs=3) == pytest.approx(1.5)
    cost.observe(5 * 10**6, 9.0)
    assert cost.lower_bound_seconds(5 * 10**6, epochs=3) == pytest.approx(1.5)


def test_meaningless_measurements_are_ignored() -> None:
    cost = CostModel(n_train=10, n_val=10)
    cost.observe(0, 1.0)  # no FLOPs known
    cost.observe(10**6, 0.0)  # no time measured
    cost.observe(-5, 1.0)
    assert cost.rates == []
    for _ in range(3):
        cost.observe(10**6, 0.5)
    assert len(cost.rates) == 3 and all(r > 0 for r in cost.rates)


def test_cost_models_do_not_share_measurements() -> None:
    a, b = CostModel(1, 1), CostModel(1, 1)
    a.observe(10, 1.0)
    assert b.rates == []


def test_the_rungs_a_trial_must_reach_next() -> None:
    assert rungs("asha", 15) == rungs("hyperband", 15) == (1, 3, 9)
    assert rungs("median", 4) == (1, 2, 3) and rungs("none", 15) == ()
    assert [next_rung((1, 3, 9), done, 15) for done in (0, 1, 2, 3, 8, 9, 14)] == [1, 3, 3, 9, 9, 15, 15]
    assert next_rung((), 0, 15) == 15  # no pruner: its last epoch
    assert next_rung((1, 3, 9), 3, 6) == 6  # a rung past its last epoch is completing
    assert rung_words(9, 15) == "its next rung, epoch 9," and rung_words(15, 15) == "its last epoch, 15,"


def test_a_running_trial_is_judged_by_its_next_rung_with_slack_only_between_rungs() -> None:
    from types import SimpleNamespace

    from automl_cnn.engine.records import TrialRecord
    from automl_cnn.model.architecture import Architecture, Candidate, ConvBlock, Head, TrainConfig
    from automl_cnn.model.measures import EpochResult

    cand = Candidate(Architecture((ConvBlock(),), Head()), TrainConfig(epochs=15))

    def after(done: int, pruner: str = "asha") -> tuple[float, str, float]:
        history = tuple(EpochResult(n, 1.0, 0.5, 1.0, 0.5, 10.0, 1e-3) for n in range(1, done + 1))
        session = SimpleNamespace(config=SimpleNamespace(search=SimpleNamespace(pruner=pruner)))
        return to_next_rung(session, TrialRecord(0, 0, "r", cand, history=history), None)  # type: ignore[arg-type]

    assert after(1) == (30.0, "its next rung, epoch 3,", 2.0)  # the first epoch alone: warm-up
    assert after(3) == (90.0, "its next rung, epoch 9,", 1.0)  # at a rung: judged on the cap
    assert after(4) == (90.0, "its next rung, epoch 9,", 1.5)  # between rungs: only when far over
    assert after(9) == (150.0, "its last epoch, 15,", 1.0)  # past the top rung: completing
    assert after(4, "none") == (150.0, "its last epoch, 15,", 1.0)  # no pruner: every epoch decides


# -- the Ray runtime: what can be checked without starting Ray --------------------------------------


def test_ray_runtime_with_a_malformed_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed ``--ray-address`` fails at once with one line naming the fix and starts
    nothing; inside a test session that already runs Ray, that runtime is reused as it is."""
    import logging
    import signal

    import ray

    from automl_cnn.errors import UserInputError
    from automl_cnn.services.ray_runtime import ray_runtime

    if ray.is_initialized():  # the suite's shared runtime (conftest's ray_session) is up: joined, not stopped
        with ray_runtime("bogus") as resources:
            assert resources.get("CPU", 0) >= 1
        assert ray.is_initialized()
        return
    monkeypatch.delenv("RAY_DEDUP_LOGS", raising=False)
    ray_logger = logging.getLogger("ray")
    level = ray_logger.level
    handler = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(UserInputError) as exc, ray_runtime("bogus"):
            pytest.fail("no runtime may start for a malformed address")
    finally:
        signal.signal(signal.SIGTERM, handler)  # see the next test
    line = str(exc.value)
    assert "\n" not in line
    assert line.startswith("cannot connect to the Ray cluster at bogus (")
    assert line.endswith(
        "start it with 'ray start --head' or fix --ray-address; a cluster with token "
        "authentication needs RAY_AUTH_MODE=token and its token in RAY_AUTH_TOKEN"
    )
    assert not ray.is_initialized()
    assert ray_logger.level == level  # the start-up silencing is undone


@pytest.mark.parametrize("kind", ["callable", "default", "ignore"])
def test_a_failed_connection_keeps_the_callers_sigterm_handler(kind: str) -> None:
    """ray.init installs its own SIGTERM handler before it fails: the caller's (the CLI's, or
    the default) must be back once the start-up has failed."""
    import signal
    from collections.abc import Callable
    from types import FrameType

    import ray

    from automl_cnn.errors import UserInputError
    from automl_cnn.services.ray_runtime import ray_runtime

    if ray.is_initialized():
        pytest.skip("a Ray runtime is already up in this process")

    def callers_handler(signum: int, frame: object) -> None:
        """What the CLI (or an application embedding search()) installs."""

    handler: Callable[[int, FrameType | None], object] | signal.Handlers = callers_handler
    if kind != "callable":
        handler = signal.SIG_DFL if kind == "default" else signal.SIG_IGN
    before = signal.signal(signal.SIGTERM, handler)
    try:
        with pytest.raises(UserInputError), ray_runtime("bogus"):
            pass
        after = signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert after is handler


SERVER_TRACEBACK = (
    "Initialization failure from server:\nTraceback (most recent call last):\n"
    '  File ".../ray/_private/authentication/x.py", line 1, in Datapath\n'
    "RuntimeError: Proxy failed to Connect to backend! Check `ray_client_server.err`"
)


@pytest.mark.parametrize("fails", [1, 2, 3])
def test_ray_client_tries_again_when_the_head_could_not_start_its_server(
    monkeypatch: pytest.MonkeyPatch, fails: int
) -> None:
    """Ray Client's per-driver server may not come up in time on a busy head: the init is tried
    up to three times, and the error that ends it names the server's reason, not its traceback."""
    from automl_cnn.services import ray_runtime as rt

    calls: list[str] = []

    def init(address: str, **_kw: object) -> None:
        calls.append(address)
        if len(calls) <= fails:
            raise ConnectionAbortedError(SERVER_TRACEBACK)

    monkeypatch.setattr(rt.ray, "init", init)
    monkeypatch.setattr(rt.time, "sleep", lambda _s: None)
    if fails < rt.CLIENT_TRIES:
        rt._connect("ray://head:10001", {})
        assert len(calls) == fails + 1
    else:
        with pytest.raises(ConnectionAbortedError) as exc:
            rt._connect("ray://head:10001", {})
        assert len(calls) == rt.CLIENT_TRIES
        reason = rt._reason(exc.value)
        assert reason == (
            "Initialization failure from server: RuntimeError: Proxy failed to Connect to backend! "
            "Check `ray_client_server.err`"
        )
    calls.clear()
    with pytest.raises(ConnectionAbortedError):  # a GCS address is not Ray Client: no second try
        rt._connect("10.0.0.1:6379", {})
    assert len(calls) == 1

    def refused(address: str, **_kw: object) -> None:
        calls.append(address)
        raise ConnectionAbortedError("Initialization failure from server:\nAuthenticationError: invalid token")

    calls.clear()
    monkeypatch.setattr(rt.ray, "init", refused)
    with pytest.raises(ConnectionAbortedError):  # a refused token is refused again: no second try
        rt._connect("ray://head:10001", {})
    assert len(calls) == 1
