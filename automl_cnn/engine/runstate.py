"""The run folder as a durable record, so a search killed at any moment can be resumed.

``run.json``       what was asked (data, settings), the MLflow ids, the time spent so far (the
                   run's :class:`~automl_cnn.engine.budget.Budget`, written with every save)
``trials.jsonl``   one line per finished trial (appended as each finishes)
``checkpoints/``   the last epoch checkpoint of each running trial and final fit, the
                   finished final fits' weights, and ``extend-N``: the best trials paused at the
                   learned ceiling when the search ended, for ``resume --more``
                   (:mod:`automl_cnn.engine.search.extension`) (written atomically; during the
                   search by a writer thread, :meth:`RunState.writes_in_background`)
``outputs/``       each completed trial's validation probabilities, and the weights of the best
                   ones (for ensembles and as the final fit's fallback)
``study.journal``  Optuna's own journal storage
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from automl_cnn.codec import from_jsonable, to_jsonable
from automl_cnn.engine.background import BackgroundFiles
from automl_cnn.engine.budget import Budget, Clock
from automl_cnn.engine.records import TrialRecord
from automl_cnn.errors import UserInputError
from automl_cnn.model.measures import EpochResult
from automl_cnn.training.messages import Outputs

RUN_FILE = "run.json"
TRIALS_FILE = "trials.jsonl"
CHECKPOINTS = "checkpoints"
OUTPUTS = "outputs"
FORMAT = "automl-cnn-run/1"
LOCK_FILE = "driver.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class RunState:
    folder: Path
    data: str
    config: dict[str, Any]
    fingerprint: str
    parent_run_id: str = ""
    study_name: str = ""
    tracking_uri: str = ""
    experiment: str = ""
    elapsed: float = 0.0  # seconds of the budget spent by earlier drivers (as run.json last said)
    state: str = "running"  # running | finished
    phase: str = "trials"  # trials | final_fit | delivering: where a resume continues
    final_jobs: list[list[int]] = field(default_factory=list)  # [trial number, seed, epochs] of each final fit
    ensemble: list[list[float]] = field(default_factory=list)  # [trial number, weight] of each member delivered
    final_notes: list[str] = field(default_factory=list)  # what the final plan decided, and why
    final_check: dict[str, float] = field(default_factory=dict)  # check-half accuracies it compared
    final_seeds: int = 1  # fits of the winner (a seed ensemble where the check half prefers them)
    model_uri: str = ""
    model_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    budget: Budget | None = field(default=None, repr=False, compare=False)  # this driver's, once opened
    background: BackgroundFiles | None = field(default=None, repr=False, compare=False)  # while a search runs

    __json_skip__: ClassVar[tuple[str, ...]] = ("budget", "background")  # budget: written as ``elapsed``

    # -- the run file --------------------------------------------------------------------------
    def open_budget(self, seconds: float | None, clock: Clock = time.monotonic, started: float | None = None) -> Budget:
        """This driver's time budget, its clock started at ``started`` (a ``clock`` reading: when
        the request came in, before the data loaded and Ray started) or now: ``seconds`` for the
        whole run, the time earlier drivers spent (``elapsed``) already counted. From now on every
        save writes the time spent up to then, which a resume restores."""
        self.budget = Budget(seconds, spent=self.elapsed, clock=clock, started=started)
        return self.budget

    def to_json(self) -> dict[str, Any]:
        """``run.json``'s object: the format, the fields, and ``elapsed`` as the time spent up to now."""
        d = {"format": FORMAT, **to_jsonable(self)}
        if self.budget is not None:
            d["elapsed"] = self.budget.elapsed()
        del d["folder"]  # the folder is where run.json lies, not something written in it
        return d

    def save(self) -> None:
        """Write ``run.json`` as it is now (during a search, by the writer thread)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        data = json.dumps(self.to_json(), indent=2, default=str).encode()
        if self.background is not None:
            self.background.submit(RUN_FILE, lambda: atomic_write(self.folder / RUN_FILE, data))
        else:
            atomic_write(self.folder / RUN_FILE, data)

    @classmethod
    def load(cls, folder: Path) -> RunState:
        path = folder / RUN_FILE
        if not path.is_file():
            raise UserInputError(f"{folder}: no {RUN_FILE} here; give the output folder of an automl-cnn search")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UserInputError(f"{path}: unreadable ({exc.__class__.__name__}); the run folder is damaged") from None
        if d.get("format") != FORMAT:
            raise UserInputError(f"{path}: unknown run format {d.get('format')!r}")
        return from_jsonable(cls, {**d, "folder": folder})

    # -- one driver at a time --------------------------------------------------------------------
    def acquire(self) -> None:
        """Claim the folder for this process; refuse if a live driver holds it."""
        lock = self.folder / LOCK_FILE
        if lock.is_file():
            try:
                pid = int(lock.read_text().strip() or 0)
            except ValueError:
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                raise UserInputError(
                    f"{self.folder}: a search is still running here (pid {pid}); wait for it or stop it"
                )
        self.folder.mkdir(parents=True, exist_ok=True)
        lock.write_text(str(os.getpid()))

    def release(self) -> None:
        (self.folder / LOCK_FILE).unlink(missing_ok=True)

    # -- trials and checkpoints ----------------------------------------------------------------
    def append_record(self, rec: TrialRecord) -> None:
        with (self.folder / TRIALS_FILE).open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec.to_json(), default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.drop_checkpoint(rec.number)

    def finished_records(self) -> list[TrialRecord]:
        path = self.folder / TRIALS_FILE
        if not path.is_file():
            return []
        out: dict[int, TrialRecord] = {}
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        for i, line in enumerate(lines):
            try:
                rec = TrialRecord.from_json(json.loads(line))
            except json.JSONDecodeError:
                if i == len(lines) - 1:  # the driver died while appending it: the study still has that trial
                    break
                raise UserInputError(f"{path}: line {i + 1} is damaged; the run folder cannot be resumed") from None
            except KeyError:  # an older driver's line for a trial that never started: no trial
                continue
            out[rec.number] = rec
        return [out[k] for k in sorted(out)]

    def checkpoint_path(self, key: int | str) -> Path:
        """A trial's checkpoint (``key`` its number) or a final fit's (``key`` its job name)."""
        return self.folder / CHECKPOINTS / (f"trial-{key}.pt" if isinstance(key, int) else f"{key}.pt")

    @contextlib.contextmanager
    def writes_in_background(self) -> Iterator[None]:
        """Inside, checkpoints are saved and dropped, and ``run.json`` saved, by a writer thread
        (engine/background.py), off the caller's path; all are on disk when it leaves (a
        checkpoint also at ``load_checkpoint``)."""
        self.background = BackgroundFiles()
        try:
            yield
        finally:
            background, self.background = self.background, None
            background.close()

    def save_checkpoint(self, key: int | str, blob: bytes, history: Sequence[EpochResult]) -> None:
        if self.background is not None:
            self.background.submit(("checkpoint", key), lambda: self._write_checkpoint(key, blob, history))
        else:
            self._write_checkpoint(key, blob, history)

    def _write_checkpoint(self, key: int | str, blob: bytes, history: Sequence[EpochResult]) -> None:
        path = self.checkpoint_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, blob)
        atomic_write(path.with_suffix(".json"), json.dumps([e.to_dict() for e in history]).encode())

    def load_checkpoint(self, key: int | str) -> tuple[bytes, list[EpochResult]] | None:
        if self.background is not None:
            self.background.flush()
        path = self.checkpoint_path(key)
        meta = path.with_suffix(".json")
        if not path.is_file() or not meta.is_file():
            return None
        history = [EpochResult(**e) for e in json.loads(meta.read_text(encoding="utf-8"))]
        return path.read_bytes(), history

    def drop_checkpoint(self, key: int | str) -> None:
        if self.background is not None:
            self.background.submit(("checkpoint", key), lambda: self._remove_checkpoint(key))
        else:
            self._remove_checkpoint(key)

    def _remove_checkpoint(self, key: int | str) -> None:
        path = self.checkpoint_path(key)
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)

    def save_weights(
        self, job: str, weights: dict[str, Any], history: list[EpochResult], outputs: Outputs | None = None
    ) -> None:
        """A finished final fit's weights (and its :class:`Outputs`): a resume during delivery does
        not train it again."""
        import io

        import torch

        saved: dict[str, Any] = {"weights": weights}
        if outputs is not None:
            saved["eval_probs"] = torch.tensor(outputs.eval_probs)
            if outputs.ema_weights is not None and outputs.ema_eval_probs is not None:
                saved["ema_weights"] = outputs.ema_weights
                saved["ema_eval_probs"] = torch.tensor(outputs.ema_eval_probs)
        buf = io.BytesIO()
        torch.save(saved, buf)
        self.save_checkpoint(f"{job}.weights", buf.getvalue(), history)

    def load_weights(self, job: str) -> tuple[dict[str, Any], list[EpochResult], Outputs | None] | None:
        import io

        import torch

        found = self.load_checkpoint(f"{job}.weights")
        if found is None:
            return None
        saved = torch.load(io.BytesIO(found[0]), weights_only=True)
        if "weights" not in saved:  # written before outputs were kept: the state dict alone
            return saved, found[1], None
        outputs = None
        if "eval_probs" in saved:
            ema = saved.get("ema_eval_probs")
            outputs = Outputs(
                saved["weights"],
                saved["eval_probs"].numpy(),
                saved.get("ema_weights"),
                None if ema is None else ema.numpy(),
            )
        return saved["weights"], found[1], outputs

    # -- completed trials' outputs ---------------------------------------------------------------
    def _output_path(self, number: int, kind: str) -> Path:
        return self.folder / OUTPUTS / f"trial-{number}.{kind}.pt"

    def save_outputs(self, number: int, weights: dict[str, Any], val_probs: Any) -> None:
        """A completed trial's weights and validation probabilities (float16 numpy)."""
        import io

        import torch

        (self.folder / OUTPUTS).mkdir(parents=True, exist_ok=True)
        for kind, obj in (("probs", torch.tensor(val_probs)), ("weights", weights)):
            buf = io.BytesIO()
            torch.save(obj, buf)
            atomic_write(self._output_path(number, kind), buf.getvalue())

    def _load_output(self, number: int, kind: str) -> Any:
        import torch

        path = self._output_path(number, kind)
        return torch.load(path, weights_only=True) if path.is_file() else None

    def load_val_probs(self, number: int) -> Any:
        """The trial's validation probabilities (numpy, float32), or None."""
        probs = self._load_output(number, "probs")
        return None if probs is None else probs.float().numpy()

    def load_trial_weights(self, number: int) -> dict[str, Any] | None:
        return self._load_output(number, "weights")  # type: ignore[no-any-return]

    def drop_trial_weights(self, number: int) -> None:
        """Delete trial ``number``'s stored weights (its probabilities stay)."""
        self._output_path(number, "weights").unlink(missing_ok=True)

    def keep_trial_weights(self, numbers: set[int]) -> None:
        """Delete the stored weights of every trial not in ``numbers`` (their probabilities stay)."""
        for path in (self.folder / OUTPUTS).glob("trial-*.weights.pt"):
            if int(path.name.split(".")[0].removeprefix("trial-")) not in numbers:
                path.unlink(missing_ok=True)
