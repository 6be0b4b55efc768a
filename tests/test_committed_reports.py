"""The reports committed under docs/ name only metrics that the code still logs: a report made by
older code (``final_*`` losses, per-attribute ``attr_r/*`` metrics) fails here, and ``make
reports`` makes it again from current code."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from hyperexp.evaluate import Evaluation
from hyperexp.generate import render
from hyperexp.generate.facesketch import FaceSketch
from hyperexp.report.compare import AGREEMENT
from tests.conftest import REPO
from tests.feature_networks import IGNORE_JIT_DEPRECATION, PooledFeatures, save_scripted

pytestmark = IGNORE_JIT_DEPRECATION

REPORTS = sorted(path.parent for path in (REPO / "docs").glob("*/report.md"))
RUN_STATISTICS = ("_mean", "_sd", "_n")  # runs.csv: <metric>_<statistic>
NOT_METRICS = {"group", "pool_size", "n_runs"}
ATTRIBUTE_TABLE = "attr_r/"  # Evaluation's per-attribute correlations: a run's table, not its metrics


@pytest.fixture(scope="module")
def logged_metrics(tmp_path_factory) -> set[str]:
    """What a run logs under ``test/`` (run level) and per trial, with every optional metric on, and
    what a report derives from two groups' predictions."""
    extractor = tmp_path_factory.mktemp("features") / "features.pt"
    save_scripted(PooledFeatures(), extractor)
    generator = FaceSketch(latent_dim=32, size=16)
    rng = np.random.default_rng(0)
    true, predicted = rng.standard_normal((2, 6, 32)).astype(np.float32)
    with torch.no_grad():
        stimuli, reconstructions = render(generator, true, 6), render(generator, predicted, 6)
    evaluation = Evaluation(feature_extractor=str(extractor))
    run_level, per_trial = evaluation(true, predicted, stimuli, reconstructions, generator)
    logged = {name for name in run_level if not name.startswith(ATTRIBUTE_TABLE)} | set(per_trial)
    return logged | {AGREEMENT}  # and what a report computes itself: two groups' agreement


def named_metrics(report: Path) -> set[str]:
    """Every metric a report's CSV files name: the ``metric`` column, and runs.csv's column stems."""
    names = set()
    for table in report.glob("*.csv"):
        with table.open(newline="") as file:
            rows = list(csv.DictReader(file))
        columns = rows[0].keys() if rows else []
        if "metric" in columns:
            names |= {row["metric"] for row in rows}
        elif table.name == "runs.csv":
            for column in set(columns) - NOT_METRICS:
                names.add(next((column.removesuffix(s) for s in RUN_STATISTICS if column.endswith(s)), column))
    return names


def test_there_are_committed_reports_to_check():
    assert {report.name for report in REPORTS} >= {"paper", "solvers", "protocols", "alignment", "pool_size"}


@pytest.mark.parametrize("report", REPORTS, ids=[report.name for report in REPORTS])
def test_a_committed_report_names_only_metrics_the_code_logs(report, logged_metrics):
    named = named_metrics(report)
    assert named, f"{report}: no metric found in its CSV files"
    stale = sorted(named - logged_metrics)
    assert not stale, f"docs/{report.name} names metrics the code no longer logs: {stale[:8]}; run: make reports"


def test_the_check_finds_old_names(tmp_path, logged_metrics):
    (tmp_path / "runs.csv").write_text("group,n_runs,final_test_loss_mean,ssim_mean,attr_r/hue_sd\nx,1,0.1,0.9,0.2\n")
    assert named_metrics(tmp_path) - logged_metrics == {"final_test_loss", "attr_r/hue"}
