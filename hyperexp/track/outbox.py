"""A run's writes to its tracking store, kept on disk until the store has them.

Every metric batch, image, artifact folder, tag, dataset input, the decoder model and the final
status of a run is first written as one numbered file into ``<output dir>/outbox/`` and then
delivered, in order, by a background thread: this module is the one place that writes to a run. A store that does not answer (a server that went away, a SQLite store locked beyond its
timeout) only delays delivery: training goes on, the thread retries with exponential backoff
(1 s doubling up to :data:`MAX_BACKOFF_S`) and delivers the queue when the store is back. What is
still queued when the run ends (after waiting ``tracking.outage_wait_s``) stays on disk, and
``python -m hyperexp.track sync <output dir>`` delivers it later.

Memory holds only the queue's file names; on disk, preview images beyond :data:`MAX_QUEUED_BYTES`
are skipped (with a warning), metrics never are. Delivery is at least once: an item whose
delivery failed halfway is sent again whole, which the store absorbs (metrics and params with
identical values are deduplicated; tags, artifacts, images (named when queued) and the status are
overwritten; a model continues the logged model its first try created).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections import deque
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, LoggedModelOutput, LoggedModelStatus, Metric, Param, RunTag
from mlflow.models import Model
from mlflow.tracking.multimedia import compress_image_size
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_LOGGED_IMAGES
from PIL import Image

from hyperexp.atomic import atomic_write
from hyperexp.track.store import bound_http_retries

log = logging.getLogger("hyperexp")
logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # its retries: the outbox reports an outage once

OUTBOX_FOLDER = "outbox"  # in a run's output folder
FOLDER_LOCK = ".hyperexp.lock"  # in a run's output folder, held by the process that runs there
RUN_FILE = "outbox_of_run.json"  # the run and store the queue belongs to
MAX_BACKOFF_S = 30.0
MAX_QUEUED_BYTES = 1 << 30


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:300]}" if text else type(error).__name__


def deliver(client: MlflowClient, run_id: str, item_path: Path) -> None:
    """Send one queued item to the store (raises what the store raised)."""
    item = json.loads(item_path.read_text())
    if item["kind"] == "model":
        deliver_model(client, run_id, item, item_path)
    else:
        send(client, run_id, item, item_path)


def send(client: MlflowClient, run_id: str, item: dict, item_path: Path | None = None) -> None:
    """Send one item (as queued, or made in memory where it has no attachment) to run ``run_id``."""
    kind = item["kind"]
    if kind == "batch":
        client.log_batch(
            run_id,
            metrics=[Metric(*metric) for metric in item["metrics"]],
            params=[Param(*param) for param in item["params"]],
            tags=[RunTag(*tag) for tag in item["tags"]],
        )
    elif kind == "image":  # the files MLflow's log_image writes, named when queued: a retry overwrites them
        client.log_artifacts(run_id, str(item_path.with_suffix("")), "images")
        client.set_tag(run_id, MLFLOW_LOGGED_IMAGES, "True")
    elif kind == "artifacts":
        client.log_artifacts(run_id, item["local_dir"], item["artifact_path"])
    elif kind == "text":
        client.log_text(run_id, item_path.with_suffix(".txt").read_text(), item["artifact_file"])
    elif kind == "inputs":
        inputs = [
            DatasetInput(
                Dataset.from_dictionary(entry["dataset"]), [InputTag(MLFLOW_DATASET_CONTEXT, entry["context"])]
            )
            for entry in item["datasets"]
        ]
        client.log_inputs(run_id, inputs)
    elif kind == "status" and item["status"] == "RUNNING":  # a resumed run, running again
        client.update_run(run_id, "RUNNING")
    elif kind == "status":
        client.set_terminated(run_id, item["status"], end_time=item["end_time"])
    else:
        raise ValueError(f"{item_path}: unknown outbox item kind {kind!r}")


def deliver_model(client: MlflowClient, run_id: str, item: dict, item_path: Path) -> None:
    """What ``mlflow.<flavor>.log_model`` does, for a model saved when it was queued: a logged model
    of the run (its id kept in the item, so that a retry continues it), the saved files as its
    artifacts, the run's output, its metrics (linked to it) and READY."""
    if item.get("model_id") is None:
        run = client.get_run(run_id)
        tags = {**item["tags"], "mlflow.source.run_id": run_id}
        model = client.create_logged_model(
            run.info.experiment_id, item["name"], run_id, tags=tags, params=run.data.params, model_type=None
        )
        item["model_id"] = model.model_id
        atomic_write(item_path, json.dumps(item).encode())
    model = client.get_logged_model(item["model_id"])
    folder = Path(item["local_dir"])
    saved = Model.load(folder)  # the MLmodel file names its logged model, as log_model writes it
    saved.run_id, saved.model_id, saved.model_uuid, saved.artifact_path = (
        run_id,
        model.model_id,
        model.model_id,
        model.artifact_location,
    )
    saved.save(folder / "MLmodel")
    client.log_model_artifacts(model.model_id, str(folder))
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, item["step"])])
    metrics = [
        Metric(key, value, timestamp, step, model_id=model.model_id) for key, value, timestamp, step in item["metrics"]
    ]
    client.log_batch(run_id, metrics=metrics)
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)


def queued_items(folder: Path) -> list[Path]:
    return sorted(folder.glob("[0-9]*.json"))


def remove_item(item_path: Path) -> None:
    shutil.rmtree(item_path.with_suffix(""), ignore_errors=True)  # an image's files, a saved model
    for suffix in (".txt", ".json"):  # the item's description last: a crash leaves it whole
        item_path.with_suffix(suffix).unlink(missing_ok=True)


class Outbox:
    """The queue of one run (``folder`` is created); ``close`` waits for delivery."""

    def __init__(self, folder: str | Path, run_id: str, tracking_uri: str):
        self.folder, self.run_id, self.tracking_uri = Path(folder), run_id, tracking_uri
        bound_http_retries()  # a store that does not answer fails a try in seconds; this class retries
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self.folder / RUN_FILE, json.dumps({"run_id": run_id, "tracking_uri": tracking_uri}).encode())
        self.client = MlflowClient(tracking_uri)
        self.pending: deque[Path] = deque(queued_items(self.folder))
        self.number = int(self.pending[-1].stem) if self.pending else 0
        self.attachment_bytes: dict[Path, int] = {}  # what the queued images and texts take on disk
        self.skipped_images, self.failures = 0, 0
        self.last_error: str | None = None
        self._changed = threading.Condition()
        self._closing = self._abandoned = False
        self._thread = threading.Thread(target=self._deliver_all, name=f"outbox-{run_id[:8]}", daemon=True)
        self._thread.start()

    # --- what a run writes -------------------------------------------------------------------
    def log_batch(self, metrics=(), params=(), tags=()) -> None:
        """``metrics``: mlflow Metric entities; ``params``/``tags``: (key, value) pairs."""
        self._put(
            {
                "kind": "batch",
                "metrics": [[m.key, m.value, m.timestamp, m.step] for m in metrics],
                "params": [list(p) for p in params],
                "tags": [list(t) for t in tags],
            }
        )

    def set_tag(self, key: str, value: str) -> None:
        self.log_batch(tags=[(key, value)])

    def log_image(self, image: np.ndarray, key: str, step: int) -> None:
        """An image of the UI's image card (``key``, with a slider over ``step``)."""
        if sum(self.attachment_bytes.values()) > MAX_QUEUED_BYTES:
            self.skipped_images += 1
            log.warning("outbox of run %s is full: image %s at step %d not kept", self.run_id, key, step)
            return
        timestamp = int(time.time() * 1000)
        name = f"{key.replace('/', '~')}+step+{step}+timestamp+{timestamp}+{uuid.uuid4()}"  # MLflow's own naming

        def write(folder: Path) -> None:
            folder.mkdir()
            picture = Image.fromarray(image)
            picture.save(folder / f"{name}.png", format="PNG")
            compress_image_size(picture).save(folder / f"{name}+compressed.webp")

        self._put({"kind": "image", "key": key, "step": step, "timestamp": timestamp}, attachment=("", write))

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> None:
        """Upload a folder that stays where it is until delivered (the run's own artifacts)."""
        self._put({"kind": "artifacts", "local_dir": str(Path(local_dir).resolve()), "artifact_path": artifact_path})

    def log_text(self, text: str, artifact_file: str) -> None:
        self._put({"kind": "text", "artifact_file": artifact_file}, attachment=(".txt", lambda p: p.write_text(text)))

    def log_inputs(self, datasets: list[tuple[dict, str]]) -> None:
        """Dataset inputs: (``mlflow.entities.Dataset.to_dictionary()``, context) pairs."""
        self._put({"kind": "inputs", "datasets": [{"dataset": d, "context": c} for d, c in datasets]})

    def log_model(self, save, name: str, step: int, metrics=(), tags: dict[str, str] | None = None) -> None:
        """A logged model of the run: ``save(folder)`` writes it as ``mlflow.<flavor>.save_model``
        does, now; delivery makes it the run's logged model ``name`` with ``metrics`` (Metric entities)
        and ``tags`` (``mlflow.note.content``: its description)."""
        item = {"kind": "model", "name": name, "step": step, "tags": dict(tags or {}), "model_id": None}
        item["metrics"] = [[m.key, m.value, m.timestamp, m.step] for m in metrics]
        self._put(item, attachment=("", lambda folder: save(folder)))

    def set_status(self, status: str) -> None:
        """``RUNNING`` (a run continued) or how it ended."""
        self._put({"kind": "status", "status": status, "end_time": int(time.time() * 1000)})

    def _put(self, item: dict, attachment=None) -> None:
        """Queue ``item``; ``attachment``: (suffix, write), a file (or with suffix "", a folder)
        beside the item that ``write(path)`` makes."""
        with self._changed:
            self.number += 1
            path = self.folder / f"{self.number:08d}.json"
        if attachment is not None:
            suffix, write = attachment
            temporary, final = path.with_suffix(suffix + ".tmp"), path.with_suffix(suffix)
            write(temporary)
            os.replace(temporary, final)
            files = final.rglob("*") if final.is_dir() else [final]
            self.attachment_bytes[path] = sum(file.stat().st_size for file in files)
        if item["kind"] == "model":
            item["local_dir"] = str(path.with_suffix("").resolve())
        atomic_write(path, json.dumps(item).encode())  # the item exists once its attachment does
        with self._changed:
            self.pending.append(path)
            self._changed.notify_all()

    # --- delivery ----------------------------------------------------------------------------
    def _deliver_all(self) -> None:
        backoff = 1.0
        while True:
            with self._changed:
                while not self.pending and not self._closing:
                    self._changed.wait()
                if self._abandoned or not self.pending:
                    return
                path = self.pending[0]
            try:
                deliver(self.client, self.run_id, path)
            except Exception as error:
                self._failed(error, backoff)
                with self._changed:
                    self._changed.wait_for(lambda: self._abandoned, timeout=backoff)
                backoff = min(2 * backoff, MAX_BACKOFF_S)
                continue
            if self.failures:
                log.warning("tracking store %s answers again: delivering the queued updates", self.tracking_uri)
                self.failures = 0
            backoff = 1.0
            remove_item(path)
            with self._changed:
                self.pending.popleft()
                self.attachment_bytes.pop(path, None)
                self._changed.notify_all()

    def _failed(self, error: Exception, backoff: float) -> None:
        self.failures += 1
        self.last_error = _first_line(error)
        if self.failures == 1:
            log.warning(
                "tracking store %s does not answer (%s): run %s goes on, its updates wait in %s",
                self.tracking_uri,
                self.last_error,
                self.run_id,
                self.folder,
            )
        log.debug("delivery failed (%s); next try in %.0f s", self.last_error, backoff)

    def close(self, wait_s: float) -> bool:
        """Wait up to ``wait_s`` for the queue to be delivered; True if it was (the folder is
        then removed), False if items stay on disk for ``sync``."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
            if self.pending and self.failures:
                log.warning(
                    "waiting up to %.0f s for tracking store %s (tracking.outage_wait_s)", wait_s, self.tracking_uri
                )
            delivered = self._changed.wait_for(lambda: not self.pending, timeout=wait_s)
            self._abandoned = not delivered
            self._changed.notify_all()
        self._thread.join(timeout=60)
        if delivered:
            shutil.rmtree(self.folder, ignore_errors=True)
        return delivered


def sync(folder: str | Path, tracking_uri: str | None = None) -> tuple[str, int]:
    """Deliver the queue an ended run left in ``folder`` (an ``outbox`` folder); returns the run
    id and the number of items delivered. Raises at the first item the store does not take; what
    was delivered is removed from the queue, so running it again continues there."""
    folder = Path(folder)
    record = json.loads((folder / RUN_FILE).read_text())
    client = MlflowClient(tracking_uri or record["tracking_uri"])
    delivered = 0
    for path in queued_items(folder):
        deliver(client, record["run_id"], path)
        remove_item(path)
        delivered += 1
    shutil.rmtree(folder, ignore_errors=True)
    return record["run_id"], delivered
