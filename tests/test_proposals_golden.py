"""A fixed-seed search with one worker proposes exactly the candidates it proposed before.

The golden file was written by the search code as it was before the orchestration tier was
reshaped (issue 10); any change to what the sampler is asked, told or shown in between changes
these proposals. Regenerate (only on purpose) with ``AUTOML_CNN_WRITE_GOLDEN=1 pytest -k golden``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import SPACES
from stores import mlflow_store

GOLDEN = Path(__file__).parent / "golden" / "tiny_digits_seed0_workers1.json"
SETTINGS = {"trials": 12, "workers": 1, "seed": 0, "progress": False, "experiment": "golden"}


def _proposals(result) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    return _proposals_of(result.trials)


def _proposals_of(records) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    return [
        {"trial": r.number, "key": r.candidate.key() if r.candidate else None, "outcome": str(r.outcome)}
        for r in sorted(records, key=lambda r: r.number)
    ]


@pytest.mark.slow
def test_ray_search_proposes_the_golden_candidates(ray_session: None, tmp_path: Path) -> None:
    from automl_cnn import search

    result = search(
        "digits", SPACES / "tiny.yaml", out=tmp_path / "out", tracking_uri=mlflow_store(tmp_path / "m.db"), **SETTINGS
    )
    got = _proposals(result)
    if os.environ.get("AUTOML_CNN_WRITE_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=1) + "\n", encoding="utf-8")
    assert got == json.loads(GOLDEN.read_text(encoding="utf-8"))


def test_the_in_process_executor_proposes_the_same_candidates(tmp_path: Path) -> None:
    """The driver on the in-process executor runs the same search as on Ray (the golden file was
    written through Ray); the trials only, no final fit."""
    import math

    from sessions import TINY, plan_for, session_for

    from automl_cnn.engine.search.dedupe import Known
    from automl_cnn.engine.search.driver import SearchDriver

    settings = {k: v for k, v in SETTINGS.items() if k not in ("progress", "experiment")}
    with session_for(plan_for(tmp_path, TINY, warm_start="classics", **settings)) as s:
        assert s.resumed is False
        records = SearchDriver(s, lambda _records: math.inf, Known()).run()
    assert _proposals_of(records) == json.loads(GOLDEN.read_text(encoding="utf-8"))
