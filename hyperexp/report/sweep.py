"""A sweep's end on its parent run: the comparison report (written into the sweep folder and
logged under ``report/``), the per-group summary metrics, an Optuna study's best trial, and the
jobs that failed."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from hyperexp.report.group_summary import log_group_summary, log_study_result
from hyperexp.report.queries import RunRecord, collect_runs
from hyperexp.report.trials import load_trials
from hyperexp.report.write import write_report
from hyperexp.track.runs import Run
from hyperexp.track.sweep import FAILED_FILE

log = logging.getLogger("hyperexp")


def failed_jobs(sweep_dir: str | Path) -> list[dict]:
    """Failures recorded by jobs of a sweep (in any process), by job number."""
    records = [json.loads(path.read_text()) for path in Path(sweep_dir).glob(f"*/{FAILED_FILE}")]
    return sorted(records, key=lambda record: record["job"])


def failed_jobs_section(failures: list[dict]) -> str:
    """The report's markdown section listing failed jobs ("" when none failed)."""
    if not failures:
        return ""
    lines = ["## Jobs that failed", ""]
    lines += [f"- job {f['job']} (`{' '.join(f['overrides'])}`): {f['error']}" for f in failures]
    return "\n".join(lines)


def report_sweep(parent: Run, tracking_uri: str, sweep_dir: Path, baseline: str | None = None) -> str | None:
    """Report the sweep of ``parent`` and log its results there; returns why the sweep counts as
    failed (a job failed or did not finish, or no job ran), or None."""
    failures = failed_jobs(sweep_dir)
    records: list[RunRecord] = []
    try:
        records = collect_runs(tracking_uri, parent_run_id=parent.run_id)
        trials = load_trials(records, tracking_uri)
        paths = write_report(records, trials, sweep_dir, baseline=baseline, appendix=failed_jobs_section(failures))
        with parent.staged_artifacts("report") as folder:
            for path in paths.values():
                shutil.copy2(path, folder)
        log_group_summary(parent, records)
        log_study_result(parent, sweep_dir)
        log.info("sweep report: %s", paths["markdown"])
    except Exception as error:  # the sweep's results stay in MLflow; say why the report is missing
        log.error("sweep report failed: %s: %s", type(error).__name__, error)
        records = []
    for failure in failures:
        log.error("sweep job %d failed (%s): %s", failure["job"], " ".join(failure["overrides"]), failure["error"])
    if failures:
        return f"{len(failures)} sweep job(s) failed"
    unfinished = [record for record in records if not record.finished]
    if unfinished or not records:
        return f"{len(unfinished)} sweep job(s) did not finish" if records else "no sweep job finished"
    return None
