"""``data.source=bids``: subjects' single-trial responses from a BIDS dataset, by GLM, cached.

Per subject: plan (find the runs, read the events, stimuli and headers, check them: no data
read), then per run mask the BOLD and fit the single-trial GLM (:mod:`hyperexp.data.glm`).
Training trials become rows ordered by stimulus (the stimuli file's order, repeats by time), so
that subjects who saw the same stimuli in other orders line up row by row; a test stimulus's
repeats are averaged into one row, as in the published data. The result is cached under
``cache_dir/bids`` by the input files' paths, sizes and modification times and the settings.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from tqdm import tqdm

from hyperexp.data.bids import (
    Run,
    Stimuli,
    check_bold,
    file_stamp,
    find_runs,
    masked_bold,
    read_confounds,
    read_events,
    read_stimuli,
    subject_label,
    subject_mask,
)
from hyperexp.data.cache import cached_arrays, content_key
from hyperexp.data.files import SubjectData
from hyperexp.data.glm import GlmSettings, single_trial_betas
from hyperexp.data.limits import DataFileError
from hyperexp.errors import InputError

CACHE_VERSION = 1  # bump when the extraction changes what it computes


@dataclass(frozen=True)
class SubjectPlan:
    """What one subject's extraction reads and gives, known before any data are read."""

    label: str
    folder: Path
    runs: list[Run]
    mask: nib.Nifti1Image
    scans: list[tuple[int, float]]  # per run: (scans, repetition time)
    trials: list[pd.DataFrame]  # per run: the rows naming a stimulus, with their stimulus row
    others: list[pd.DataFrame]  # per run: other events (modelled as nuisance)
    train_order: np.ndarray  # stimulus rows of the training trials, in the order they become rows
    test_order: np.ndarray  # distinct test stimulus rows, sorted
    key: str  # the cache key

    @property
    def n_voxels(self) -> int:
        return int(np.asarray(self.mask.dataobj).sum())


class BidsSource:
    """Single-trial responses of BIDS subjects (``data.source=bids``); the settings are ``data.*``."""

    def __init__(
        self,
        root: str | None = None,
        task: str | None = None,
        mask: str | None = None,
        mask_labels=(),
        stimuli: str | None = None,
        stimulus_column: str = "stimulus",
        test_runs=(),
        glm: GlmSettings | dict | None = None,
        cache_dir: str | Path = "data",
        **unused,
    ):
        if root is None:
            raise InputError("data.root: data.source=bids needs data.root=/path/to/bids_dataset")
        if not test_runs:
            raise InputError("data.test_runs: data.source=bids needs the test runs' numbers, e.g. data.test_runs=[4]")
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataFileError(f"{self.root}: BIDS dataset folder does not exist")
        self.task, self.mask, self.stimulus_column = task, mask, stimulus_column
        self.mask_labels = [int(k) for k in mask_labels]
        self.test_runs = [int(k) for k in test_runs]
        self.stimuli_file = stimuli
        self.glm = GlmSettings(**glm) if isinstance(glm, dict) else glm or GlmSettings()
        self.cache_folder = Path(cache_dir) / "bids"

    @functools.cached_property
    def stimuli(self) -> Stimuli:
        return read_stimuli(self.root, self.stimuli_file)

    def plan(self, number: int) -> SubjectPlan:
        label = subject_label(self.root, number)
        runs = find_runs(self.root, label, self.task, self.test_runs)
        mask, mask_path = subject_mask(self.root, label, self.mask, self.mask_labels)
        scans, trials, others = [], [], []
        for run in runs:
            n_scans, t_r = check_bold(run, mask, mask_path)
            t_r = self.glm.t_r or t_r
            run_trials, run_others = read_events(run.events, self.stimulus_column, n_scans, t_r)
            run_trials["stimulus_row"] = self.stimuli.rows(run_trials[self.stimulus_column], run.events)
            read_confounds(run, self.glm.confounds, n_scans)  # checked now; read again by the GLM
            scans.append((n_scans, t_r))
            trials.append(run_trials)
            others.append(run_others)
        train = np.concatenate([t["stimulus_row"].to_numpy() for t, r in zip(trials, runs) if not r.is_test])
        test = np.concatenate([t["stimulus_row"].to_numpy() for t, r in zip(trials, runs) if r.is_test])
        stamps = [file_stamp(p) for run in runs for p in (run.bold, run.events, run.confounds, run.sidecar)]
        settings = dict(
            glm=dataclasses.asdict(self.glm),
            column=self.stimulus_column,
            test_runs=self.test_runs,
            mask_labels=self.mask_labels,
            version=CACHE_VERSION,
        )
        key = content_key(
            [], files=stamps, mask=file_stamp(mask_path), stimuli=file_stamp(self.stimuli.path), **settings
        )
        return SubjectPlan(
            label,
            self.root / f"sub-{label}",
            runs,
            mask,
            scans,
            trials,
            others,
            np.sort(train, kind="stable"),
            np.unique(test),
            key,
        )

    def cached(self, plan: SubjectPlan) -> bool:
        return (self.cache_folder / f"{plan.key}.npz").is_file()

    def shape(self, numbers: list[int]) -> tuple[int, int, int]:
        """(training trials, test stimuli, latent size), checking every file (the BOLD values too,
        unless this extraction is cached) and that the subjects saw the same stimuli."""
        plans = [self.plan(k) for k in numbers]
        check_same_stimuli(plans)
        for plan in plans:
            if not self.cached(plan):
                for run in plan.runs:
                    masked_bold(run, plan.mask)
        return len(plans[0].train_order), len(plans[0].test_order), self.stimuli.latents.shape[1]

    def load(self, numbers: list[int]) -> tuple[list[SubjectData], list[Path], dict[str, str]]:
        """Each subject's trials (from the cache, or by GLM), their folders, and tags for the run."""
        plans = [self.plan(k) for k in numbers]
        check_same_stimuli(plans)
        subjects, seconds, computed = [], 0.0, []
        for plan in plans:
            arrays = cached_arrays(
                self.cache_folder, plan.key, lambda plan=plan: computed.append(1) or self.extract(plan)
            )
            seconds += float(arrays["glm_seconds"])
            latents = self.stimuli.latents
            subjects.append(
                SubjectData(arrays["x_train"], latents[plan.train_order], arrays["x_test"], latents[plan.test_order])
            )
        tags = {
            "data_source": "bids",
            "glm_method": self.glm.method,
            "glm_seconds": f"{seconds:.2f}",  # the extraction's own time, also when it came from the cache
            "glm_cached": str(len(computed) < len(plans)).lower(),
        }
        return subjects, [plan.folder for plan in plans], tags

    def extract(self, plan: SubjectPlan) -> dict[str, np.ndarray]:
        """The GLM over the subject's runs: x_train (rows in ``train_order``), x_test (repeats averaged)."""
        started = time.perf_counter()
        betas, rows, is_test = [], [], []
        progress = tqdm(
            list(zip(plan.runs, plan.scans, plan.trials, plan.others)), desc=f"GLM sub-{plan.label}", unit="run"
        )
        for run, (n_scans, t_r), trials, others in progress:
            progress.set_postfix_str(run.name)
            bold = masked_bold(run, plan.mask)
            confounds = read_confounds(run, self.glm.confounds, n_scans)
            betas.append(single_trial_betas(bold, t_r, trials, others, self.glm, confounds))
            rows.append(trials["stimulus_row"].to_numpy())
            is_test.append(np.full(len(trials), run.is_test))
        betas, rows, is_test = np.concatenate(betas), np.concatenate(rows), np.concatenate(is_test)
        train = np.flatnonzero(~is_test)
        train = train[np.argsort(rows[train], kind="stable")]
        x_test = np.stack([betas[is_test & (rows == stimulus)].mean(axis=0) for stimulus in plan.test_order])
        return {
            "x_train": betas[train].astype(np.float32),
            "x_test": x_test.astype(np.float32),
            "glm_seconds": np.array(time.perf_counter() - started),
        }


def check_same_stimuli(plans: list[SubjectPlan]) -> None:
    first = plans[0]
    for plan in plans[1:]:
        for split in ("train", "test"):
            if not np.array_equal(getattr(plan, f"{split}_order"), getattr(first, f"{split}_order")):
                raise DataFileError(
                    f"{plan.folder}: its {split} stimuli differ from {first.folder}'s (subjects must see the same stimuli)"
                )
