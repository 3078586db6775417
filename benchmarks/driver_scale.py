"""Does one driver process keep 16-256 concurrent trials busy? Measured by simulation.

The REAL search driver (``SearchDriver``, opened through ``app.make_plan`` / ``app.open_session``
with real Optuna storage, a real MLflow store and a real run folder) runs against
:class:`SimulatedExecutor`, a benchmark tool that plugs into the ``Executor`` protocol: it trains
nothing. Each "epoch" is ready when its simulated time has come (``--epoch`` seconds, scaled by
the epoch's share of the data) and reports the next point of a learning curve recorded in a real
search (``driver_scale_curves.json``). ``submit``/``advance`` never block; ``wait`` sleeps until
the next result is due. The search phase runs for ``--window`` seconds (the deadline handed to
the driver), then the driver stops every running trial; no final fit.

Per configuration it prints: how busy the slots were (busy slot-seconds / slots x window; Ray
Tune's bar is at most 20% overhead, i.e. at least ~83% busy), the driver's per-decision latency
(a result ready -> the driver's next call for that slot: ``advance`` or ``release``), the gap a
slot stays empty when a trial ends (result ready -> the next trial's ``submit``), and the trials.

    python benchmarks/driver_scale.py                       # 16, 64 slots x 1, 5 s epochs, 20 s each
    python benchmarks/driver_scale.py --slots 16,64,256 --epoch 1,5,30 --window 90
    python benchmarks/driver_scale.py --storage postgresql://u:p@host/db --tracking-uri http://host:5000

This is not an executor of the package and never a user-facing option: it exists to measure the
driver's loop, and stands in for Ray in no test that claims to test Ray.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from automl_cnn.model.measures import EpochResult
from automl_cnn.training.messages import JobResult, JobSpec, Outputs

CURVES = Path(__file__).with_name("driver_scale_curves.json")
Clock = Callable[[], float]


@dataclass
class _Slot:
    job: str | None = None
    spec: JobSpec | None = None
    epoch: int = 0  # epochs this job has finished
    start: float = 0.0  # when the running call started
    due: float | None = None  # when its result is ready (None: no call running)
    ready: float | None = None  # when the last result delivered was ready (None: none awaits a decision)
    fraction: float = 1.0
    freed: float | None = None  # when the slot's last trial ended (its result's ready time)


@dataclass
class SimStats:
    """What the simulation measured: busy intervals per call, and the driver's delays."""

    busy: list[tuple[float, float]] = field(default_factory=list)
    decisions: list[float] = field(default_factory=list)  # result ready -> advance/release
    refills: list[float] = field(default_factory=list)  # trial's last result ready -> next submit
    epochs: int = 0
    submitted: int = 0

    def utilisation(self, t0: float, t1: float, slots: int) -> float:
        busy = sum(max(0.0, min(b, t1) - max(a, t0)) for a, b in self.busy)
        return busy / (slots * (t1 - t0))


class SimulatedExecutor:
    """A benchmark's stand-in for a pool of trial workers: it trains nothing (see the module)."""

    def __init__(
        self,
        slots: int,
        epoch_seconds: float,
        curves: list[dict[str, list[float]]],
        checkpoint_bytes: int = 0,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.slots = [_Slot() for _ in range(slots)]
        self.epoch_seconds, self.curves = epoch_seconds, curves
        self.checkpoint_bytes, self.clock, self.sleep = checkpoint_bytes, clock, sleep
        self.stats = SimStats()
        self.n_eval, self.n_classes = 1, 2

    def _slot(self, job: str) -> _Slot:
        return next(s for s in self.slots if s.job == job)

    @property
    def free(self) -> int:
        return sum(1 for s in self.slots if s.job is None)

    @property
    def jobs(self) -> list[str]:
        return [s.job for s in self.slots if s.job is not None]

    def put(self, data: Any) -> Any:
        self.n_eval, self.n_classes = len(data.y_eval), int(data.num_classes)
        return data

    def threads_for(self, concurrent: int) -> int:
        return 1

    def _start(self, slot: _Slot, fraction: float) -> None:
        now = self.clock()
        if slot.ready is not None:
            self.stats.decisions.append(now - slot.ready)
            slot.ready = None
        slot.start, slot.fraction = now, fraction
        slot.due = now + self.epoch_seconds * fraction

    def submit(self, spec: JobSpec) -> None:
        slot = next(s for s in self.slots if s.job is None)
        if slot.freed is not None:
            self.stats.refills.append(self.clock() - slot.freed)
        slot.job, slot.spec, slot.freed = spec.job, spec, None
        slot.epoch = int(spec.checkpoint.split(b":")[1]) if spec.checkpoint else 0
        self.stats.submitted += 1
        self._start(slot, spec.fraction)

    def advance(self, job: str, want_checkpoint: bool = False, fraction: float = 1.0) -> None:
        self._start(self._slot(job), fraction)

    def request_weights(self, job: str) -> None:
        slot = self._slot(job)
        slot.start = slot.due = self.clock()
        slot.epoch = -1  # the next result carries weights

    def release(self, job: str) -> None:
        for slot in self.slots:
            if slot.job != job:
                continue
            now = self.clock()
            if slot.due is not None:  # an epoch cut short: busy until now
                self.stats.busy.append((slot.start, min(now, slot.due)))
            if slot.ready is not None:
                self.stats.decisions.append(now - slot.ready)
            slot.freed = slot.ready if slot.ready is not None else now
            slot.job, slot.spec, slot.due, slot.ready = None, None, None, None

    def wait(self, timeout: float) -> list[JobResult]:
        dues = [s.due for s in self.slots if s.due is not None]
        if dues:
            pause = min(min(dues) - self.clock(), timeout)
            if pause > 0:
                self.sleep(pause)
        elif timeout > 0:
            self.sleep(timeout)
        now = self.clock()
        return [self._result(s) for s in self.slots if s.due is not None and s.due <= now]

    def _result(self, slot: _Slot) -> JobResult:
        assert slot.due is not None and slot.spec is not None
        due, slot.due, slot.ready = slot.due, None, slot.due
        if slot.epoch < 0:
            return JobResult(slot.job, weights={"simulated": 0})
        self.stats.busy.append((slot.start, due))
        self.stats.epochs += 1
        slot.epoch += 1
        spec, epochs = slot.spec, int(slot.spec.candidate["training"]["epochs"])
        done = slot.epoch >= epochs
        blob = f"sim:{slot.epoch}:".encode().ljust(max(8, self.checkpoint_bytes), b"\0")
        outputs = None
        if done and spec.outputs:
            probs = np.full((self.n_eval, self.n_classes), 1.0 / self.n_classes, dtype=np.float16)
            outputs = Outputs(weights={"simulated": 0}, eval_probs=probs)
        return JobResult(slot.job, self._epoch(slot, due - slot.start), done, blob, outputs=outputs)

    def _epoch(self, slot: _Slot, seconds: float) -> EpochResult:
        """The next point of the trial's curve: one recorded curve per seed, its last value held."""
        assert slot.spec is not None
        curve = self.curves[zlib.crc32(str(slot.spec.seed).encode()) % len(self.curves)]
        at = min(slot.epoch, len(curve["val_acc"])) - 1
        point = {k: float(v[at]) for k, v in curve.items()}
        return EpochResult(
            slot.epoch,
            point["train_loss"],
            point["train_acc"],
            point["val_loss"],
            point["val_acc"],
            seconds,
            1e-3,
            fraction=slot.fraction,
        )

    def where(self, job: str) -> dict[str, Any]:
        return {"host": "simulated", "slot": self.slots.index(self._slot(job))} if job in self.jobs else {}

    def waiting(self) -> str | None:
        return None

    def shutdown(self) -> None:
        for job in self.jobs:
            self.release(job)


def load_curves(path: Path = CURVES) -> list[dict[str, list[float]]]:
    return list(json.loads(path.read_text(encoding="utf-8"))["curves"])


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass(frozen=True)
class Row:
    slots: int
    epoch: float
    stores: str
    window: float
    busy: float  # share of slot-seconds busy over the window
    busy_late: float  # the same over the window's second half (the first trials all launched)
    decision_ms: tuple[float, float]  # p50, p99
    refill_ms: tuple[float, float]
    started: int
    finished: int
    epochs: int
    stop_s: float  # the driver's stop of every running trial at the deadline
    cpu_s: float  # this process's CPU time over the window

    def markdown(self) -> str:
        overhead = 1 / self.busy - 1 if self.busy > 0 else float("inf")
        d, r = self.decision_ms, self.refill_ms
        return (
            f"| {self.slots} | {self.epoch:g} | {self.stores} | {self.window:.0f} | {self.busy:.1%} | {overhead:.1%} "
            f"| {self.busy_late:.1%} "
            f"| {d[0]:.0f} / {d[1]:.0f} | {r[0]:.0f} / {r[1]:.0f} | {self.started} | {self.finished} | {self.epochs} "
            f"| {self.cpu_s:.0f} | {self.stop_s:.1f} |"
        )


HEADER = (
    "| slots | epoch s | stores | window s | busy | overhead | busy, 2nd half | decision ms p50 / p99 "
    "| refill ms p50 / p99 | trials started | trials finished | epochs | driver CPU s | stop s |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def run_config(args: argparse.Namespace, slots: int, epoch: float, folder: Path) -> Row:
    """One search phase of the real driver over ``args.window`` seconds on ``slots`` simulated workers."""
    from automl_cnn.app import make_plan, open_session
    from automl_cnn.engine.config import SearchConfig
    from automl_cnn.engine.search.dedupe import Known
    from automl_cnn.engine.search.driver import SearchDriver
    from automl_cnn.engine.session import Resources
    from automl_cnn.services.tracking import MlflowTracker

    tracking = args.tracking_uri or f"sqlite:///{folder / 'mlflow.db'}"
    cfg = SearchConfig.from_settings(
        trials=10**6,  # no time budget: the window below is the deadline
        workers=slots,
        executor="inprocess",  # what the run records; the simulated executor is passed in below
        warm_start=(),
        pruner=args.pruner,
        data_fidelity=args.data_fidelity,
        max_epochs=args.max_epochs,
        storage=args.storage,
        tracking_uri=tracking,
        experiment=f"driver-scale-{slots}x{epoch:g}s",
        out=folder / "run",
        progress=False,
        seed=args.seed,
    )
    plan = make_plan(args.data, args.space, cfg, None)
    tracker = MlflowTracker(cfg.resolved_tracking_uri(), cfg.tracking.experiment)
    sim = SimulatedExecutor(slots, epoch, load_curves(), args.checkpoint_kb * 1024)
    with open_session(plan, tracker, Resources(slots, 0.0), executor=sim) as session:
        t0, cpu0 = time.monotonic(), time.process_time()
        end = t0 + args.window
        stop_at = session.budget.elapsed() + args.window  # the deadline is a time on the run's budget clock
        driver = SearchDriver(session, lambda _records: stop_at, Known())
        records = driver.run()
        t1, cpu1 = time.monotonic(), time.process_time()
    stats = sim.stats
    finished = sum(1 for r in records if r.outcome in ("completed", "pruned") and "time budget" not in (r.reason or ""))
    return Row(
        slots,
        epoch,
        args.stores_label,
        args.window,
        stats.utilisation(t0, end, slots),
        stats.utilisation(t0 + args.window / 2, end, slots),
        (percentile(stats.decisions, 50) * 1000, percentile(stats.decisions, 99) * 1000),
        (percentile(stats.refills, 50) * 1000, percentile(stats.refills, 99) * 1000),
        stats.submitted,
        finished,
        stats.epochs,
        max(0.0, t1 - end),
        cpu1 - cpu0,
    )


@contextlib.contextmanager
def cluster_stores(folder: Path) -> Iterator[tuple[str, str]]:
    """PostgreSQL (started as the tests start it) and an ``mlflow server`` over it; yields the
    Optuna storage URL and the tracking URI."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from servers import free_port, mlflow_cmd, process, wait_http
    from test_secrets import PG_USER, postgres

    password = secrets.token_hex(8)
    with postgres(password) as (pg_port, _work):
        db = f"postgresql://{PG_USER}:{password}@127.0.0.1:{pg_port}"
        port = free_port()
        server = mlflow_cmd(
            "server",
            "--backend-store-uri",
            f"{db}/mlflow",
            "--default-artifact-root",
            str(folder / "mlartifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        )
        folder.mkdir(parents=True, exist_ok=True)
        with process(server, folder / "mlflow-server.log") as proc:
            wait_http(f"http://127.0.0.1:{port}/health", timeout=300, proc=proc)
            yield f"{db}/optuna", f"http://127.0.0.1:{port}"


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--slots", default="16,64", help="concurrent simulated trials, e.g. 16,64,256")
    parser.add_argument("--epoch", default="1,5", help="seconds a full-data epoch takes, e.g. 1,5,30")
    parser.add_argument("--window", type=float, default=20.0, help="seconds of search phase per configuration")
    parser.add_argument("--data", default="digits", help="the dataset the driver prepares (not trained on)")
    parser.add_argument("--space", default="default")
    parser.add_argument("--pruner", default="asha")
    parser.add_argument("--data-fidelity", default="off", help="off: every epoch takes --epoch seconds")
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--checkpoint-kb", type=int, default=64, help="size of each simulated epoch checkpoint")
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default: a journal in the run folder)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow URI (default: a SQLite store per configuration)")
    parser.add_argument(
        "--cluster-stores", action="store_true", help="start PostgreSQL and an mlflow server over it (as the tests do)"
    )
    parser.add_argument(
        "--count-sql",
        action="store_true",
        help="count the SQL statements and commits this process sends (with --cluster-stores: Optuna's, "
        "MLflow being over HTTP)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="with --cluster-stores: the stores on the last CPU, the driver on the others, as if the stores ran on "
        "their own host (Linux only)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="keep the run folders here")
    args = parser.parse_args(argv)
    sql = "PostgreSQL" if (args.storage or "").startswith("postgresql") else "journal"
    args.stores_label = f"{sql} + {'MLflow server' if (args.tracking_uri or '').startswith('http') else 'SQLite'}"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    base = args.keep or Path(tempfile.mkdtemp(prefix="driver-scale-"))
    if not args.cluster_stores:
        return run_grid(args, base)
    cpus = sorted(os.sched_getaffinity(0))
    pinned = args.pin and len(cpus) > 1
    if pinned:  # the servers start on the last CPU (their processes inherit it), then the driver moves off it
        os.sched_setaffinity(0, cpus[-1:])
    with cluster_stores(base / "servers") as (storage, tracking):
        if pinned:
            os.sched_setaffinity(0, cpus[:-1])
        label = "PostgreSQL + MLflow server" + (f" (stores on CPU {cpus[-1]}, driver on the rest)" if pinned else "")
        args.storage, args.tracking_uri, args.stores_label = storage, tracking, label
        run_grid(args, base)


def count_sql() -> dict[str, int]:
    """A counter of the SQL statements and commits every SQLAlchemy engine in this process sends."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    counts = {"statements": 0, "commits": 0}

    def statement(*_args: Any) -> None:
        counts["statements"] += 1

    def commit(*_args: Any) -> None:
        counts["commits"] += 1

    event.listen(Engine, "before_cursor_execute", statement)
    event.listen(Engine, "commit", commit)
    return counts


def run_grid(args: argparse.Namespace, base: Path) -> None:
    rows: list[Row] = []
    sql = count_sql() if args.count_sql else None
    for slots in [int(v) for v in _floats(args.slots)]:
        for epoch in _floats(args.epoch):
            before = dict(sql) if sql is not None else {}
            row = run_config(args, slots, epoch, base / f"{slots}x{epoch:g}s")
            print(HEADER.splitlines()[0] if not rows else "", row.markdown(), sep="\n" if not rows else "", flush=True)
            if sql is not None:
                spent = {k: v - before[k] for k, v in sql.items()}
                trials = max(1, row.started)
                per = f"{spent['statements'] / trials:.0f} statements, {spent['commits'] / trials:.1f} commits"
                print(f"SQL: {spent['statements']} statements, {spent['commits']} commits ({per} a trial started)")
            rows.append(row)
    print("\n" + HEADER)
    for row in rows:
        print(row.markdown())


if __name__ == "__main__":
    main()
