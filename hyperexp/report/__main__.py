"""Write the comparison report of a sweep: ``python -m hyperexp.report TARGET [TARGET ...] [--baseline GROUP]``.

Several targets are reported together (e.g. a pool-size sweep and its noise-free ceiling); the
report goes to the first target's folder unless ``--out`` says otherwise. Comparisons are against
``--baseline``, else the sweep's own ``report.baseline`` (its folder's ``multirun.yaml``), else
between every pair of groups (``--pairs`` asks for that in any case).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mlflow.exceptions import MlflowException
from omegaconf import OmegaConf

from hyperexp.errors import InputError
from hyperexp.report.compare import resolve_group, spec_matches
from hyperexp.report.queries import RunRecord, collect_runs
from hyperexp.report.trials import load_trials
from hyperexp.report.write import log_report_to_run, write_report
from hyperexp.track.sweep import read_parent_run_id

DEFAULT_TRACKING_URI = "sqlite:///runs/mlflow.db"


def resolve_target(target: str, tracking_uri: str) -> tuple[list[RunRecord], Path, str | None]:
    """TARGET -> (records, default output folder, parent run id if known).

    Tried in turn: a folder whose parent run file names the parent run, or whose name is the
    sweep id; then TARGET as a sweep id; then as an experiment name.
    """
    folder = Path(target)
    records: list[RunRecord] = []
    parent_run_id = None
    out_dir = Path("outputs") / "reports" / target.replace("/", "_")
    if folder.is_dir():
        parent_run_id = read_parent_run_id(folder)
        if parent_run_id:
            records = collect_runs(tracking_uri, parent_run_id=parent_run_id)
        if not records:
            parent_run_id = None
            records = collect_runs(tracking_uri, sweep=folder.resolve().name)
        if records:
            out_dir = folder
    # a folder that holds no sweep (e.g. the package folder "hyperexp") may still name one
    records = records or collect_runs(tracking_uri, sweep=target) or collect_runs(tracking_uri, experiment=target)
    if not records:
        raise InputError(f"{target}: no runs in {tracking_uri} match it as a sweep folder, sweep id or experiment")
    parents = {r.parent_run_id for r in records}
    if parent_run_id is None and len(parents) == 1:
        parent_run_id = parents.pop()
    return records, out_dir, parent_run_id


def sweep_baseline(target: str) -> str | None:
    """The ``report.baseline`` a sweep folder's ``multirun.yaml`` was run with, if any."""
    path = Path(target) / "multirun.yaml"
    if not path.is_file():
        return None
    return OmegaConf.select(OmegaConf.load(path), "report.baseline", default=None)


def chosen_groups(records: list[RunRecord], specs: Sequence[str]) -> list[RunRecord]:
    """The runs of the groups that ``specs`` name (each as ``report.baseline`` would)."""
    groups = list(dict.fromkeys(r.group for r in records))
    kept = {resolve_group(spec, groups, "--groups") for spec in specs}
    return [r for r in records if r.group in kept]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hyperexp.report", description=__doc__.splitlines()[0])
    parser.add_argument(
        "targets",
        nargs="+",
        metavar="TARGET",
        help="sweep id (the 'sweep' tag), Hydra sweep folder, or experiment name",
    )
    parser.add_argument("--tracking-uri", default=DEFAULT_TRACKING_URI)
    parser.add_argument(
        "--out", type=Path, help="output folder (default: the sweep folder, else outputs/reports/TARGET)"
    )
    parser.add_argument("--no-log", action="store_true", help="do not attach the report to the sweep's parent run")
    parser.add_argument("--baseline", help="compare every group with this one (e.g. data=subject1); default: all pairs")
    parser.add_argument("--pairs", action="store_true", help="compare every pair of groups, whatever the baseline")
    parser.add_argument("--groups", nargs="+", metavar="GROUP", help="report only these groups (e.g. data=subject1)")
    parser.add_argument("--title", help="the report's title (default: 'Sweep report: TARGET ...')")
    args = parser.parse_args(argv)
    try:
        resolved = [resolve_target(target, args.tracking_uri) for target in args.targets]
        records = [record for found, _, _ in resolved for record in found]
        _, out_dir, parent_run_id = resolved[0]
        if len(resolved) == 1 and len({r.parent_run_id for r in records}) > 1:
            print(f"hyperexp: warning: {args.targets[0]}: matches runs of several parent runs", file=sys.stderr)
        records = chosen_groups(records, args.groups) if args.groups else records
        baseline = None if args.pairs else args.baseline or sweep_baseline(args.targets[0])
        if baseline and not args.baseline and not any(spec_matches(baseline, r.group) for r in records):
            baseline = None  # the sweep's baseline is not among the groups asked for
        title = args.title or f"Sweep report: {' '.join(args.targets)}"
        trials = load_trials(records, args.tracking_uri)
        paths = write_report(records, trials, args.out or out_dir, title=title, baseline=baseline)
    except (InputError, OSError) as error:  # OSError: e.g. an --out folder that cannot be written
        message = error if isinstance(error, InputError) else f"{error.filename or 'report'}: {error.strerror}"
        print(f"hyperexp: error: {message}", file=sys.stderr)
        return 1
    if parent_run_id and not args.no_log:
        try:
            log_report_to_run(parent_run_id, paths, args.tracking_uri)
        except (MlflowException, OSError) as error:  # the files are written; attaching them is a bonus
            print(f"hyperexp: warning: report not logged to run {parent_run_id}: {error}", file=sys.stderr)
    print(f"report: {paths['markdown']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
