"""Where runs are stored: the tracking URI and the experiment that holds the runs.

The default store is SQLite (``runs/mlflow.db``) with artifacts under ``runs/artifacts``;
``tracking.uri`` may also point at an MLflow tracking server (``http://host:port``).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import mlflow
from filelock import FileLock
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from hyperexp.errors import InputError
from hyperexp.track.experiment import present_experiment

SQLITE_PREFIX = "sqlite:///"
SERVER_PREFIXES = ("http://", "https://", "databricks")  # stores that choose their own artifact location


def sqlite_path(uri: str) -> Path | None:
    """The database file of a SQLite URI (``sqlite:///runs/mlflow.db`` is relative to the current
    folder, ``sqlite:////abs/mlflow.db`` absolute); None for any other store."""
    return Path(uri[len(SQLITE_PREFIX) :]) if uri.startswith(SQLITE_PREFIX) else None


def writable_store_uri(uri: str) -> str:
    """A SQLite URI made absolute, with its folder created and checked writable; other URIs unchanged."""
    path = sqlite_path(uri)
    if path is None:
        return uri
    path = path.resolve()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"{path.parent}: cannot create the tracking store's folder ({error.strerror})") from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"{path}: the tracking store is not writable")
    return SQLITE_PREFIX + str(path)


def require_existing_store(uri: str) -> None:
    """For readers: a SQLite URI must name an existing file, else MLflow would create an empty store."""
    path = sqlite_path(uri)
    if path is not None and not path.is_file():
        raise InputError(f"{path.resolve()}: no MLflow store there")


def _is_store_failure(error: Exception) -> bool:
    """MLflow's and the file system's errors, and SQLite's (which reach us wrapped by SQLAlchemy)."""
    return isinstance(error, (OSError, MlflowException)) or isinstance(error.__cause__, sqlite3.Error)


@contextlib.contextmanager
def store_errors(uri: str) -> Iterator[None]:
    """Report a store that cannot be opened or reached as one line naming it."""
    try:
        yield
    except Exception as error:
        if not _is_store_failure(error):
            raise
        text = str(error).strip()
        first_line = text.splitlines()[0][:300] if text else type(error).__name__
        raise InputError(f"{sqlite_path(uri) or uri}: cannot open the tracking store ({first_line})") from None


def setup_experiment(uri: str, experiment: str, artifact_root: str | None = None) -> str:
    """Point MLflow at ``uri`` and return the id of ``experiment``, creating it if needed.

    Processes that open a new SQLite store at once race on creating its schema ("database is
    locked", half-made tables), so opening a SQLite store holds a file lock beside it. Several
    jobs may also create the same experiment at once: the loser uses the winner's.
    """
    uri = writable_store_uri(uri)
    mlflow.set_tracking_uri(uri)
    path = sqlite_path(uri)
    with store_errors(uri), FileLock(f"{path}.lock") if path else contextlib.nullcontext():
        experiment_id = _get_or_create_experiment(uri, experiment, artifact_root)
        present_experiment(MlflowClient(uri), experiment_id, own_store=path is not None)
        return experiment_id


def _get_or_create_experiment(uri: str, experiment: str, artifact_root: str | None) -> str:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    local = artifact_root and not uri.startswith(SERVER_PREFIXES)
    location = Path(artifact_root).resolve().as_uri() if local else None
    try:
        return client.create_experiment(experiment, artifact_location=location)
    except MlflowException:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise
        return found.experiment_id
