"""The bad-input table (tests/bad_input_cases.py), row by row through the entry point: one line
``hyperexp: error: <key or file>: <problem>``, the row's exit code, no MLflow run, and no file
but Hydra's own config snapshot. Rows run in this process (the Hydra app with its command line);
a few also run as a new user would, in a subprocess, where the whole of stderr is checked."""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from hyperexp.errors import InputError
from hyperexp.track.store import check_writable_folder
from tests.bad_input_cases import CASES, README, readme_section, readme_table
from tests.bad_input_setups import HELD
from tests.conftest import run_cli

BASE = ["experiment=smoke", "trainer.progress=false", "trainer.epochs=2", "trainer.log_every=1", "hydra.run.dir=out"]
HYDRA_SNAPSHOT = {"out/train.log", "out/.hydra/config.yaml", "out/.hydra/hydra.yaml", "out/.hydra/overrides.yaml"}
BY_NAME = {case.name: case for case in CASES}


def files_under(root: Path) -> dict[str, str]:
    """Every file under root, with a hash of its content."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in root.rglob("*")
        if path.is_file() and not path.name.endswith(".lock")  # the test's own lock of a busy folder
    }


def arguments(root: Path, case) -> list[str]:
    extra = case.setup(root) if case.setup else []
    return [arg.replace("{root}", str(root)) for arg in [*case.args, *extra]]


def run_entry_point(root: Path, args: list[str], capsys, monkeypatch) -> tuple[int, str]:
    """``python -m hyperexp.train args`` in ``root``, in this process: (exit code, stderr)."""
    from hyperexp.cli import run_app
    from hyperexp.train import main

    monkeypatch.chdir(root)
    flags = [arg for arg in args if arg.startswith("-")]  # argparse takes them before the overrides
    monkeypatch.setattr(sys, "argv", ["train.py", *flags, *BASE, *[arg for arg in args if arg not in flags]])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")  # run_app must work whatever the user set
    GlobalHydra.instance().clear()
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        run_app(main)
        code = 0
    except SystemExit as exit:
        code = exit.code
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        GlobalHydra.instance().clear()
        while HELD:
            HELD.pop().release()
    return code, capsys.readouterr().err


@pytest.mark.parametrize("name", BY_NAME)
def test_bad_input_is_one_line_before_any_run_or_file(tmp_path, name, capsys, monkeypatch):
    case = BY_NAME[name]
    args = arguments(tmp_path, case)
    before = files_under(tmp_path)
    code, stderr = run_entry_point(tmp_path, args, capsys, monkeypatch)
    lines = [line for line in stderr.splitlines() if line.startswith("hyperexp:")]
    assert lines and lines[0].startswith("hyperexp: error: "), stderr[-3000:]
    assert len(lines) == 1 and case.message.replace("{root}", str(tmp_path)) in lines[0], lines
    assert code == case.exit_code and "Traceback" not in stderr
    after = files_under(tmp_path)
    changed = {path for path in before if after.get(path) != before[path]}  # incl. the store: no run
    assert not changed, changed
    assert set(after) - set(before) <= HYDRA_SNAPSHOT, sorted(set(after) - set(before))


@pytest.mark.parametrize("name", ["unknown key", "negative learning rate", "tracking server not answering"])
def test_as_a_new_user_sees_it_the_whole_of_stderr_is_one_line(tmp_path, name):
    case = BY_NAME[name]
    started = time.monotonic()
    result = run_cli(*BASE, *arguments(tmp_path, case), cwd=tmp_path)
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr[-3000:]
    assert result.stderr.startswith("hyperexp: error: ") and case.message in result.stderr
    assert result.returncode == case.exit_code
    assert time.monotonic() - started < 90  # a server that does not answer: one short request, not minutes


def test_the_readme_table_is_generated_from_the_cases():
    assert readme_section(README.read_text()) == readme_table(), "run: python -m tests.bad_input_cases"


def test_a_folder_this_user_may_not_write_is_refused_by_name(tmp_path, monkeypatch):
    # os.access answers as a non-root user would for a read-only folder (root may write anywhere)
    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path / "ro")
    with pytest.raises(InputError, match=f"^data.cache_dir: {tmp_path}/ro is not writable$"):
        check_writable_folder(tmp_path / "ro" / "data", "data.cache_dir")
    check_writable_folder(tmp_path / "elsewhere" / "data", "data.cache_dir")  # creatable: accepted


def test_a_store_whose_lock_another_process_holds_is_refused_after_a_bound(tmp_path, monkeypatch):
    from filelock import FileLock

    import hyperexp.track.store as store

    monkeypatch.setattr(store, "LOCK_TIMEOUT_S", 0.5)
    database = tmp_path / "runs" / "mlflow.db"
    database.parent.mkdir()
    started = time.monotonic()
    with FileLock(f"{database}.lock"):  # a second lock on the same file waits, as another process's would
        with pytest.raises(InputError, match=rf"^{database}: cannot open the tracking store \(.*mlflow.db.lock"):
            store.setup_experiment(f"sqlite:///{database}", "smoke")
    assert time.monotonic() - started < 30 and not database.exists()
