"""Real MLflow SQLite stores for tests, without paying MLflow's schema migrations each time.

A new SQLite store runs MLflow's alembic migrations (about 2 s on two cores, more under load).
Every store here is a copy of one store migrated once per test session: the same real, empty
database (with MLflow's default experiment) a first search would create. Tests that check what a
first search does to a missing store (``tests/test_cli.py``) do not use it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

_TEMPLATE: Path | None = None


def _template() -> Path:
    global _TEMPLATE
    if _TEMPLATE is None:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        folder = Path(tempfile.mkdtemp(prefix="automl-cnn-store-"))
        path = folder / "mlflow.db"
        store = SqlAlchemyStore(f"sqlite:///{path}", str(folder / "mlruns"))
        store.engine.dispose()  # every write committed, no connection left open on the file
        _TEMPLATE = path
    return _TEMPLATE


def mlflow_store(path: Path) -> str:
    """The tracking URI of a SQLite store at ``path``: a fresh migrated copy unless one is there."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_template(), path)
    return f"sqlite:///{path}"
