"""The runs a report covers, read from MLflow: one :class:`RunRecord` per job."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.store.entities import PagedList

from hyperexp.errors import InputError
from hyperexp.track.store import require_existing_store, store_errors

CURVES = "learning/"  # the prefix of a run's per-epoch metrics (histories are keyed without it)
LOSS_KEYS = ("train_loss", "test_loss")
FINAL_PREFIX = "test/"  # a run's end-of-run summary metrics (test/latent_similarity, ...)
NO_GROUP = "(no group)"
PAGE_SIZE = 500


@dataclass
class RunRecord:
    run_id: str
    group: str
    seed: int | None
    pool_size: int | None
    status: str
    metrics: dict[str, float]  # end-of-run test metrics, without the "test/" prefix
    histories: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # key -> [(step, value)]
    run_name: str = ""
    start_time: int = 0
    parent_run_id: str | None = None
    error: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    run_metrics: dict[str, float] = field(default_factory=dict)  # every metric's last value, full keys

    @property
    def finished(self) -> bool:
        return self.status == "FINISHED"


def _optional_int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _record(run: Run) -> RunRecord:
    """A job's record; seed and pool size fall back to the trainer.seed param and the subjects tag."""
    tags, params = run.data.tags, run.data.params
    seed = _optional_int(tags.get("seed"))
    if seed is None:
        seed = _optional_int(params.get("trainer.seed"))
    pool_size = _optional_int(tags.get("pool_size"))
    if pool_size is None and tags.get("subjects"):
        pool_size = len([s for s in tags["subjects"].split(",") if s.strip()])
    metrics = {k[len(FINAL_PREFIX) :]: v for k, v in run.data.metrics.items() if k.startswith(FINAL_PREFIX)}
    return RunRecord(
        run_id=run.info.run_id,
        group=tags.get("group") or NO_GROUP,
        seed=seed,
        pool_size=pool_size,
        status=run.info.status,
        metrics=metrics,
        run_name=run.info.run_name or "",
        start_time=run.info.start_time or 0,
        parent_run_id=tags.get("mlflow.parentRunId"),
        error=tags.get("error", "").splitlines()[0] if tags.get("error") else "",
        tags=dict(tags),
        params=dict(params),
        run_metrics=dict(run.data.metrics),
    )


def _quoted(value: str) -> str:
    if "'" in value and '"' in value:
        raise InputError(f"{value!r}: cannot search MLflow for a value with both quote kinds")
    return f'"{value}"' if "'" in value else f"'{value}'"


def _all_pages(search: Callable[[str | None], PagedList]) -> list:
    """Every item of a paged MLflow search; ``search(page_token)`` returns one page."""
    items, token = [], None
    while True:
        page = search(token)
        items += page
        token = page.token
        if not token:
            return items


def collect_runs(
    tracking_uri: str,
    sweep: str | None = None,
    experiment: str | None = None,
    parent_run_id: str | None = None,
    histories: Sequence[str] = LOSS_KEYS,
) -> list[RunRecord]:
    """The runs matching all given criteria (sweep tag, experiment name, parent run), oldest first.

    A run that is the parent of another matched run is left out (it holds no job's results).
    ``histories``: per-epoch metrics to load for each run (``()`` to skip those queries).
    """
    if sweep is None and experiment is None and parent_run_id is None:
        raise ValueError("give a sweep, an experiment or a parent run id")
    clauses = []
    if sweep is not None:
        clauses.append(f"tags.sweep = {_quoted(sweep)}")
    if parent_run_id is not None:
        clauses.append(f"tags.`mlflow.parentRunId` = {_quoted(parent_run_id)}")
    require_existing_store(tracking_uri)
    client = MlflowClient(tracking_uri)
    with store_errors(tracking_uri):
        if experiment is not None:
            found = client.get_experiment_by_name(experiment)
            experiment_ids = [found.experiment_id] if found else []
        else:
            pages = _all_pages(lambda token: client.search_experiments(max_results=PAGE_SIZE, page_token=token))
            experiment_ids = [e.experiment_id for e in pages]
        search = " and ".join(clauses)
        runs = (
            _all_pages(
                lambda token: client.search_runs(experiment_ids, search, max_results=PAGE_SIZE, page_token=token)
            )
            if experiment_ids
            else []
        )
        records = [_record(run) for run in runs]
        parents = {r.parent_run_id for r in records}
        records = sorted((r for r in records if r.run_id not in parents), key=lambda r: (r.start_time, r.run_id))
        for record in records:
            for key in histories:
                points = sorted((m.step, m.value) for m in client.get_metric_history(record.run_id, CURVES + key))
                if points:
                    record.histories[key] = points
    return records
