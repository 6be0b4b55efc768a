"""Per-trial statistics of the reports against direct scipy computations, on synthetic sweeps
whose true differences are known; Holm's correction; the convergence flag on real fits."""

from __future__ import annotations

import csv
import functools
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from scipy import stats

from hyperexp.artifacts import save_per_trial
from hyperexp.config import TrainerConfig
from hyperexp.decode import FitContext, GradientDecoder
from hyperexp.decode.optim import MXNetAdam
from hyperexp.errors import InputError
from hyperexp.evaluate import EpochMetrics
from hyperexp.evaluate.convergence import tail_drop
from hyperexp.evaluate.trials import PER_TRIAL_FILE
from hyperexp.report.compare import analyse, comparison_pairs, resolve_group
from hyperexp.report.queries import RunRecord, collect_runs
from hyperexp.report.statistics import N_RESAMPLES, RANDOM_SEED, holm
from hyperexp.report.trials import RunTrials, arrange_trials, load_trials
from hyperexp.report.write import write_report
from hyperexp.train import warn_if_still_falling

N_TRIALS = 36
REAL_DIFFERENCE = 0.1  # data=hyperaligned's latent cosine is this much above data=subject1's, trial by trial


def trial_columns(rng, cosine_shift: float = 0.0) -> dict[str, np.ndarray]:
    return {
        "latent_mse": rng.uniform(0.4, 0.6, N_TRIALS),
        "latent_cosine": rng.normal(0.5, 0.05, N_TRIALS) + cosine_shift,
        "latent_identification": rng.uniform(0.6, 1.0, N_TRIALS),
        "ssim": rng.normal(0.8, 0.02, N_TRIALS),
    }


def make_sweep(folder: Path, experiments: dict[str, dict[str, dict[str, np.ndarray]]], histories=None) -> str:
    """An MLflow store with one finished run per (group, test set), each with its per_trial.csv;
    ``experiments``: test set -> group -> columns. Returns the store's URI."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("synthetic", artifact_location=(folder / "artifacts").as_uri())
    start = 1_700_000_000_000
    for seed, (test_set, groups) in enumerate(experiments.items()):
        for group, columns in groups.items():
            start += 1000
            tags = {"sweep": "synthetic", "group": group, "test_set": test_set}
            run_id = client.create_run(experiment_id, start_time=start, tags=tags).info.run_id
            client.log_param(run_id, "data.simulation.seed", str(seed))
            for step, value in enumerate((histories or {}).get(group, []), start=1):
                client.log_metric(run_id, "learning/test_loss", value, step=step)
            table = save_per_trial(folder / run_id / PER_TRIAL_FILE, columns)
            client.log_artifact(run_id, str(table))
            client.set_terminated(run_id, "FINISHED")
    return uri


@pytest.fixture(scope="module")
def one_experiment(tmp_path_factory):
    """One test set; data=hyperaligned has a real difference from data=subject1, data=subject2 none."""
    folder = tmp_path_factory.mktemp("one")
    rng = np.random.default_rng(7)
    columns = {
        "data=subject1": trial_columns(rng),
        "data=subject2": trial_columns(rng),
        "data=hyperaligned": trial_columns(rng, REAL_DIFFERENCE),
    }
    uri = make_sweep(folder, {"set-a": columns})
    records = collect_runs(uri, sweep="synthetic")
    paths = write_report(records, load_trials(records, uri), folder / "report", baseline="data=subject1")
    return columns, paths


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def row_of(rows, **match) -> dict[str, str]:
    (row,) = [row for row in rows if all(row[key] == value for key, value in match.items())]
    return row


def mean(values, axis=-1):
    return np.mean(values, axis=axis)


def test_group_intervals_are_scipy_bca_bootstraps_over_trials(one_experiment):
    columns, paths = one_experiment
    rows = read_rows(paths["csv"])
    for group, values in columns.items():
        expected = stats.bootstrap(
            (values["latent_cosine"],), mean, n_resamples=N_RESAMPLES, method="BCa", rng=RANDOM_SEED
        ).confidence_interval
        row = row_of(rows, group=group, metric="latent_cosine")
        assert float(row["value"]) == pytest.approx(values["latent_cosine"].mean(), rel=1e-12)
        assert (float(row["low"]), float(row["high"])) == pytest.approx((expected.low, expected.high), rel=1e-12)
        assert row["method"] == f"bootstrap over {N_TRIALS} trials"


def test_latent_similarity_is_the_run_level_statistic_of_the_trial_mses(one_experiment):
    columns, paths = one_experiment
    row = row_of(read_rows(paths["csv"]), group="data=subject2", metric="latent_similarity")
    mse = columns["data=subject2"]["latent_mse"]
    assert float(row["value"]) == pytest.approx(1 / (1 + mse.mean()), rel=1e-12)
    expected = stats.bootstrap(
        (mse,), lambda v, axis=-1: 1 / (1 + np.mean(v, axis=axis)), n_resamples=N_RESAMPLES, method="BCa", rng=0
    ).confidence_interval
    assert (float(row["low"]), float(row["high"])) == pytest.approx((expected.low, expected.high), rel=1e-12)


def paired_scipy(a, b):
    def difference(x, y, axis=-1):
        return np.mean(x, axis=axis) - np.mean(y, axis=axis)

    interval = stats.bootstrap(
        (a, b), difference, paired=True, n_resamples=N_RESAMPLES, method="BCa", rng=RANDOM_SEED
    ).confidence_interval
    test = stats.permutation_test(
        (a, b), difference, permutation_type="samples", n_resamples=N_RESAMPLES, vectorized=True, rng=RANDOM_SEED
    )
    return interval, test.pvalue


@pytest.mark.parametrize("group, real", [("data=hyperaligned", True), ("data=subject2", False)])
def test_paired_differences_match_scipy_and_find_the_real_difference_only(one_experiment, group, real):
    columns, paths = one_experiment
    a, b = columns[group]["latent_cosine"], columns["data=subject1"]["latent_cosine"]
    interval, p = paired_scipy(a, b)
    row = row_of(read_rows(paths["differences_csv"]), group=group, baseline="data=subject1", metric="latent_cosine")
    assert float(row["value"]) == pytest.approx(a.mean() - b.mean(), rel=1e-12)
    assert (float(row["low"]), float(row["high"])) == pytest.approx((interval.low, interval.high), rel=1e-12)
    assert float(row["p"]) == pytest.approx(p, rel=1e-12)
    wilcoxon = stats.wilcoxon(a, b).pvalue  # an independent test of the same pairs agrees on the verdict
    if real:
        assert float(row["low"]) < REAL_DIFFERENCE < float(row["high"]) and float(row["low"]) > 0
        assert float(row["p_holm"]) < 0.01 and wilcoxon < 0.01
    else:
        assert float(row["low"]) < 0 < float(row["high"])
        assert float(row["p_holm"]) > 0.05 and wilcoxon > 0.05


def test_p_values_are_holm_corrected_over_the_whole_table(one_experiment):
    _, paths = one_experiment
    rows = [row for row in read_rows(paths["differences_csv"]) if row["p"]]
    assert len(rows) == 2 * 4  # two comparisons against the baseline, four metrics
    adjusted = holm([float(row["p"]) for row in rows])
    assert [float(row["p_holm"]) for row in rows] == pytest.approx(adjusted, rel=1e-12)


def test_holm_on_a_hand_worked_example():
    assert holm([0.01, 0.04, 0.03, float("nan")]) == pytest.approx([0.03, 0.06, 0.06, float("nan")], nan_ok=True)
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # 2 x 0.5 caps at 1, and adjusted values never decrease


def test_several_experiments_use_the_t_interval_over_experiments(tmp_path):
    rng = np.random.default_rng(3)
    shifts = {"seed-0": 0.05, "seed-1": 0.09, "seed-2": 0.02}  # hyperaligned's gain differs per experiment
    experiments = {
        key: {"data=subject1": trial_columns(rng), "data=hyperaligned": trial_columns(rng, shift)}
        for key, shift in shifts.items()
    }
    uri = make_sweep(tmp_path, experiments)
    records = collect_runs(uri, sweep="synthetic")
    paths = write_report(records, load_trials(records, uri), tmp_path / "report")
    per_experiment = [
        g["data=hyperaligned"]["latent_cosine"].mean() - g["data=subject1"]["latent_cosine"].mean()
        for g in experiments.values()
    ]
    test = stats.ttest_1samp(per_experiment, 0.0)
    expected = test.confidence_interval(0.95)
    rows = read_rows(paths["differences_csv"])
    overall = row_of(rows, group="data=hyperaligned", metric="latent_cosine", experiment="all")
    assert float(overall["value"]) == pytest.approx(np.mean(per_experiment), rel=1e-12)
    assert (float(overall["low"]), float(overall["high"])) == pytest.approx((expected.low, expected.high), rel=1e-12)
    assert float(overall["p"]) == pytest.approx(test.pvalue, rel=1e-12)
    assert overall["method"] == "t over 3 simulated experiments"
    first = row_of(rows, group="data=hyperaligned", metric="latent_cosine", experiment="seed 0")
    columns = experiments["seed-0"]
    _, p = paired_scipy(columns["data=hyperaligned"]["latent_cosine"], columns["data=subject1"]["latent_cosine"])
    assert float(first["p"]) == pytest.approx(p, rel=1e-12)
    assert "t intervals over the 3 simulated experiments" in paths["markdown"].read_text()


def test_runs_differing_only_in_decoder_seed_are_averaged_not_counted(tmp_path):
    rng = np.random.default_rng(5)
    seeds = [trial_columns(rng) for _ in range(3)]
    records = [
        RunRecord(f"run{i}", "data=subject1", i, 1, "FINISHED", {}, tags={"test_set": "set-a"}) for i in range(3)
    ]
    trials = arrange_trials(records, {f"run{i}": RunTrials(columns, None) for i, columns in enumerate(seeds)})
    experiment = trials["data=subject1"].experiments["set-a"]
    assert trials["data=subject1"].runs == {"set-a": 3}
    assert experiment["ssim"] == pytest.approx(np.mean([s["ssim"] for s in seeds], axis=0))
    (group,) = analyse(records, trials).groups
    assert group.estimates["ssim"].n_experiments == 1 and group.estimates["ssim"].n_trials == N_TRIALS


def test_baselines_resolve_by_their_items_and_refuse_ambiguity():
    groups = ["data=subject1,decoder=adam", "data=subject2,decoder=adam", "data=subject1,decoder=ols"]
    assert resolve_group("data=subject2", groups) == "data=subject2,decoder=adam"
    assert resolve_group("decoder=ols", groups) == "data=subject1,decoder=ols"
    with pytest.raises(InputError, match="matches 2 groups"):
        resolve_group("data=subject1", groups)
    with pytest.raises(InputError, match="matches no group"):
        resolve_group("data=average", groups)
    assert comparison_pairs(["a", "b", "c"], None) == [("b", "a"), ("c", "a"), ("c", "b")]
    assert comparison_pairs(["a", "b", "c"], "b") == [("a", "b"), ("c", "b")]


# ----------------------------------------------------------------------------- convergence


def fitted_losses(epochs: int) -> list[float]:
    """Per-epoch test losses of the published optimiser (at a fast rate) on a small regression."""
    return fitted_history(epochs).test_loss.tolist()


def fitted_history(epochs: int):
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(40, 8, generator=generator)
    x = torch.randn(150, 40, generator=generator)
    t = x @ weights / 6 + 0.3 * torch.randn(150, 8, generator=generator)
    settings = TrainerConfig(epochs=epochs, batch_size=30, progress=False, log_every=epochs)
    decoder = GradientDecoder(functools.partial(MXNetAdam, lr=1e-2, weight_decay=0.01))
    context = FitContext(settings, monitor=EpochMetrics({"test": (x[120:], t[120:])}))
    return decoder.fit(x[:120], t[:120], context).history_


def test_the_convergence_flag_fires_on_a_truncated_fit_and_not_on_a_converged_one():
    truncated, converged = tail_drop(fitted_losses(6)), tail_drop(fitted_losses(150))
    assert truncated.still_falling and truncated.fraction > 0.02
    assert not converged.still_falling and converged.fraction < 0.001
    assert tail_drop([0.5]) is None  # a closed-form fit: nothing to converge
    assert not tail_drop([1.0, 0.5, 0.6, 0.7]).still_falling  # rising at the end is not falling


def test_a_report_with_a_run_still_falling_says_preliminary(tmp_path):
    rng = np.random.default_rng(1)
    columns = {"data=subject1": trial_columns(rng), "data=subject2": trial_columns(rng)}
    falling = fitted_losses(6)
    uri = make_sweep(tmp_path, {"set-a": columns}, histories={"data=subject2": falling})
    records = collect_runs(uri, sweep="synthetic")
    paths = write_report(records, load_trials(records, uri), tmp_path / "report")
    text = paths["markdown"].read_text()
    assert "**Preliminary**: 1 of 1 trained runs were still improving" in text
    assert "| data=subject2 * |" in text and "| data=subject2 − data=subject1 * |" in text
    assert "| data=subject1 |" in text  # the closed-form-like run is not flagged
    assert paths["loss_curves"].is_file()


def test_a_run_still_falling_says_so_in_its_log(caplog):
    with caplog.at_level(logging.WARNING, logger="hyperexp"):
        warn_if_still_falling(fitted_history(150))
        assert not caplog.records
        warn_if_still_falling(fitted_history(6))
    (record,) = caplog.records
    assert (
        "test loss still falling" in record.getMessage() and "trainer=quick is for smoke tests" in record.getMessage()
    )


def test_an_interval_over_experiments_stops_at_the_metrics_range():
    """Identification near its ceiling in 3 experiments: the t interval reaches past 1, the
    reported one stops there; the mean, the p-value and intervals inside the range are unchanged."""
    from hyperexp.report.statistics import group_estimate, over_experiments, paired_estimate

    near_one = [np.array([1.0] * 35 + [0.9]), np.ones(36), np.array([1.0] * 34 + [0.8, 0.9])]
    raw = over_experiments([v.mean() for v in near_one], 36, difference=False)
    assert raw.high > 1  # what the plain t interval says
    estimate, _ = group_estimate([{"latent_identification": v} for v in near_one], "latent_identification")
    assert estimate.high == 1.0 and estimate.low == pytest.approx(raw.low, rel=1e-12)
    assert estimate.value == pytest.approx(np.mean([v.mean() for v in near_one]), rel=1e-12)
    # a difference of two metrics in [0, 1] lies in [-1, 1]
    zeros = [{"latent_identification": np.zeros(36)} for _ in near_one]
    ones = [{"latent_identification": np.r_[np.ones(35), value]} for value in (0.0, 1.0, 0.5)]
    difference, _ = paired_estimate(ones, zeros, "latent_identification")
    unclipped = over_experiments([1 - 1 / 36, 1.0, 1 - 0.5 / 36], 36, difference=True)
    assert unclipped.high > 1 and difference.high == 1.0 and difference.p == pytest.approx(unclipped.p, rel=1e-12)
    # an unbounded metric, or one far from its bounds, keeps the t interval as it is
    cosines = [{"latent_cosine": np.full(36, value)} for value in (0.2, 0.3, 0.25)]
    kept, _ = group_estimate(cosines, "latent_cosine")
    plain = over_experiments([0.2, 0.3, 0.25], 36, difference=False)
    assert (kept.low, kept.high) == pytest.approx((plain.low, plain.high), rel=1e-12)


def test_every_interval_of_a_report_lies_in_its_metrics_range(tmp_path):
    from hyperexp.evaluate import metric

    rng = np.random.default_rng(11)

    def saturated(misses: int):  # identification at its ceiling but for ``misses`` trials
        return {**trial_columns(rng), "latent_identification": np.r_[np.zeros(misses), np.ones(N_TRIALS - misses)]}

    experiments = {
        f"seed-{k}": {"data=subject1": saturated(misses), "data=average": saturated(1 - misses)}
        for k, misses in enumerate((0, 1, 0))
    }
    uri = make_sweep(tmp_path, experiments)
    records = collect_runs(uri, sweep="synthetic")
    paths = write_report(records, load_trials(records, uri), tmp_path / "report")
    for row in read_rows(paths["csv"]):
        entry = metric(row["metric"])
        assert entry.low <= float(row["low"]) <= float(row["value"]) <= float(row["high"]) <= entry.high, row
    identification = row_of(read_rows(paths["csv"]), group="data=subject1", metric="latent_identification")
    assert float(identification["high"]) == 1.0  # the t interval over 3 experiments would reach past it
    for row in read_rows(paths["differences_csv"]):
        entry = metric(row["metric"])
        width = entry.high - entry.low
        assert -width <= float(row["low"]) <= float(row["value"]) <= float(row["high"]) <= width, row
