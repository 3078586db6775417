"""Trial records and the run folder written and read back (no Ray, no MLflow)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from automl_cnn.engine.background import BackgroundFiles
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.runstate import FORMAT, LOCK_FILE, RUN_FILE, TRIALS_FILE, RunState
from automl_cnn.errors import UserInputError
from automl_cnn.model.architecture import Architecture, Augmentation, Candidate, ConvBlock, Dense, Head, TrainConfig
from automl_cnn.model.measures import EpochResult, Profile

CANDIDATE = Candidate(
    Architecture(
        (ConvBlock(filters=16, dropout=0.25), ConvBlock(type="residual", convs=2, filters=32, pooling="none")),
        Head("global_avg", (Dense(64, 0.5),), "gelu"),
    ),
    TrainConfig(optimizer="sgd", learning_rate=0.01, epochs=3, augmentation=Augmentation(hflip=True, rotation=10.0)),
)
HISTORY = [EpochResult(1, 1.5, 0.4, 1.2, 0.5, 2.0, 0.01), EpochResult(2, 0.9, 0.7, 0.8, 0.75, 1.5, 0.005)]

# the run.json keys written before records serialised themselves, in their order
OLD_RUN_KEYS = [
    "format",
    "data",
    "config",
    "fingerprint",
    "parent_run_id",
    "study_name",
    "tracking_uri",
    "experiment",
    "elapsed",
    "state",
    "phase",  # added with resume at the final fit / delivery
    "final_jobs",
    "ensemble",  # added with ensembles and the checked final fit
    "final_notes",
    "final_check",
    "final_seeds",
    "model_uri",
    "model_version",
    "extra",
]


def _record(number: int = 4, **changes: Any) -> TrialRecord:
    fields: dict[str, Any] = {
        "number": number,
        "seed": 1234,
        "run_id": f"run-{number}",
        "candidate": CANDIDATE,
        "profile": Profile(params=1000, flops=20000, feature_shapes=((16, 14, 14), (32, 7, 7))),
        "outcome": "completed",
        "reason": "",
        "history": tuple(HISTORY),
        "seconds": 3.75,
        "where": {"host": "node-1", "device": "cuda:0"},
        "too_slow": True,
        "latency_ms": 0.42,
        "duplicate_of": 2,
        "preset": "vgg_small",
        "retries": 1,
        "reused_from": "/runs/earlier",
    }
    return TrialRecord(**{**fields, **changes})


def _saved_fields(rec: TrialRecord) -> dict[str, Any]:
    d = asdict(rec)
    del d["started"], d["where"]
    return d


def _state(folder: Path, **changes: Any) -> RunState:
    return RunState(**{"folder": folder, "data": "digits", "config": {"trials": 3}, "fingerprint": "abc", **changes})


# a trials.jsonl line as the writer before TrialRecord.to_json wrote it
OLD_LINE: dict[str, Any] = {
    "number": 7,
    "seed": 99,
    "run_id": "abc123",
    "candidate": {
        "architecture": {
            "blocks": [
                {
                    "type": "plain",
                    "convs": 1,
                    "filters": 8,
                    "kernel_size": 3,
                    "stride": 1,
                    "padding": "same",
                    "activation": "relu",
                    "batch_norm": True,
                    "pooling": "max",
                    "pool_size": 2,
                    "dropout": 0.0,
                }
            ],
            "head": {"type": "flatten", "dense": [{"units": 32, "dropout": 0.1}], "activation": "relu"},
        },
        "training": {
            "optimizer": "adam",
            "learning_rate": 0.001,
            "weight_decay": 0.0,
            "momentum": 0.0,
            "batch_size": 32,
            "epochs": 2,
            "lr_schedule": "constant",
            "label_smoothing": 0.0,
            "augmentation": {
                "hflip": False,
                "crop_padding": 0,
                "rotation": 0.0,
                "translate": 0.0,
                "scale": 0.0,
                "color_jitter": 0.0,
            },
        },
    },
    "profile": {"params": 5000, "flops": 80000, "feature_shapes": [[8, 4, 4]]},
    "outcome": "pruned",
    "reason": "asha",
    "history": [
        {"epoch": 1, "train_loss": 2.0, "train_acc": 0.3, "val_loss": 1.9, "val_acc": 0.35, "seconds": 0.5, "lr": 0.001}
    ],
    "seconds": 0.75,
    "too_slow": False,
    "latency_ms": None,
    "duplicate_of": None,
    "preset": None,
    "retries": 0,
    "reused_from": "",
}


# -- trial records -----------------------------------------------------------------------------


def test_a_record_comes_back_through_json_text() -> None:
    rec = _record()
    back = TrialRecord.from_json(json.loads(json.dumps(rec.to_json())))
    assert _saved_fields(back) == _saved_fields(rec)
    assert back.candidate == CANDIDATE and back.candidate.key() == CANDIDATE.key()
    assert back.profile is not None and back.profile.feature_shapes == ((16, 14, 14), (32, 7, 7))
    assert isinstance(back.profile.feature_shapes[0], tuple)
    assert back.history == tuple(HISTORY)
    assert (back.duplicate_of, back.preset, back.retries, back.reused_from) == (2, "vgg_small", 1, "/runs/earlier")
    assert back.val_acc == 0.75


def test_the_clock_and_where_it_ran_are_not_written() -> None:
    rec = _record(started=12.5)
    d = rec.to_json()
    assert "started" not in d and "where" not in d
    back = TrialRecord.from_json(d)
    assert back.where == {}
    assert back.started != 12.5  # a fresh clock for this process


def test_a_record_is_frozen_and_changes_by_replacing_it() -> None:
    rec = _record(outcome="running", history=())
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.outcome = "completed"  # type: ignore[misc]
    ended = dataclasses.replace(rec, outcome="completed", history=tuple(HISTORY))
    assert (rec.outcome, rec.history, ended.outcome, ended.val_acc) == ("running", (), "completed", 0.75)


def test_a_record_without_profile() -> None:
    rec = TrialRecord(number=0, seed=1, run_id="r", candidate=CANDIDATE, outcome="failed", reason="boom")
    d = json.loads(json.dumps(rec.to_json()))
    assert d["profile"] is None and d["history"] == []
    back = TrialRecord.from_json(d)
    assert _saved_fields(back) == _saved_fields(rec)


def test_an_older_line_of_a_trial_that_never_started_is_no_record(tmp_path: Path) -> None:
    # the writer before candidates were required wrote one for a trial asked of the study, never sampled
    unstarted = {"number": 3, "seed": 1, "run_id": "", "candidate": None, "outcome": "failed"}
    with pytest.raises(KeyError):
        TrialRecord.from_json(unstarted)
    state = _state(tmp_path)
    state.append_record(_record(1))
    with (tmp_path / TRIALS_FILE).open("a", encoding="utf-8") as f:
        f.write(json.dumps({**unstarted, "reason": "interrupted before it started"}) + "\n")
    assert [r.number for r in state.finished_records()] == [1]


def test_a_candidate_keeps_its_key_when_a_float_setting_was_written_as_an_int() -> None:
    # as Optuna's user attrs read it (Candidate.from_json): a 0 stays 0, so the dedupe key matches
    cand = Candidate(
        Architecture((ConvBlock(),)), TrainConfig(label_smoothing=0, augmentation=Augmentation(rotation=5))
    )
    back = TrialRecord.from_json(json.loads(json.dumps(_record(candidate=cand).to_json())))
    assert back.candidate.key() == cand.key() == Candidate.from_json(cand.to_json()).key()


def test_a_line_written_by_the_old_writer_is_read() -> None:
    rec = TrialRecord.from_json(OLD_LINE)
    assert rec.number == 7 and rec.seed == 99 and rec.run_id == "abc123"
    assert rec.outcome == "pruned" and rec.reason == "asha" and rec.seconds == 0.75
    assert rec.candidate == Candidate(
        Architecture((ConvBlock(filters=8),), Head("flatten", (Dense(32, 0.1),))),
        TrainConfig(momentum=0.0, batch_size=32, epochs=2),
    )
    assert rec.profile == Profile(5000, 80000, ((8, 4, 4),))
    assert rec.history == (EpochResult(1, 2.0, 0.3, 1.9, 0.35, 0.5, 0.001),)
    assert rec.latency_ms is None and rec.duplicate_of is None and rec.preset is None
    # the new writer writes the very same object, plus the per-epoch fields added since
    # (the batch size an epoch trained with, its out-of-memory back-offs, the share of the data it
    # trained on), and the record's data-fidelity plan and the trial it continues, at their defaults
    written = rec.to_json()
    added = {"batch_size": 0, "oom_backoffs": 0, "fraction": 1.0}
    assert [{k: v for k, v in e.items() if k not in added} for e in written["history"]] == OLD_LINE["history"]
    assert all({k: e[k] for k in added} == added for e in written["history"])
    plan = {"fractions": [], "eval_share": 0.0, "continues": None}
    assert {k: written.pop(k) for k in plan} == plan
    assert {**written, "history": OLD_LINE["history"]} == OLD_LINE


def test_an_older_line_lacking_later_keys_takes_defaults() -> None:
    line = {"number": 1, "seed": 2, "run_id": "r", "candidate": CANDIDATE.to_dict(), "outcome": "completed"}
    rec = TrialRecord.from_json({**line, "future_key": 1})
    assert (rec.too_slow, rec.latency_ms, rec.retries, rec.reused_from, rec.history) == (False, None, 0, "", ())


# -- the run file ------------------------------------------------------------------------------


def test_run_state_round_trip(tmp_path: Path) -> None:
    state = _state(
        tmp_path / "run",
        parent_run_id="p1",
        study_name="s1",
        tracking_uri="sqlite:///x.db",
        experiment="e",
        elapsed=100.0,
        state="finished",
        model_uri="models:/m/1",
        model_version="1",
        extra={"best": 3, "notes": ["a", "b"], "nested": {"k": 1.5}},
    )
    state.save()
    back = RunState.load(tmp_path / "run")
    assert back.folder == tmp_path / "run"
    for name in ("data", "config", "fingerprint", "parent_run_id", "study_name", "tracking_uri", "experiment"):
        assert getattr(back, name) == getattr(state, name)
    assert (back.state, back.model_uri, back.model_version) == ("finished", "models:/m/1", "1")
    assert back.extra == {"best": 3, "notes": ["a", "b"], "nested": {"k": 1.5}}
    assert back.elapsed == 100.0  # no budget opened: the time spent as it was
    assert back.budget is None


def test_run_json_keeps_its_keys(tmp_path: Path) -> None:
    state = _state(tmp_path, elapsed=5.0)
    state.open_budget(60.0)
    d = state.to_json()
    assert list(d) == OLD_RUN_KEYS
    assert d["format"] == FORMAT and d["elapsed"] >= 5.0
    state.save()
    assert list(json.loads((tmp_path / RUN_FILE).read_text())) == OLD_RUN_KEYS


def test_a_run_json_written_by_the_old_writer_loads(tmp_path: Path) -> None:
    old = {
        "format": "automl-cnn-run/1",
        "data": "mnist",
        "config": {"trials": 5, "out": str(tmp_path), "split": [0.7, 0.15, 0.15]},
        "fingerprint": "f00",
        "parent_run_id": "pr",
        "study_name": "st",
        "tracking_uri": "sqlite:///m.db",
        "experiment": "automl-cnn",
        "elapsed": 42,
        "state": "running",
        "model_uri": "",
        "model_version": "",
        "extra": {"k": "v"},
    }
    (tmp_path / RUN_FILE).write_text(json.dumps(old, indent=2))
    state = RunState.load(tmp_path)
    assert state.config == old["config"] and state.extra == {"k": "v"}
    assert isinstance(state.elapsed, float) and state.elapsed == 42.0
    assert (state.data, state.fingerprint, state.study_name) == ("mnist", "f00", "st")
    assert state.phase == "trials" and state.final_jobs == []  # an old run was in its trials


def test_load_of_a_folder_without_run_json(tmp_path: Path) -> None:
    with pytest.raises(UserInputError) as err:
        RunState.load(tmp_path)
    assert str(err.value) == f"{tmp_path}: no run.json here; give the output folder of an automl-cnn search"


def test_load_of_damaged_run_json(tmp_path: Path) -> None:
    (tmp_path / RUN_FILE).write_text('{"format": "automl-cnn-run/1", "data": ')
    with pytest.raises(UserInputError) as err:
        RunState.load(tmp_path)
    assert str(err.value) == f"{tmp_path / RUN_FILE}: unreadable (JSONDecodeError); the run folder is damaged"


@pytest.mark.parametrize("fmt", ["automl-cnn-run/0", None])
def test_load_of_an_unknown_format(tmp_path: Path, fmt: str | None) -> None:
    (tmp_path / RUN_FILE).write_text(json.dumps({"format": fmt, "data": "d", "config": {}, "fingerprint": "f"}))
    with pytest.raises(UserInputError) as err:
        RunState.load(tmp_path)
    assert str(err.value) == f"{tmp_path / RUN_FILE}: unknown run format {fmt!r}"


# -- one driver at a time ----------------------------------------------------------------------


def test_a_folder_held_by_a_live_process_is_refused(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / LOCK_FILE).write_text(str(other.pid))
        with pytest.raises(UserInputError) as err:
            _state(tmp_path).acquire()
        assert str(err.value) == (
            f"{tmp_path}: a search is still running here (pid {other.pid}); wait for it or stop it"
        )
        assert (tmp_path / LOCK_FILE).read_text() == str(other.pid)  # the other's lock stays
    finally:
        other.kill()
        other.wait()


def test_a_dead_process_lock_is_taken_over_and_released(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()  # exited and reaped: its pid is no longer alive
    (tmp_path / LOCK_FILE).write_text(str(dead.pid))
    state = _state(tmp_path)
    state.acquire()
    assert (tmp_path / LOCK_FILE).read_text() == str(os.getpid())
    state.acquire()  # this process's own lock does not stop it
    state.release()
    assert not (tmp_path / LOCK_FILE).exists()


def test_acquire_creates_the_folder(tmp_path: Path) -> None:
    state = _state(tmp_path / "new" / "run")
    state.acquire()
    assert (tmp_path / "new" / "run" / LOCK_FILE).read_text() == str(os.getpid())


# -- trials and checkpoints --------------------------------------------------------------------


def test_finished_records_are_appended_and_the_latest_line_wins(tmp_path: Path) -> None:
    state = _state(tmp_path)
    assert state.finished_records() == []
    state.append_record(_record(5, outcome="failed"))
    state.append_record(_record(2))
    state.append_record(_record(5, outcome="completed", retries=2))
    lines = (tmp_path / TRIALS_FILE).read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["run_id"] for line in lines)
    recs = state.finished_records()
    assert [r.number for r in recs] == [2, 5]
    assert (recs[1].outcome, recs[1].retries) == ("completed", 2)
    assert _saved_fields(recs[0]) == _saved_fields(_record(2))


def test_appending_a_record_drops_its_checkpoint(tmp_path: Path) -> None:
    state = _state(tmp_path)
    state.save_checkpoint(3, b"weights", HISTORY[:1])
    state.save_checkpoint(4, b"other", HISTORY)
    state.append_record(_record(3))
    assert state.load_checkpoint(3) is None
    assert state.load_checkpoint(4) == (b"other", HISTORY)


def test_checkpoints_save_load_and_drop(tmp_path: Path) -> None:
    state = _state(tmp_path)
    assert state.load_checkpoint(1) is None
    state.save_checkpoint(1, b"\x00\x01blob", HISTORY)
    assert state.load_checkpoint(1) == (b"\x00\x01blob", HISTORY)
    state.save_checkpoint(1, b"newer", HISTORY[:1])  # replaced atomically
    assert state.load_checkpoint(1) == (b"newer", HISTORY[:1])
    assert not list(state.checkpoint_path(1).parent.glob("*.tmp"))
    state.checkpoint_path(1).with_suffix(".json").unlink()
    assert state.load_checkpoint(1) is None  # weights without their history are not a checkpoint
    state.drop_checkpoint(1)
    assert not state.checkpoint_path(1).exists()
    state.drop_checkpoint(1)  # dropping twice is fine


def test_writes_in_background_keep_the_latest_and_are_on_disk_when_it_ends(tmp_path: Path) -> None:
    state = _state(tmp_path)
    with state.writes_in_background():
        assert state.background is not None
        for i in range(20):
            state.save_checkpoint(1, f"epoch {i}".encode(), HISTORY[:1])
            state.save_checkpoint(2, f"epoch {i}".encode(), HISTORY)
        assert state.load_checkpoint(1) == (b"epoch 19", HISTORY[:1])  # a load waits for the writes
        state.save_checkpoint(3, b"dropped before it was written, or after", HISTORY)
        state.append_record(_record(3))  # drops trial 3's checkpoint, after any write of it
        state.save_checkpoint(2, b"last", HISTORY)
    assert state.background is None and "background" not in state.to_json()
    assert (state.checkpoint_path(2).read_bytes(), state.load_checkpoint(2)) == (b"last", (b"last", HISTORY))
    assert not state.checkpoint_path(3).exists() and not state.checkpoint_path(3).with_suffix(".json").exists()


def test_a_background_write_that_fails_is_raised_not_dropped() -> None:
    files = BackgroundFiles()
    files.submit("a", lambda: None)
    files.submit("b", lambda: [][0])  # type: ignore[func-returns-value]
    with pytest.raises(IndexError):
        files.flush()
    files.close()


def test_a_line_torn_by_a_crash_is_dropped_but_damage_elsewhere_is_refused(tmp_path: Path) -> None:
    state = RunState(folder=tmp_path, data="digits", config={}, fingerprint="f")
    state.append_record(_record(1))
    with (tmp_path / "trials.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"number": 2, "seed": ')  # the driver was killed mid-write
    assert [r.number for r in state.finished_records()] == [1]
    with (tmp_path / "trials.jsonl").open("a", encoding="utf-8") as f:
        f.write("\n" + json.dumps(_record(3).to_json()) + "\n")
    with pytest.raises(UserInputError, match=r"trials.jsonl: line 2 is damaged"):
        state.finished_records()


def test_run_json_saved_in_background_is_the_state_at_the_save(tmp_path: Path) -> None:
    state = _state(tmp_path)
    with state.writes_in_background():
        state.phase = "final_fit"
        state.save()
        state.phase = "delivering"  # after the save: not in what it writes
    assert RunState.load(tmp_path).phase == "final_fit"
