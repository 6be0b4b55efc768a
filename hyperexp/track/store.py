"""Where runs are stored: the tracking URI and the experiment that holds the runs.

The default store is SQLite (``runs/mlflow.db``) with artifacts under ``runs/artifacts``;
``tracking.uri`` may also point at an MLflow tracking server (``http://host:port``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
from filelock import FileLock, Timeout
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from hyperexp.errors import InputError
from hyperexp.track.experiment import present_experiment

log = logging.getLogger("hyperexp")

SQLITE_PREFIX = "sqlite:///"
SERVER_PREFIXES = ("http://", "https://", "databricks")  # stores that choose their own artifact location
STORE_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks", "file")
CHECK_TIMEOUT_S = 5.0  # the one request that tells whether a tracking server answers
LOCK_TIMEOUT_S = 60.0  # another process opens the store for seconds; a lock held longer is stuck
# MLflow retries a request to a server that does not answer for about 4 minutes by default; a
# run's outbox retries instead (hyperexp.track.outbox), so each request gives up sooner.
HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


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


def bound_http_retries() -> None:
    for name, value in HTTP_SETTINGS.items():
        os.environ.setdefault(name, value)  # the user's own settings win


def check_store(uri: str, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """Refuse a tracking store that cannot work, writing nothing but a SQLite store's lock file: an
    unknown scheme, a SQLite store that is a folder, not a database, not writable or where no lock
    file can be made, a server that does not answer one request within ``timeout_s``."""
    bound_http_retries()
    scheme = uri.split(":", 1)[0] if ":" in uri else ""
    if scheme not in (*STORE_SCHEMES, "") or (scheme == "sqlite" and sqlite_path(uri) is None):
        raise InputError(
            f"tracking.uri: {uri!r} is not a tracking store (use sqlite:///path/mlflow.db or http://host:port)"
        )
    path = sqlite_path(uri)
    if path is not None:
        check_sqlite_store(path, timeout_s)
    elif scheme in ("http", "https"):
        check_server(uri, timeout_s)


def check_sqlite_store(path: Path, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    path = path.resolve()
    if path.is_dir():
        raise InputError(f"{path}: a folder, not an MLflow store (tracking.uri)")
    if not path.exists():
        check_writable_folder(path.parent, "tracking.uri")
        if path.parent.is_dir():  # the one file made before the store: it tells a folder no lock can be made in
            make_lock_file(path)
        return
    if not os.access(path, os.R_OK | os.W_OK):
        raise InputError(f"{path}: the tracking store is not writable")
    make_lock_file(path)
    try:
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=timeout_s)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as error:
        raise InputError(f"{path}: cannot read it as an SQLite database ({error}) (tracking.uri)") from None
    if tables and "runs" not in tables:
        raise InputError(f"{path}: an SQLite database, but not an MLflow store (tracking.uri)")


def make_lock_file(store: Path) -> Path:
    """The lock file beside a SQLite store (made if missing), or InputError where none can be made
    (a lock that cannot be made would make ``setup_experiment`` wait forever)."""
    lock = Path(f"{store}.lock")
    try:
        os.close(os.open(lock, os.O_RDWR | os.O_CREAT, 0o644))
    except OSError as error:
        raise InputError(
            f"{lock}: cannot make the tracking store's lock file ({error.strerror}) (tracking.uri)"
        ) from None
    return lock


def check_server(uri: str, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """One request to the server's health endpoint; any answer below 500 means it is there."""
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s).close()
        return
    except urllib.error.HTTPError as error:
        if error.code < 500:
            return
        reason = f"HTTP {error.code}"
    except (OSError, ValueError) as error:
        reason = str(getattr(error, "reason", None) or error)
    raise InputError(f"tracking.uri: no MLflow server answered at {uri} within {timeout_s:g} s ({reason})")


def check_writable_folder(path: str | Path, key: str) -> None:
    """``path`` is a writable folder, or one that can be created: its nearest existing ancestor is
    a folder that takes a new entry (tried: root may write anywhere by ``os.access``, but not in
    /proc), and the missing names fit the file system. Nothing is left behind."""
    path = Path(os.path.abspath(path))
    existing = path
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    missing, existing = path.parts[len(existing.parts) :], existing.resolve()
    if not existing.is_dir():
        raise InputError(f"{key}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{key}: {existing} is not writable")
    longest = max((len(os.fsencode(part)) for part in missing), default=0)
    if longest > os.pathconf(existing, "PC_NAME_MAX"):
        raise InputError(f"{key}: {path} has a name longer than the file system takes")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".hyperexp-probe-", dir=existing))
    except OSError as error:
        raise InputError(f"{key}: cannot create a folder in {existing} ({error.strerror})") from None


def existing_store(uri: str) -> MlflowClient | None:
    """A client of the store, or None where opening it would create a SQLite file."""
    path = sqlite_path(uri)
    if path is not None and not path.is_file():
        return None
    with store_errors(uri):
        return MlflowClient(uri if path is None else f"sqlite:///{path.resolve()}")


def check_artifact_location(client: MlflowClient | None, uri: str, experiment: str, artifact_root: str | None) -> None:
    """A local artifact store must be a writable folder: the experiment's, or the one a new
    experiment will get (``tracking.artifact_root``). Servers choose their own."""
    if uri.startswith(SERVER_PREFIXES):
        return
    found = client.get_experiment_by_name(experiment) if client is not None else None
    if found is None:
        if artifact_root:
            check_writable_folder(artifact_root, "tracking.artifact_root")
        return
    location = urlparse(found.artifact_location)
    if location.scheme in ("", "file"):
        folder = unquote(location.path) if location.scheme else found.artifact_location
        check_writable_folder(folder, f"artifact location of experiment '{experiment}'")


def require_existing_store(uri: str) -> None:
    """For readers: a SQLite URI must name an existing file, else MLflow would create an empty store."""
    path = sqlite_path(uri)
    if path is not None and not path.is_file():
        raise InputError(f"{path.resolve()}: no MLflow store there")


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def is_store_failure(error: Exception) -> bool:
    """MLflow's and the file system's errors, and SQLite's (which reach us wrapped by SQLAlchemy)."""
    return isinstance(error, (OSError, MlflowException)) or isinstance(error.__cause__, sqlite3.Error)


@contextlib.contextmanager
def store_errors(uri: str) -> Iterator[None]:
    """Report a store that cannot be opened or reached as one line naming it."""
    try:
        yield
    except Exception as error:
        if not is_store_failure(error):
            raise
        raise InputError(f"{sqlite_path(uri) or uri}: cannot open the tracking store ({first_line(error)})") from None


def setup_experiment(uri: str, experiment: str, artifact_root: str | None = None) -> str:
    """Point MLflow at ``uri`` and return the id of ``experiment``, creating it if needed.

    Processes that open a new SQLite store at once race on creating its schema ("database is
    locked", half-made tables), so opening a SQLite store holds a file lock beside it. Several
    jobs may also create the same experiment at once: the loser uses the winner's.
    """
    uri = writable_store_uri(uri)
    bound_http_retries()
    mlflow.set_tracking_uri(uri)
    path = sqlite_path(uri)
    lock = FileLock(make_lock_file(path), timeout=LOCK_TIMEOUT_S) if path else contextlib.nullcontext()
    with store_errors(uri):
        try:
            with lock:
                experiment_id = _get_or_create_experiment(uri, experiment, artifact_root)
                present_experiment(MlflowClient(uri), experiment_id, own_store=path is not None)
                return experiment_id
        except Timeout:
            raise InputError(f"{path}.lock: held by another process for {LOCK_TIMEOUT_S:g} s (tracking.uri)") from None


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
