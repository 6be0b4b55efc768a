"""The sections of a report, as document blocks: groups with their intervals, paired differences,
each simulated experiment, the spread over runs, convergence, and jobs left out."""

from __future__ import annotations

import math
from collections.abc import Sequence

from hyperexp.evaluate.convergence import TAIL, TOLERANCE
from hyperexp.report.compare import Analysis
from hyperexp.report.document import Block, Bullets, Heading, Paragraph, Table
from hyperexp.report.figures import comparison_label
from hyperexp.report.queries import RunRecord
from hyperexp.report.statistics import CONFIDENCE, N_RESAMPLES, Estimate
from hyperexp.report.summary import GroupSummary, pool_sizes

PRELIMINARY_MARK = " *"


def interval(estimate: Estimate, signed: bool = False) -> str:
    spec = "+.4f" if signed else ".4f"
    if math.isnan(estimate.low):
        return format(estimate.value, spec)
    return f"{estimate.value:{spec}} [{estimate.low:{spec}}, {estimate.high:{spec}}]"


def p_value(p: float) -> str:
    return "–" if math.isnan(p) else f"{p:.2g}"


def _seconds(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def method_paragraph(analysis: Analysis) -> Paragraph:
    level = int(CONFIDENCE * 100)
    if analysis.n_experiments > 1:
        text = (
            f"Intervals: {level}% t intervals over the {analysis.n_experiments} simulated experiments "
            "(`data.simulation.seed`: new stimuli, subjects and noise each); each experiment's value is its "
            "statistic over its own test trials. Differences are paired within each experiment (same trials) "
            "and their p-value is a paired t-test over the experiments."
        )
    else:
        text = (
            f"Intervals: {level}% BCa bootstrap over the test trials (`scipy.stats.bootstrap`, {N_RESAMPLES} "
            "resamples). Differences are paired over the same trials; their p-value is a paired permutation "
            f"test (`scipy.stats.permutation_test`, the two groups' values swapped within trials, {N_RESAMPLES} "
            "resamples)."
        )
    counts = {e.n_experiments for g in analysis.groups for e in g.estimates.values()}
    if len(counts) > 1:
        text += " Groups differ in their number of experiments: each row's method is in report.csv."
    return Paragraph(
        text + " Runs of one group on the same trials that differ only in the decoder seed are averaged "
        "trial by trial (their spread is in *Spread over runs*). `latent_similarity` is 1/(1 + mean latent "
        "MSE), every other metric the mean over trials of its per-trial value, as the runs log them."
    )


def preliminary_paragraph(analysis: Analysis) -> Paragraph | None:
    still = [run_id for run_id, drop in analysis.convergence.items() if drop.still_falling]
    if not still:
        return None
    return Paragraph(
        f"**Preliminary**: {len(still)} of {len(analysis.convergence)} trained runs were still improving at "
        f"the end (their last {TAIL:.0%} of epochs made more than {TOLERANCE:.0%} of their test-loss "
        f"improvement); groups and comparisons marked{PRELIMINARY_MARK} involve them. Train longer before "
        "reading their differences."
    )


def group_table(analysis: Analysis) -> Table:
    with_pool = len({g.pool_size for g in analysis.groups} - {None}) > 1
    header = ["group"] + (["pool size"] if with_pool else []) + ["runs", "experiments × trials"]
    header += [f"{m} [{CONFIDENCE:.0%}]" for m in analysis.metrics] + ["fit time (s)"]
    rows = []
    for g in analysis.groups:
        first = g.estimates[analysis.metrics[0]]
        row = [g.group + (PRELIMINARY_MARK if g.preliminary else "")]
        row += [str(g.pool_size or "")] if with_pool else []
        row += [str(g.n_runs), f"{first.n_experiments} × {first.n_trials}"]
        row += [interval(g.estimates[m]) for m in analysis.metrics] + [_seconds(g.fit_seconds)]
        rows.append(row)
    return Table(header, rows)


def difference_blocks(analysis: Analysis) -> list[Block]:
    if not analysis.comparisons:
        return []
    against = f"against the baseline `{analysis.baseline}`" if analysis.baseline else "between every pair of groups"
    n_tests = sum(len(c.differences) for c in analysis.comparisons)
    blocks: list[Block] = [
        Heading("Paired differences"),
        Paragraph(
            f"Group minus reference over the same test trials, {against}; p: two-sided, and Holm-corrected over "
            f"the {n_tests} tests of this table."
        ),
    ]
    rows = []
    for c in analysis.comparisons:
        label = comparison_label(c) + (PRELIMINARY_MARK if c.preliminary else "")
        for metric, d in c.differences.items():
            rows.append([label, metric, interval(d, signed=True), p_value(d.p), p_value(d.p_adjusted)])
    blocks.append(Table(["comparison", "metric", f"difference [{CONFIDENCE:.0%}]", "p", "p (Holm)"], rows))
    agreeing = [c for c in analysis.comparisons if c.agreement is not None]
    if agreeing:
        blocks += [
            Paragraph("Agreement of the predictions: per trial the cosine of the two groups' predicted latents."),
            Table(
                ["comparison", f"prediction cosine [{CONFIDENCE:.0%}]"],
                [[comparison_label(c), interval(c.agreement)] for c in agreeing],
            ),
        ]
    return blocks


def experiment_blocks(analysis: Analysis) -> list[Block]:
    """Each experiment's own trial-level results for the first metric (all metrics: the CSV files)."""
    if analysis.n_experiments < 2:
        return []
    metric = analysis.metrics[0]
    rows = [
        [g.group, label, interval(e), ""]
        for g in analysis.groups
        for label, e in zip(g.experiments, g.per_experiment[metric])
    ]
    rows += [
        [comparison_label(c), label, interval(e, signed=True), p_value(e.p)]
        for c in analysis.comparisons
        for label, e in zip(c.experiments, c.per_experiment[metric])
    ]
    return [
        Heading("Each simulated experiment"),
        Paragraph(
            f"`{metric}` in each experiment over its own {analysis.groups[0].estimates[metric].n_trials} test "
            "trials: BCa bootstrap intervals; for differences the paired permutation p-value (not corrected). "
            "Every metric: [experiments.csv](experiments.csv), [differences.csv](differences.csv)."
        ),
        Table(["group or comparison", "experiment", f"value [{CONFIDENCE:.0%}]", "p (permutation)"], rows),
    ]


def spread_blocks(table: Sequence[GroupSummary], metrics: Sequence[str]) -> list[Block]:
    """Run-level final metrics, mean ± sd over runs: decoder seeds (and experiments), not the uncertainty."""
    if not metrics:
        return []
    with_pool = bool(pool_sizes(table))
    header = ["group"] + (["pool size"] if with_pool else []) + ["runs"] + list(metrics)
    rows = []
    for row in table:
        cells = [row.group] + ([str(row.pool_size or "")] if with_pool else []) + [str(row.n_runs)]
        for s in (row.metrics[m] for m in metrics):
            cells.append("–" if not s.n else f"{s.mean:.4g}" if math.isnan(s.sd) else f"{s.mean:.4g} ± {s.sd:.2g}")
        rows.append(cells)
    return [
        Heading("Spread over runs (not the uncertainty)"),
        Paragraph(
            "Each run's end-of-run metrics, mean ± sd over the group's runs (sd over decoder seeds, and over "
            "simulated experiments when those are swept); also metrics that are not per trial "
            "(`attribute_similarity`, `latent_pearson`). Every final metric: [runs.csv](runs.csv)."
        ),
        Table(header, rows),
    ]


def convergence_blocks(analysis: Analysis, records: Sequence[RunRecord]) -> list[Block]:
    if not analysis.convergence:
        return []
    by_id = {r.run_id: r for r in records}
    rows = []
    for run_id, drop in analysis.convergence.items():
        record = by_id[run_id]
        state = "still falling" if drop.still_falling else "converged"
        epochs = str(len(record.histories.get("test_loss", [])))
        rows.append([f"`{run_id[:8]}` {record.run_name}", record.group, epochs, f"{drop.fraction:.2%}", state])
    return [
        Heading("Convergence"),
        Paragraph(
            f"Share of each trained run's test-loss improvement made in its last {TAIL:.0%} of epochs; above "
            f"{TOLERANCE:.0%} it was still falling at the end. Closed-form decoders have nothing to converge."
        ),
        Table(["run", "group", "epochs", f"share in last {TAIL:.0%}", ""], rows),
    ]


def unfinished_blocks(records: Sequence[RunRecord]) -> list[Block]:
    unfinished = [r for r in records if not r.finished]
    items = [
        f"`{r.run_id}` {r.run_name} (group {r.group}, seed {'?' if r.seed is None else r.seed}): {r.status}"
        + (f": {r.error}" if r.error else "")
        for r in unfinished
    ]
    return [Heading("Jobs not in the statistics"), Bullets(items) if items else Paragraph("None: every job finished.")]
