"""Regenerate the reports committed under docs/ from the current code: ``make reports``.

Each report is one or more sweeps (``python -m hyperexp.train -m ...``, into
``outputs/reports/<report>/`` with a store of their own, ``outputs/reports/mlflow.db``) and one
``python -m hyperexp.report`` over them, written to ``docs/<report>/``. At full size (the
published simulation, the configurations of ``conf/experiment/``) they take hours on 2 CPU cores
(30 to 75 minutes each, docs/results.md). ``--reduced`` runs smaller versions (256 voxels, one
simulated experiment, a pool of up to 4 subjects, a tenth of the trained epochs; about 17 jobs)
and says so in every report's title: numbers for checking the pipeline, not results.

    python tools/make_reports.py                  # all, full size
    python tools/make_reports.py paper protocols  # some
    python tools/make_reports.py --reduced        # all, reduced size, labelled
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = Path("outputs/reports")
STORE = f"sqlite:///{OUTPUTS / 'mlflow.db'}"
SEEDS_REDUCED = ["data.simulation.seed=0"]
REDUCED = ["data.simulation.n_voxels=256"]  # for every sweep at reduced size
REDUCED_LABEL = "reduced size (256 voxels, one simulated experiment): a check of the pipeline, not results"
CEILING = ["data.simulation.n_subjects={n}", "data.n_subjects={n}", "data.simulation.noise=choice(0.0)"]


@dataclass
class Sweep:
    name: str  # its folder under outputs/reports/
    args: list[str]
    reduced: list[str] = field(default_factory=list)  # added at reduced size, besides REDUCED


@dataclass
class Report:
    name: str  # docs/<name>/
    sweeps: list[Sweep]
    report_args: list[str] = field(default_factory=list)


PAPER = Sweep("paper", ["experiment=paper", "decoder=ridge_recipe"], SEEDS_REDUCED)
POOL = ["experiment=pool_size"]
POOL_REDUCED = [*SEEDS_REDUCED, "data.n_subjects=1,2,4", "data.simulation.n_subjects=4"]
CEILING_REDUCED = [*SEEDS_REDUCED]
REPORTS = [
    Report("paper", [PAPER], ["--pairs", "--groups", "data=subject1", "data=subject2", "data=hyperaligned"]),
    Report("alignment", [PAPER], ["--pairs", "--groups", "data=subject1", "data=average", "data=hyperaligned"]),
    Report("solvers", [Sweep("solvers", ["experiment=solvers"], ["trainer.epochs=150", "trainer.log_every=50"])]),
    Report("protocols", [Sweep("protocols", ["experiment=protocols", "decoder=ridge_recipe"], SEEDS_REDUCED)]),
    Report(
        "feature_loss",
        [Sweep("feature_loss", ["experiment=feature_loss"], ["trainer.epochs=15", "trainer.log_every=5"])],
    ),
    Report(
        "pool_size",
        [
            Sweep("pool_size", POOL, POOL_REDUCED),
            Sweep("pool_ceiling", [*POOL, *(a.format(n=1) for a in CEILING)], CEILING_REDUCED),
            Sweep("pool_ceiling_pair", [*POOL, *(a.format(n=2) for a in CEILING)], CEILING_REDUCED),
        ],
        ["--baseline", "data.simulation.noise=0.0,data.n_subjects=1"],
    ),
]


def run(command: list[str]) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=REPO)


def sweep(job: Sweep, reduced: bool, done: set[str]) -> Path:
    """Run a sweep once per invocation (the paper's feeds two reports); its folder."""
    folder = OUTPUTS / job.name
    if job.name not in done:
        args = [*job.args, *(REDUCED + job.reduced if reduced else [])]
        tracking = [f"tracking.uri={STORE}", f"tracking.artifact_root={REPO / OUTPUTS / 'artifacts'}"]
        tracking += [f"hydra.sweep.dir={folder}", "trainer.progress=false"]
        run([sys.executable, "-m", "hyperexp.train", "-m", *args, *tracking])
        done.add(job.name)
    return folder


def main() -> int:
    names = [report.name for report in REPORTS]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="*", metavar="REPORT", help=f"of {names} (default: all)")
    parser.add_argument("--reduced", action="store_true", help=REDUCED_LABEL)
    args = parser.parse_args()
    if unknown := set(args.reports) - set(names):
        parser.error(f"no such report: {', '.join(sorted(unknown))} (choose from {', '.join(names)})")
    (REPO / OUTPUTS).mkdir(parents=True, exist_ok=True)
    done: set[str] = set()
    for report in REPORTS:
        if args.reports and report.name not in args.reports:
            continue
        started = time.monotonic()
        folders = [str(sweep(job, args.reduced, done)) for job in report.sweeps]
        title = f"{report.name}{f': {REDUCED_LABEL}' if args.reduced else ''}"
        out = ["--out", f"docs/{report.name}", "--title", title, "--no-log"]
        run([sys.executable, "-m", "hyperexp.report", *folders, "--tracking-uri", STORE, *out, *report.report_args])
        print(f"{report.name}: {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
