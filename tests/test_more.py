"""``resume RUN --more 10m``: a finished search given more time searches on, decides again and
registers the model it delivers as a new version (engine/more.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from stores import mlflow_store

from automl_cnn.app import search
from automl_cnn.engine.more import earlier_versions, give_more_time
from automl_cnn.engine.runstate import RunState
from automl_cnn.errors import UserInputError


def _finished_state(folder: Path, **config: object) -> RunState:
    state = RunState(folder=folder, data="digits", config={"budget": {"time_budget": 60.0, "trials": 4, **config}},
                     fingerprint="f", state="finished", phase="delivering", elapsed=57.5,
                     final_jobs=[[3, 10000, 12]], ensemble=[[3, 1.0]], final_notes=["{}"],
                     model_uri="models:/m@champion", model_version="1")  # fmt: skip
    for name in ("final-0.pt", "final-0.json", "final-0.weights.pt", "second-seed-1.pt", "trial-7.pt"):
        (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
        (folder / "checkpoints" / name).write_bytes(b"x")
    return state


def test_more_time_reopens_a_finished_run_at_its_trials_with_the_budget_extended(tmp_path: Path) -> None:
    state = _finished_state(tmp_path)
    changed = give_more_time(state, "5m")
    assert changed == {"time_budget": 57.5 + 300, "trials": None}
    assert state.config["budget"] == {"time_budget": 357.5, "trials": None}  # what run.json keeps
    assert (state.state, state.phase) == ("running", "trials")
    assert (state.final_jobs, state.ensemble, state.final_notes, state.model_version) == ([], [], [], "")
    # the final phase's fits train again; an interrupted trial's checkpoint stays
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["trial-7.pt"]
    assert state.extra["rounds"] == [{"elapsed": 57.5, "model_uri": "models:/m@champion", "model_version": "1"}]
    assert earlier_versions(state) == {"1"}


def test_more_time_is_refused_in_one_line_for_a_bad_duration_or_an_unfinished_run(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="--more"):
        give_more_time(_finished_state(tmp_path), "soon")
    unfinished = _finished_state(tmp_path)
    unfinished.state = "running"
    with pytest.raises(UserInputError, match="has not finished; resume it without --more first"):
        give_more_time(unfinished, "5m")


def test_search_resume_takes_no_new_settings(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="drop trials"):
        search("digits", resume=tmp_path, more="5m", trials=3)
    with pytest.raises(UserInputError, match="pass resume=ITS_FOLDER"):
        search("digits", more="5m")


def test_a_search_of_in_memory_images_asks_for_them_again_and_writes_nothing(tmp_path: Path) -> None:
    """run.json names an ImageSet by its name (not its pixels' repr); a resume without ``data=``
    is refused in one line before run.json changes."""
    from automl_cnn.app import _data_spec, resume
    from automl_cnn.data import load_images

    digits = load_images("digits")
    assert _data_spec(digits) == "in-memory ImageSet digits" and _data_spec("mnist5k") == "mnist5k"
    state = _finished_state(tmp_path)
    state.data = _data_spec(digits)
    state.save()
    before = (tmp_path / "run.json").read_bytes()
    with pytest.raises(UserInputError, match=r"in-memory ImageSet digits, which cannot be loaded again; pass"):
        resume(tmp_path, more="5m")
    assert (tmp_path / "run.json").read_bytes() == before


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "automl_cnn", *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.slow
def test_more_on_a_finished_search_searches_on_and_registers_a_new_version(tmp_path: Path) -> None:
    run, store = tmp_path / "run", mlflow_store(tmp_path / "mlflow.db")
    args = ["search", "--data", "digits", "--space", "tiny", "--trials", "3", "--executor", "inprocess",
            "--warm-start", "none", "--out", str(run), "--tracking-uri", store, "--no-progress"]  # fmt: skip
    first = _cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    trials_before = len((run / "trials.jsonl").read_text().splitlines())
    again = _cli("resume", str(run), "--no-progress", cwd=tmp_path)
    assert again.returncode == 2 and "--more 10m" in again.stderr, again.stderr

    more = _cli("resume", str(run), "--more", "45s", "--no-progress", cwd=tmp_path)
    assert more.returncode == 0, more.stdout[-3000:] + more.stderr[-3000:]
    state = json.loads((run / "run.json").read_text())
    assert state["state"] == "finished" and state["extra"]["rounds"][0]["model_version"] == "1"
    assert len((run / "trials.jsonl").read_text().splitlines()) > trials_before  # the search went on
    assert "final fit of trial" in more.stdout and "(version 2)" in more.stdout, more.stdout[-3000:]
    client = MlflowClient(store)
    name = state["model_uri"].split("/")[1].split("@")[0]
    versions = client.search_model_versions(f"name = '{name}'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    assert len({v.run_id for v in versions}) == 1  # both rounds belong to the same search run
    assert state["elapsed"] > state["extra"]["rounds"][0]["elapsed"]
