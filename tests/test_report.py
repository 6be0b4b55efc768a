"""The sweep report against a small MLflow store built directly with MLflow's API."""

from __future__ import annotations

import base64
import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from PIL import Image

from hyperexp.artifacts import save_per_trial
from hyperexp.evaluate.trials import PER_TRIAL_FILE
from hyperexp.report.__main__ import main
from hyperexp.report.queries import collect_runs
from hyperexp.report.summary import summary_table
from hyperexp.report.trials import load_trials
from hyperexp.report.write import write_report
from tests.conftest import REPO, run_cli

EXPERIMENT = "hyperexp"
GROUPS_A = ("data=subject1", "data=subject2", "data=hyperaligned")
SEEDS = (0, 1, 2)
METRICS = ("latent_similarity", "latent_cosine", "ssim", "final_test_loss")
EPOCHS = 4
N_TRIALS = 12


@dataclass
class Store:
    uri: str
    client: MlflowClient
    parent_a: str = ""
    parent_b: str = ""
    logged_a: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # group -> metric -> values
    failed_run: str = ""


def make_run(
    store: Store,
    experiment_id: str,
    start: int,
    tags: dict,
    metrics: dict,
    status: str = "FINISHED",
    params: dict | None = None,
    trials_folder: Path | None = None,
) -> str:
    """A run with final metrics and loss curves; with ``trials_folder``, also a per_trial.csv
    (random per-trial values on the test set ``set-a``)."""
    tags = {**tags, "test_set": "set-a"} if trials_folder else tags
    run_id = store.client.create_run(experiment_id, start_time=start, tags=tags).info.run_id
    if trials_folder is not None:
        rng = np.random.default_rng(start // 1000 % 10_000)
        columns = {name: rng.uniform(0.3, 0.9, N_TRIALS) for name in ("latent_mse", "latent_cosine", "ssim")}
        store.client.log_artifact(run_id, str(save_per_trial(trials_folder / run_id / PER_TRIAL_FILE, columns)))
    logged = [Metric(f"test/{name}", value, start, EPOCHS) for name, value in metrics.items()]
    scale = 1.0 + (start // 1000) % 100 / 10  # distinct per run
    for epoch in range(1, EPOCHS + 1):
        logged += [
            Metric("learning/train_loss", scale / epoch, start, epoch),
            Metric("learning/test_loss", 2 * scale / epoch, start, epoch),
        ]
    store.client.log_batch(run_id, metrics=logged, params=[Param(k, v) for k, v in (params or {}).items()])
    store.client.set_terminated(run_id, status)
    return run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    """Sweep A: 3 groups x 3 seeds and a failed job; sweep B: pool sizes 10 and 2 (created in
    that order), with pool size and seed only in the fallbacks; one unrelated single run."""
    folder = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(uri)
    store = Store(uri, client)
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=(folder / "artifacts").as_uri())
    rng = np.random.default_rng(0)
    start = 1_700_000_000_000

    store.parent_a = client.create_run(experiment_id, start_time=start, tags={"sweep": "sweep-a"}).info.run_id
    for group in GROUPS_A:
        store.logged_a[group] = {m: [] for m in METRICS}
        for seed in SEEDS:
            values = {m: float(rng.uniform(0.1, 0.9)) for m in METRICS}
            start += 1000
            tags = {
                "sweep": "sweep-a",
                "group": group,
                "seed": str(seed),
                "pool_size": "1",
                "subjects": "1",
                "mlflow.parentRunId": store.parent_a,
            }
            make_run(store, experiment_id, start, tags, values, trials_folder=folder / "trials")
            for metric, value in values.items():
                store.logged_a[group][metric].append(value)
    tags = {
        "sweep": "sweep-a",
        "group": "data=hyperaligned",
        "seed": "3",
        "pool_size": "1",
        "mlflow.parentRunId": store.parent_a,
        "error": "RuntimeError: out of memory\ntraceback...",
    }
    # an absurd value: any leak of the failed job into the statistics shows
    store.failed_run = make_run(store, experiment_id, start + 500, tags, {"latent_similarity": 100.0}, "FAILED")
    client.set_terminated(store.parent_a, "FINISHED")

    store.parent_b = client.create_run(experiment_id, start_time=start + 600, tags={"sweep": "sweep-b"}).info.run_id
    for n_subjects in (10, 2):
        for seed in (0, 1):
            start += 1000
            tags = {
                "sweep": "sweep-b",
                "group": f"data.n_subjects={n_subjects}",
                "subjects": ",".join(map(str, range(1, n_subjects + 1))),
                "mlflow.parentRunId": store.parent_b,
            }
            make_run(
                store,
                experiment_id,
                start,
                tags,
                {m: float(rng.uniform()) for m in METRICS},
                params={"trainer.seed": str(seed)},
                trials_folder=folder / "trials",
            )
    other = client.create_experiment("other", artifact_location=(folder / "other").as_uri())
    make_run(store, other, start + 1000, {"sweep": "none"}, {"latent_similarity": 0.5})
    return store


def test_collect_runs_finds_the_jobs_of_one_sweep_only(store):
    records = collect_runs(store.uri, sweep="sweep-a")
    assert len(records) == 10  # 9 jobs + the failed one; neither the parent nor sweep B
    assert {r.run_id for r in records} == {r.run_id for r in collect_runs(store.uri, parent_run_id=store.parent_a)}
    assert [r.status for r in records].count("FAILED") == 1
    first = records[0]
    assert (first.group, first.seed, first.pool_size) == ("data=subject1", 0, 1)
    assert set(first.metrics) == set(METRICS)
    assert [step for step, _ in first.histories["test_loss"]] == list(range(1, EPOCHS + 1))
    assert len(collect_runs(store.uri, experiment="other")) == 1


def test_collect_runs_pages_through_the_results(store, monkeypatch):
    monkeypatch.setattr("hyperexp.report.queries.PAGE_SIZE", 3)
    assert len(collect_runs(store.uri, sweep="sweep-a", histories=())) == 10


def test_table_equals_the_logged_metrics_and_excludes_the_failed_job(store):
    table = summary_table(collect_runs(store.uri, sweep="sweep-a", histories=()))
    assert [row.group for row in table] == list(GROUPS_A)  # first-seen order
    assert [row.n_runs for row in table] == [3, 3, 3]
    for row in table:
        for metric in METRICS:
            values = np.array(store.logged_a[row.group][metric])
            assert row.metrics[metric].mean == pytest.approx(values.mean(), rel=1e-12)
            assert row.metrics[metric].sd == pytest.approx(values.std(ddof=1), rel=1e-12)
            assert row.metrics[metric].n == 3


def test_pool_sizes_order_numerically_and_fall_back_to_subjects_and_param_seed(store):
    records = collect_runs(store.uri, sweep="sweep-b", histories=())
    assert sorted({r.seed for r in records}) == [0, 1]
    table = summary_table(records)
    assert [row.group for row in table] == ["data.n_subjects=2", "data.n_subjects=10"]
    assert [row.pool_size for row in table] == [2, 10]


def test_spread_cells_are_mean_plus_minus_sd_over_runs(report_a):
    paths, store = report_a
    values = np.array(store.logged_a["data=subject2"]["ssim"])
    spread = paths["markdown"].read_text().split("## Spread over runs")[1].split("##")[0]
    row = next(line for line in spread.splitlines() if line.startswith("| data=subject2 |"))
    assert f"| {values.mean():.4g} ± {values.std(ddof=1):.2g} |" in row


@pytest.fixture(scope="module")
def report_a(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("report_a")
    records = collect_runs(store.uri, sweep="sweep-a")
    return write_report(records, load_trials(records, store.uri), out), store


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_runs_csv_holds_every_statistic_exactly(report_a):
    paths, store = report_a
    table = summary_table(collect_runs(store.uri, sweep="sweep-a", histories=()))
    rows = read_csv(paths["runs_csv"])
    assert list(rows[0]) == ["group", "pool_size", "n_runs"] + [
        f"{m}_{s}" for m in METRICS for s in ("mean", "sd", "n")
    ]
    assert [(row["group"], row["pool_size"], row["n_runs"]) for row in rows] == [(g, "1", "3") for g in GROUPS_A]
    for row, summary in zip(rows, table):
        for metric in METRICS:
            expected = summary.metrics[metric]
            assert (float(row[f"{metric}_mean"]), float(row[f"{metric}_sd"])) == (expected.mean, expected.sd)
            assert row[f"{metric}_n"] == "3"


def test_unknown_values_are_empty_csv_cells_and_dashes_in_markdown(store, tmp_path):
    records = collect_runs(store.uri, sweep="sweep-a", histories=())
    lonely = [r for r in records if r.group == "data=subject1"][:1]  # one run: no sd
    failed = [r for r in records if not r.finished]  # a group whose only job failed
    for record in failed:
        record.group = "broken"
    paths = write_report(lonely + failed, {}, tmp_path)
    rows = {row["group"]: row for row in read_csv(paths["runs_csv"])}
    assert rows["data=subject1"]["ssim_sd"] == "" and rows["data=subject1"]["ssim_n"] == "1"
    assert rows["broken"]["n_runs"] == "0" and rows["broken"]["ssim_mean"] == ""
    markdown = paths["markdown"].read_text()
    single = f"{lonely[0].metrics['ssim']:.4g}"
    assert any(line.startswith("| data=subject1 |") and f"| {single} |" in line for line in markdown.splitlines())
    assert "| broken | 1 | 0 | – | – | – |" in markdown
    assert "No finished run logged per-trial metrics" in markdown


def test_report_lists_the_failed_job_and_links_the_figures(report_a):
    paths, store = report_a
    text = paths["markdown"].read_text()
    failures = text.split("## Jobs not in the statistics")[1].split("## Figures")[0]
    assert store.failed_run in failures and "FAILED" in failures and "out of memory" in failures
    assert "pool_size" not in paths  # one pool size only
    for name in ("estimates", "differences", "loss_curves"):
        assert f"]({paths[name].name})" in text


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as image:
        image.verify()


def test_figures_are_valid_pngs(report_a, store, tmp_path):
    paths, _ = report_a
    records = collect_runs(store.uri, sweep="sweep-b")
    pool_paths = write_report(records, load_trials(records, store.uri), tmp_path)
    assert "estimates" not in pool_paths  # the pool-size figure answers this sweep's question
    for path in [paths["estimates"], paths["differences"], paths["loss_curves"], pool_paths["pool_size"]]:
        assert_png(path)


def test_cli_on_a_sweep_id_writes_the_report_and_logs_it_to_the_parent_run(store, tmp_path):
    assert main(["sweep-a", "--tracking-uri", store.uri, "--out", str(tmp_path)]) == 0
    assert {"report.md", "report.csv", "loss_curves.png"} <= {p.name for p in tmp_path.iterdir()}
    logged = {a.path for a in store.client.list_artifacts(store.parent_a, "report")}
    assert "report/report.md" in logged


def test_cli_on_a_sweep_folder_reads_the_parent_run_file(store, tmp_path):
    folder = tmp_path / "12-00-00"  # the name matches no sweep tag: the parent run file must be used
    folder.mkdir()
    (folder / "mlflow_parent_run.txt").write_text(store.parent_b + "\n")
    assert main([str(folder), "--tracking-uri", store.uri, "--no-log"]) == 0
    assert [row["pool_size"] for row in read_csv(folder / "runs.csv")] == ["2", "10"]
    assert (folder / "metric_vs_pool_size.png").is_file()


def test_cli_on_a_sweep_folder_without_parent_file_uses_its_name(store, tmp_path):
    folder = tmp_path / "sweep-a"
    folder.mkdir()
    assert main([str(folder), "--tracking-uri", store.uri, "--no-log"]) == 0
    assert [row["n_runs"] for row in read_csv(folder / "runs.csv")] == ["3", "3", "3"]


def test_cli_fails_with_one_clear_line_on_an_unknown_target(store, tmp_path):
    result = run_cli("no-such-sweep", "--tracking-uri", store.uri, cwd=tmp_path, module="hyperexp.report")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hyperexp: error: no-such-sweep: no runs in "), result.stderr
    assert not (tmp_path / "outputs").exists()


def test_cli_does_not_create_a_store_that_is_not_there(tmp_path, capsys):
    assert main(["sweep-a", "--tracking-uri", f"sqlite:///{tmp_path / 'missing.db'}"]) == 1
    assert capsys.readouterr().err == f"hyperexp: error: {tmp_path / 'missing.db'}: no MLflow store there\n"
    assert not (tmp_path / "missing.db").exists()


def test_cli_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["sweep-a", "--no-such-option"])
    assert stopped.value.code == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_cli_reports_an_unwritable_output_folder_in_one_line(store, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output folder should be")
    assert main(["sweep-a", "--tracking-uri", store.uri, "--out", str(blocker / "report"), "--no-log"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hyperexp: error: ") and str(blocker) in err and len(err.splitlines()) == 1, err


def test_appendix_ends_the_report(store, tmp_path):
    paths = write_report(
        collect_runs(store.uri, sweep="sweep-a", histories=()), {}, tmp_path, appendix="## Extra\n\n- x"
    )
    assert paths["markdown"].read_text().endswith("\n\n## Extra\n\n- x\n")


MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_every_link_of_every_report_resolves_and_the_html_embeds_its_figures(report_a, store, tmp_path):
    records = collect_runs(store.uri, sweep="sweep-b")
    reports = [
        report_a[0],
        write_report(records, load_trials(records, store.uri), tmp_path / "pool"),
        write_report(records, {}, tmp_path / "without-trials"),
    ]
    for paths in reports:
        folder = paths["markdown"].parent
        assert all(path.is_file() and path.parent == folder for path in paths.values())
        markdown = paths["markdown"].read_text()
        links = MARKDOWN_LINK.findall(markdown)
        assert links and all((folder / link).is_file() for link in links), links
        html = paths["html"].read_text()
        hrefs = re.findall(r'href="([^"]+)"', html)
        assert hrefs and all((folder / href).is_file() for href in hrefs), hrefs
        sources = re.findall(r'<img src="([^"]+)"', html)
        figures = [link for link in links if link.endswith(".png")]
        assert len(sources) == len(figures) == markdown.count("![")
        for source, figure in zip(sources, figures):
            prefix = "data:image/png;base64,"
            assert (
                source.startswith(prefix) and base64.b64decode(source[len(prefix) :]) == (folder / figure).read_bytes()
            )


def test_cli_reports_several_targets_together_against_a_baseline(store, tmp_path):
    arguments = ["sweep-a", "sweep-b", "--tracking-uri", store.uri, "--out", str(tmp_path), "--no-log"]
    assert main([*arguments, "--baseline", "data=subject1"]) == 0
    rows = read_csv(tmp_path / "differences.csv")
    assert {row["baseline"] for row in rows} == {"data=subject1"}
    groups = {"data=subject2", "data=hyperaligned", "data.n_subjects=2", "data.n_subjects=10"}
    assert {row["group"] for row in rows} == groups
    assert "Sweep report: sweep-a sweep-b" in (tmp_path / "report.md").read_text()


def test_cli_refuses_a_baseline_that_names_no_group_in_one_line(store, tmp_path, capsys):
    assert main(["sweep-a", "--tracking-uri", store.uri, "--out", str(tmp_path), "--baseline", "data=average"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hyperexp: error: report.baseline: 'data=average' matches no group") and err.count("\n") == 1


COMMITTED_REPORTS = sorted((REPO / "docs").glob("*/report.md"))


@pytest.mark.parametrize("report", COMMITTED_REPORTS, ids=[path.parent.name for path in COMMITTED_REPORTS])
def test_every_link_of_the_committed_reports_resolves(report):
    links = MARKDOWN_LINK.findall(report.read_text())
    assert links and all((report.parent / link).is_file() for link in links), links
    html = (report.parent / "report.html").read_text()
    assert all((report.parent / href).is_file() for href in re.findall(r'href="([^"]+)"', html))
    assert html.count('<img src="data:image/png;base64,') == report.read_text().count("![")
