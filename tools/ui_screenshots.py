"""Screenshots of the MLflow UI for docs/ui/: ``make screenshots`` (optional; not part of the tests).

Makes a small demo store where ``--store`` holds no single run or no sweep yet (a 100-epoch run of
the published recipe; a sweep of the three data variants with the ridge decoder; both on the smoke
experiment's small data), serves the MLflow UI on 127.0.0.1, and has headless Chromium
(Debian's ``chromium`` package) photograph: the runs table, a run's charts with its grid card, the
sweep's parent run and its report figure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from mlflow import MlflowClient

# The smoke experiment's small simulated data (12 test trials): minutes on two cores, not an hour.
DEMO_RUN = ["experiment=smoke", "trainer.epochs=100", "trainer.log_every=10", "decoder.optimizer.lr=3e-4"]
DEMO_RUN += ["trainer.progress=false"]
DEMO_SWEEP = ["experiment=smoke", "data=subject1,subject2,hyperaligned", "decoder=ridge", "trainer.progress=false"]
WINDOW = "1600,1100"


def make_demo_runs(store: Path) -> None:
    """What the screenshots show, unless ``store`` has it: a single run and a sweep."""
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()]) if store.exists() else []
    tracking = [f"tracking.uri=sqlite:///{store / 'mlflow.db'}", f"tracking.artifact_root={store / 'artifacts'}"]
    if not any(r.data.tags.get("sweep") == "none" for r in runs):
        run([*DEMO_RUN, f"hydra.run.dir={store / 'run'}", *tracking])
    if not any(r.data.tags.get("sweep_role") == "parent" for r in runs):
        run(["-m", *DEMO_SWEEP, f"hydra.sweep.dir={store / 'sweep'}", *tracking])


def run(args: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "hyperexp.train", *args], check=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def mlflow_ui(store: Path) -> Iterator[str]:
    """The MLflow UI over ``store``, on 127.0.0.1 (without MLflow's job workers: viewing only);
    yields its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while not answers(f"{url}/health"):
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"the MLflow UI did not answer on {url}")
            time.sleep(2)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the UI and its server worker
        server.wait(timeout=60)


def answers(url: str) -> bool:
    with contextlib.suppress(OSError):
        with urllib.request.urlopen(url, timeout=5):
            return True
    return False


def screenshot(chromium: str, url: str, path: Path) -> None:
    command = [chromium, "--headless", "--no-sandbox", "--hide-scrollbars", f"--window-size={WINDOW}"]
    command += ["--virtual-time-budget=45000", f"--screenshot={path}", url]
    subprocess.run(command, check=True, capture_output=True, timeout=180)
    print(f"wrote {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=Path("outputs/ui-demo"), help="made when missing")
    parser.add_argument("--out", type=Path, default=Path("docs/ui"))
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        print("make screenshots: needs Chromium from the system's packages: apt-get install chromium", file=sys.stderr)
        return 1
    store = args.store.resolve()
    make_demo_runs(store)
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    (experiment,) = client.search_experiments()
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    single = next(r for r in runs if r.data.tags.get("sweep") == "none")  # the latest of each
    parent = next(r for r in runs if r.data.tags.get("sweep_role") == "parent")
    args.out.mkdir(parents=True, exist_ok=True)
    with mlflow_ui(store) as url:
        experiment_url = f"{url}/#/experiments/{experiment.experiment_id}"
        ml = "?workflowType=machine_learning"  # the model-training view (the UI's own toggle is per browser)
        pages = {
            "runs_table.png": f"{experiment_url}/runs{ml}",
            "run_charts.png": f"{experiment_url}/runs/{single.info.run_id}/model-metrics{ml}",
            "run_overview.png": f"{experiment_url}/runs/{single.info.run_id}{ml}",
            "sweep_parent.png": f"{experiment_url}/runs/{parent.info.run_id}{ml}",
            "sweep_report.png": f"{experiment_url}/runs/{parent.info.run_id}/artifacts/report/metrics_by_group.png{ml}",
        }
        for name, page in pages.items():
            screenshot(chromium, page, args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
