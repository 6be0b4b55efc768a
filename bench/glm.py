"""Benchmark the single-trial GLM (hyperexp.data.glm, via the BIDS source) against nilearn called the plain way.

    python bench/glm.py                 # 4 runs x ~300 volumes x a 4096-voxel mask (about a minute)
    python bench/glm.py --runs 2 --mask-voxels 1024

The baseline is LSS as nilearn's documentation does it: one ``FirstLevelModel`` (OLS) per trial,
its design the trial, all other trials as one regressor, drift and constant; the trial's
``effect_size`` contrast is its response. It runs on the first run of the dataset, in this process;
hyperexp's extraction runs over every run of one subject in a subprocess, so that its peak resident
memory (``ru_maxrss``: interpreter, imports and data included) is its own. Printed: seconds per run
and per 1000 trials for both, their ratio, the largest difference of the betas on the shared run,
and hyperexp's peak memory against the 2 GB target (and that of a subprocess that only imports).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MEMORY_TARGET_BYTES = 2 * 10**9


def plain_lss_betas(bold_image, mask_image, trials, others, t_r: float, settings, confounds=None) -> np.ndarray:
    """(trials, voxels): one nilearn FirstLevelModel per trial, the standard LSS recipe."""
    import pandas as pd
    from nilearn.glm.first_level import FirstLevelModel
    from nilearn.maskers import NiftiMasker

    masker = NiftiMasker(mask_img=mask_image).fit()
    nuisance = others[["onset", "duration"]].assign(trial_type="other_" + others["trial_type"].astype(str))
    betas = []
    for k in range(len(trials)):
        kinds = np.where(np.arange(len(trials)) == k, "trial", "others")
        events = pd.concat([trials[["onset", "duration"]].assign(trial_type=kinds), nuisance], ignore_index=True)
        model = FirstLevelModel(
            t_r=t_r,
            hrf_model=settings.hrf_model,
            drift_model=None if settings.drift_model == "none" else settings.drift_model,
            high_pass=settings.high_pass,
            drift_order=settings.drift_order,
            noise_model="ols",
            mask_img=masker,
            signal_scaling=0 if settings.signal_scaling else False,
            minimize_memory=True,
        )
        model.fit(bold_image, events=events, confounds=None if confounds is None else pd.DataFrame(confounds))
        betas.append(np.ravel(masker.transform(model.compute_contrast("trial", output_type="effect_size"))))
    return np.stack(betas)


def extract_in_subprocess(root: Path, test_run: int, cache: Path) -> dict:
    """hyperexp's extraction of subject 1, with its own peak memory."""
    code = f"""
import json, resource, time
from hyperexp.data.bids_source import BidsSource
source = BidsSource(root={str(root)!r}, test_runs=[{test_run}], cache_dir={str(cache)!r})
plan = source.plan(1)
started = time.perf_counter()
arrays = source.extract(plan)
print(json.dumps(dict(seconds=time.perf_counter() - started, runs=len(plan.runs), trials=sum(map(len, plan.trials)),
    scans=[s for s, _ in plan.scans], voxels=plan.n_voxels, peak=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def imports_only_peak() -> int:
    code = (
        "import resource, hyperexp.data.bids_source; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)"
    )
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main(argv: list[str] | None = None) -> None:
    from hyperexp.data.bids import masked_bold
    from hyperexp.data.bids_source import BidsSource
    from hyperexp.data.glm import single_trial_betas
    from hyperexp.data.simulate_bids import BidsSimulation, write_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4, help="runs per subject (the last one is the test run)")
    parser.add_argument("--volumes", type=int, default=300, help="volumes per run, about")
    parser.add_argument("--mask-voxels", type=int, default=4096)
    args = parser.parse_args(argv)
    t_r, interval = 2.0, 10.0
    trials = int((args.volumes * t_r - 28.0) / interval)  # onsets start at 8 s, 20 s after the last
    sim = BidsSimulation(
        n_subjects=1,
        train_runs=args.runs - 1,
        trials_per_run=trials,
        test_stimuli=trials // 3,
        test_repeats=3,
        grid=int(np.ceil(args.mask_voxels ** (1 / 3))) + 2,
        mask_voxels=args.mask_voxels,
        t_r=t_r,
        trial_interval=interval,
    )
    with tempfile.TemporaryDirectory() as folder:
        root = write_dataset(Path(folder) / "bids", sim)
        ours = extract_in_subprocess(root, args.runs, Path(folder) / "cache")
        baseline_peak = imports_only_peak()

        source = BidsSource(root=root, test_runs=[args.runs], cache_dir=Path(folder) / "cache")
        plan = source.plan(1)
        run, (_, run_t_r), run_trials, run_others = plan.runs[0], plan.scans[0], plan.trials[0], plan.others[0]
        started = time.perf_counter()
        fast = single_trial_betas(masked_bold(run, plan.mask), run_t_r, run_trials, run_others, source.glm)
        fast_seconds = time.perf_counter() - started
        import nibabel as nib

        started = time.perf_counter()
        plain = plain_lss_betas(nib.load(run.bold), plan.mask, run_trials, run_others, run_t_r, source.glm)
        plain_seconds = time.perf_counter() - started

    per_run = ours["seconds"] / ours["runs"]
    per_1000 = 1000 * ours["seconds"] / ours["trials"]
    fast_per_1000, plain_per_1000 = (1000 * seconds / len(run_trials) for seconds in (fast_seconds, plain_seconds))
    difference = float(np.max(np.abs(fast - plain)) / np.max(np.abs(plain)))
    print(f"dataset: {ours['runs']} runs x {ours['scans']} volumes x {ours['voxels']} voxels, {ours['trials']} trials")
    print(
        f"hyperexp, one subject (read, mask, LSS; subprocess): {per_run:.2f} s per run, {per_1000:.2f} s per 1000 trials"
    )
    print(f"run 1 ({len(run_trials)} trials), read + mask + LSS:")
    print(f"  hyperexp (batched LSS):                  {fast_seconds:8.3f} s, {fast_per_1000:8.2f} s per 1000 trials")
    print(f"  nilearn plain (a FirstLevelModel/trial): {plain_seconds:8.3f} s, {plain_per_1000:8.2f} s per 1000 trials")
    print(f"  ratio plain / hyperexp: {plain_seconds / fast_seconds:.0f}x")
    print(f"largest difference of the betas on run 1, relative to the largest beta: {difference:.1e}")
    verdict = "under" if ours["peak"] < MEMORY_TARGET_BYTES else "OVER"
    print(
        f"peak memory of the extraction: {ours['peak'] / 2**20:.0f} MiB ({verdict} the 2 GB target; "
        f"a process that only imports it: {baseline_peak / 2**20:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
