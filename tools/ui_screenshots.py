"""Screenshots of the MLflow UI for docs/ui/: ``make screenshots`` (optional; not part of the tests).

Makes a small demo store where ``--store`` holds no single run or no sweep yet (a run of the smoke
preset, which visibly learns; a sweep of the three data variants with the ridge decoder on the
smoke experiment's data), serves the MLflow UI on 127.0.0.1, and has headless Chromium (Debian's
``chromium`` package) photograph, in the model-training view with the Assistant panel closed: the
runs table, a run's overview and its charts (loss curves first, then the image card, whose strip
of reconstructions the card shows without a click), its image card full screen at the first and
the last step with that step's image opened in the UI's image viewer, the sweep's jobs side by
side in the experiment's chart view, the sweep's parent run and its report. Chromium is driven
over its DevTools protocol (standard library only), waiting until each page has drawn what it
shows.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from mlflow import MlflowClient
from PIL import Image

from hyperexp.evaluate.grids import CARD_STRIP_FRACTION
from hyperexp.track.preview import GRID_KEY  # the image card the run logs its grid to

# The smoke experiment's small simulated data (12 test trials): minutes on two cores, not an hour.
DEMO_RUN = ["experiment=smoke", "trainer.progress=false"]
DEMO_SWEEP = ["experiment=smoke", "data=subject1,subject2,hyperaligned", "decoder=ridge", "trainer.progress=false"]

WIDTH, HEIGHT = 1600, 1100
SETTLE_SECONDS = 2  # after a page looks ready: charts finish drawing, transitions end
# Before the UI's scripts: its Assistant panel closed and not opened by itself on a first visit
# (what its close button keeps in the browser's local storage).
BROWSER_SETUP = """
localStorage.setItem("mlflow.assistant.panelOpen_v1", "false");
localStorage.setItem("mlflow.assistant.fab.autoOpenedOnFirstLoad_v1", "true");
"""
IMAGES_LOADED = "[...document.images].every((image) => image.complete && image.naturalWidth > 0)"
# no spinner or placeholder of the UI's design system (class prefix: its theme) in the window; below
# it, chart cards wait to be scrolled to
NOTHING_LOADING = (
    "![...document.querySelectorAll('[class*=spin-spinning], [class*=skeleton-content], [data-testid*=skeleton]')]"
    ".some((e) => { const r = e.getBoundingClientRect(); return r.width > 0 && r.bottom > 0 && r.top < innerHeight; })"
)
CHART_CARD = "[data-testid=experiment-view-compare-runs-card]"
CARD_IMAGE = "document.querySelector('img.rc-image-img')"
# the share of the card image's height that its card shows (its scrolling body clips the rest)
CARD_IMAGE_SHOWN = f"""(() => {{ const image = {CARD_IMAGE}; let body = image.parentElement;
  while (body && getComputedStyle(body).overflowY !== 'auto') body = body.parentElement;
  const i = image.getBoundingClientRect(), b = body.getBoundingClientRect();
  return Math.max(0, Math.min(i.bottom, b.bottom) - Math.max(i.top, b.top)) / i.height; }})()"""
EXPAND_ROW = "button[data-component-id$='runnamecellrenderer.tsx_46']"  # a parent run's row: shows its children
SUMMARY_CHARTS = "test/"  # the sweep's jobs side by side: a bar chart per summary metric
# the chart view's first summary chart, scrolled to the top of the chart area
SHOW_SUMMARY_SECTION = (
    f"[...document.querySelectorAll('{CHART_CARD}')].find((card) => card.innerText.trim().startsWith('test/'))"
    ".scrollIntoView({block: 'start'})"
)
VIEWER_SHOWN = (
    "[...document.querySelectorAll('.rc-image-preview-wrap')].some((e) => e.getBoundingClientRect().width > 0)"
)
REPORT = "report/report.html"  # the sweep's report, one self-contained page (figures embedded)
# the artifact viewer's frame for HTML (sandboxed: its document is not ours to check; the settling time covers it)
HTML_SHOWN = "document.querySelector('iframe[src^=blob]')"


def save_small(image: Image.Image, path: Path) -> None:
    """A screenshot as a 256-colour PNG: a third of the size, the UI's flat colours unchanged."""
    image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
        path, optimize=True
    )


def make_demo_runs(store: Path) -> None:
    """What the screenshots show, unless ``store`` has it: a single run and a sweep."""
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()]) if store.exists() else []
    tracking = [
        f"tracking.uri=sqlite:///{store / 'mlflow.db'}",
        f"tracking.artifact_root={(store / 'artifacts').resolve()}",
    ]
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


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
    JSON messages ending in a NUL byte on fds 3 and 4), so the standard library suffices."""

    def __init__(self, executable: str, profile: Path) -> None:
        to_browser, from_browser = os.pipe(), os.pipe()
        # the browser's ends, moved above fd 4 so that placing them on 3 and 4 clobbers nothing
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser[0], from_browser[1])]
        for fd in (to_browser[0], from_browser[1]):
            os.close(fd)
        command = [executable, "--headless", "--no-sandbox", "--hide-scrollbars", "--remote-debugging-pipe"]
        command += [f"--window-size={WIDTH},{HEIGHT}", f"--user-data-dir={profile}", "about:blank"]
        self.process = subprocess.Popen(
            command,
            preexec_fn=lambda: (os.dup2(ends[0], 3), os.dup2(ends[1], 4)),  # dup2 leaves them inheritable
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fd in ends:
            os.close(fd)
        self.send_fd, self.receive_fd = to_browser[1], from_browser[0]
        self.pending = b""
        self.last_id = 0
        self.session: str | None = None

    def call(self, method: str, **params: object) -> dict:
        """Send one command (to the page once attached) and return its result."""
        self.last_id += 1
        message: dict = {"id": self.last_id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self.send_fd, data) :]
        while True:
            reply = self.receive()
            if reply.get("id") == self.last_id:
                if "error" in reply:
                    raise RuntimeError(f"Chromium: {method}: {reply['error'].get('message')}")
                return reply["result"]

    def receive(self) -> dict:
        while b"\0" not in self.pending:
            chunk = os.read(self.receive_fd, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self.pending += chunk
        message, self.pending = self.pending.split(b"\0", 1)
        return json.loads(message)

    def open_page(self, setup_script: str) -> None:
        """A tab at the window's size, with ``setup_script`` run before each document's own scripts."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)
        self.call("Emulation.setFocusEmulationEnabled", enabled=True)
        self.call("Page.addScriptToEvaluateOnNewDocument", source=setup_script)

    def evaluate(self, expression: str) -> object:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"in the page: {result['exceptionDetails'].get('text')}: {expression[:200]}")
        return result["result"].get("value")

    def wait_for(self, condition: str, what: str, timeout: float = 120) -> None:
        """Wait until the JavaScript ``condition`` holds and all images have loaded, then let it settle."""
        deadline = time.monotonic() + timeout
        check = f"(() => {{ try {{ return Boolean({condition}) && {IMAGES_LOADED}; }} catch {{ return false; }} }})()"
        while not self.evaluate(check):  # (false while the document is still empty)
            if time.monotonic() > deadline:
                raise RuntimeError(f"the MLflow UI did not show {what} within {timeout:.0f} s")
            time.sleep(0.5)
        time.sleep(SETTLE_SECONDS)

    def click(self, x: float, y: float) -> None:
        for kind, buttons in (("mouseMoved", 0), ("mousePressed", 1), ("mouseReleased", 0)):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", buttons=buttons, clickCount=1)

    def type_into(self, selector: str, text: str) -> None:
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", text=text)

    def load(self, url: str, condition: str, what: str) -> None:
        self.call("Page.navigate", url="about:blank")  # a fresh document: no state of the last page
        self.call("Page.navigate", url=url)
        self.wait_for(condition, what)

    def screenshot(self, path: Path) -> None:
        shot = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        save_small(Image.open(io.BytesIO(shot)), path)
        print(f"wrote {path}")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.send_fd)
        os.close(self.receive_fd)


@contextlib.contextmanager
def chromium(executable: str) -> Iterator[Chromium]:
    with tempfile.TemporaryDirectory(prefix="ui-screenshots-") as profile:
        browser = Chromium(executable, Path(profile))
        try:
            browser.open_page(BROWSER_SETUP)
            yield browser
        finally:
            browser.close()


def text_shown(text: str) -> str:
    return f"document.body.innerText.includes({json.dumps(text)})"


def grid_at_step(browser: Chromium, step: int, last: bool, path: Path) -> None:
    """The image card, full screen, moved to its first or last step (a click at that end of its
    slider), and its grid opened in the UI's image viewer (a click on the card's image)."""
    # an image viewer left open (the last step's) closes with the rightmost of its buttons
    close = browser.evaluate(
        "(() => { const r = [...document.querySelectorAll('.rc-image-preview-operations-operation')]"
        ".map((button) => button.getBoundingClientRect()).filter((r) => r.width > 0).sort((a, b) => b.right - a.right)[0];"
        " return r ? [r.x + r.width / 2, r.y + r.height / 2] : null; })()"
    )
    if close:
        browser.click(*close)
    browser.wait_for(f"!{VIEWER_SHOWN}", "the image viewer closed")
    end = "r.right - 2" if last else "r.left + 2"
    x, y = browser.evaluate(
        f"(() => {{ const r = [...document.querySelectorAll('[role=dialog] [role=slider]')].at(-1)"
        f".closest('[data-orientation]:not([role=slider])').getBoundingClientRect(); return [{end}, r.top + r.height / 2]; }})()"
    )
    browser.click(x, y)
    card_image = f"[role=dialog] img.rc-image-img[src*='step%2B{step}%2B']"
    browser.wait_for(f"document.querySelector({json.dumps(card_image)})", f"the grid card at step {step}")
    browser.evaluate(f"document.querySelector({json.dumps(card_image)}).click()")
    viewer = f".rc-image-preview img[src*='step%2B{step}%2B']:not([src*='compressed'])"
    browser.wait_for(f"document.querySelector({json.dumps(viewer)})", f"the grid of step {step} in the image viewer")
    browser.screenshot(path)


def image_steps(client: MlflowClient, run_id: str) -> list[int]:
    """The steps at which the run logged its grid (MLflow keeps the step in the image's file name)."""
    steps = set()
    for entry in client.list_artifacts(run_id, "images"):
        name = entry.path.rsplit("/", 1)[-1]
        if name.startswith(GRID_KEY.replace("/", "~") + "+step+") and not name.endswith("+compressed.webp"):
            steps.add(int(name.split("+step+")[1].split("+")[0]))
    return sorted(steps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=Path("outputs/ui-demo"), help="made when missing")
    parser.add_argument("--out", type=Path, default=Path("docs/ui"))
    args = parser.parse_args()
    executable = shutil.which("chromium")
    if executable is None:
        print("make screenshots: needs Chromium from the system's packages: apt-get install chromium", file=sys.stderr)
        return 1
    store = args.store.resolve()
    with contextlib.suppress(ValueError):  # under the checkout: the runs' descriptions show short paths
        store = store.relative_to(Path.cwd())
    make_demo_runs(store)
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    (experiment,) = client.search_experiments()
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    single = next(r for r in runs if r.data.tags.get("sweep") == "none")  # the latest of each
    parent = next(r for r in runs if r.data.tags.get("sweep_role") == "parent")
    steps = image_steps(client, single.info.run_id)
    args.out.mkdir(parents=True, exist_ok=True)
    with mlflow_ui(store) as url, chromium(executable) as browser:
        experiment_url = f"{url}/#/experiments/{experiment.experiment_id}"
        ml = "?workflowType=machine_learning"  # the model-training view (the UI's own toggle is per browser)
        single_url = f"{experiment_url}/runs/{single.info.run_id}"
        parent_url = f"{experiment_url}/runs/{parent.info.run_id}"
        pages = {
            "runs_table.png": (f"{experiment_url}/runs{ml}", text_shown(parent.info.run_name)),
            "run_overview.png": (f"{single_url}{ml}", text_shown("Parameters")),
            "sweep_parent.png": (f"{parent_url}{ml}", text_shown("Parameters")),
            "sweep_report.png": (f"{parent_url}/artifacts/{REPORT}{ml}", HTML_SHOWN),
        }
        for name, (page, condition) in pages.items():
            browser.load(page, f"{condition} && {NOTHING_LOADING}", name)
            browser.screenshot(args.out / name)
        # the sweep's jobs (not its parent) in the experiment's chart view: a bar per job in each chart
        jobs = urllib.parse.quote(f"tags.sweep = '{parent.data.tags['sweep']}' and tags.group LIKE '%'")
        charts = f"{experiment_url}/runs{ml}&compareRunsMode=CHART&searchFilter={jobs}"
        browser.load(charts, f"{text_shown(parent.info.run_name)} && {NOTHING_LOADING}", "the chart view")
        browser.evaluate(f"document.querySelector({json.dumps(EXPAND_ROW)}).click()")  # the jobs under their parent
        job_names = [r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        browser.wait_for(" && ".join(text_shown(name) for name in job_names), "the sweep's jobs")
        browser.type_into("input[placeholder='Search metric charts']", SUMMARY_CHARTS)
        browser.wait_for(f"{text_shown('test/latent_similarity')} && {NOTHING_LOADING}", "the summary charts")
        browser.evaluate(SHOW_SUMMARY_SECTION)
        browser.wait_for(NOTHING_LOADING, "the summary charts drawn")
        browser.screenshot(args.out / "sweep_charts.png")
        # the run's charts; then only its image card (the search box keeps it), full screen
        browser.load(f"{single_url}/model-metrics{ml}", f"{CARD_IMAGE} && {NOTHING_LOADING}", "the run's charts")
        browser.screenshot(args.out / "run_charts.png")
        shown = browser.evaluate(CARD_IMAGE_SHOWN)
        print(f"the image card shows the top {shown:.0%} of its image (its strip: the top {CARD_STRIP_FRACTION:.0%})")
        if shown < CARD_STRIP_FRACTION:
            print("make screenshots: the card cuts the strip of reconstructions (more params?)", file=sys.stderr)
        browser.type_into("input[placeholder='Search metric charts']", GRID_KEY)
        browser.wait_for(f"document.querySelectorAll('{CHART_CARD}').length === 1", "the image card alone")
        browser.evaluate(
            f"document.querySelector('{CHART_CARD} [data-component-id=fullscreen_button_chartcard]').click()"
        )
        browser.wait_for("document.querySelector('[role=dialog] [role=slider]')", "the image card full screen")
        grid_at_step(browser, steps[0], False, args.out / "run_charts_step0.png")
        grid_at_step(browser, steps[-1], True, args.out / "run_charts_last.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
