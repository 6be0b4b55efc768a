"""Reading a BIDS dataset for single-trial decoding: find a subject's runs, read and check them.

A subject ``k`` of ``data.subjects`` is the folder ``sub-<label>`` whose label reads as the number k
(``sub-01``, ``sub-1``). Per run of ``data.task``: the 4-D BOLD NIfTI (``*_bold.nii[.gz]``, raw or
preprocessed), its ``*_events.tsv`` (``onset``, ``duration`` and a column naming the stimulus; rows
without a stimulus are other events, modelled by their ``trial_type``), optionally fMRIPrep's
``*_desc-confounds_timeseries.tsv``. The mask is one NIfTI per subject (or an atlas and ROI labels),
on the BOLD grid. Stimulus latents come from ``stimuli.tsv`` (a ``stimulus`` column and one column
per latent dimension) or ``stimuli.npy`` (rows, the events naming row numbers). Every problem is
a :class:`DataFileError` naming the file, found from headers and tables before any GLM runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from nilearn.interfaces.bids import get_bids_files, parse_bids_filename

from hyperexp.data.limits import DataFileError
from hyperexp.errors import InputError

RUN_ENTITIES = ("sub", "ses", "task", "acq", "run")  # what names a run; desc/space vary between derivatives


@dataclass(frozen=True)
class Run:
    """One run's files, and whether its trials are test trials."""

    bold: Path
    events: Path
    confounds: Path | None
    sidecar: Path | None  # the JSON next to the BOLD file (RepetitionTime)
    name: str  # ses-1_run-2: what tqdm shows
    is_test: bool


def subject_label(root: Path, number: int) -> str:
    """The label of the ``sub-*`` folder whose label is the number ``number``."""
    labels = [p.name[4:] for p in root.glob("sub-*") if p.is_dir() and p.name[4:].isdigit()]
    matches = [label for label in labels if int(label) == number]
    if len(matches) != 1:
        found = ", ".join(sorted(f"sub-{label}" for label in labels)) or "none"
        problem = "several folders" if matches else "no folder"
        raise DataFileError(f"{root}: {problem} for subject {number} (found {found})")
    return matches[0]


def dataset_tasks(root: Path, label: str) -> list[str]:
    files = get_bids_files(root, file_tag="bold", file_type="nii*", sub_label=label)
    return sorted({parse_bids_filename(f)["entities"].get("task", "") for f in files} - {""})


def find_runs(root: Path, label: str, task: str | None, test_runs: list[int]) -> list[Run]:
    """The subject's runs of ``task`` (the only task when None), in session and run order."""
    tasks = dataset_tasks(root, label)
    if task is None:
        if len(tasks) != 1:
            raise InputError(f"data.task: {root}/sub-{label} has tasks {', '.join(tasks) or 'none'}; name one")
        task = tasks[0]
    bold_files = get_bids_files(root, file_tag="bold", file_type="nii*", sub_label=label, filters=[("task", task)])
    if not bold_files:
        raise DataFileError(f"{root}/sub-{label}: no BOLD runs of task {task!r} (tasks: {', '.join(tasks) or 'none'})")
    runs = [_run_files(Path(f), test_runs) for f in sorted(bold_files)]
    found = {int(r.name.rpartition("run-")[2]) for r in runs if "run-" in r.name}
    missing = sorted(set(test_runs) - found)
    if missing:
        raise DataFileError(
            f"{root}/sub-{label}: data.test_runs names run {missing[0]}, but task {task!r} has runs {sorted(found)}"
        )
    if all(run.is_test for run in runs) or not any(run.is_test for run in runs):
        raise InputError(
            f"data.test_runs: {list(test_runs)} leaves no {'training' if runs[0].is_test else 'test'} runs for sub-{label}"
        )
    return runs


def _run_files(bold: Path, test_runs: list[int]) -> Run:
    entities = parse_bids_filename(bold)["entities"]
    prefix = "_".join(f"{key}-{entities[key]}" for key in RUN_ENTITIES if key in entities)
    events = bold.parent / f"{prefix}_events.tsv"
    if not events.is_file():
        raise DataFileError(f"{events}: no events file for {bold.name}")
    confounds = bold.parent / f"{prefix}_desc-confounds_timeseries.tsv"
    sidecar = bold.parent / bold.name.replace(".nii.gz", ".json").replace(".nii", ".json")
    run = int(entities["run"]) if entities.get("run", "").isdigit() else None
    name = "_".join(f"{key}-{entities[key]}" for key in ("ses", "run") if key in entities) or "run"
    return Run(
        bold=bold,
        events=events,
        confounds=confounds if confounds.is_file() else None,
        sidecar=sidecar if sidecar.is_file() else None,
        name=name,
        is_test=run in test_runs,
    )


def subject_mask(root: Path, label: str, mask: str | None, mask_labels: list[int]) -> tuple[nib.Nifti1Image, Path]:
    """The subject's mask image (``data.mask``, ``{subject}`` standing for the label; a path relative
    to the dataset root; None: the one ``sub-<label>*_mask.nii*`` in the subject's folders), as a
    boolean image; with ``mask_labels`` the mask file is an atlas and the ROI is those labels."""
    if mask is None:
        candidates = sorted((root / f"sub-{label}").rglob(f"sub-{label}*_mask.nii*"))
        if len(candidates) != 1:
            found = "none" if not candidates else ", ".join(p.name for p in candidates)
            raise InputError(f"data.mask: sub-{label} needs one *_mask.nii[.gz] in {root}/sub-{label} (found {found})")
        path = candidates[0]
    else:
        path = Path(mask.replace("{subject}", label))
        path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise DataFileError(f"{path}: no such mask file")
    image = _load_image(path)
    if image.ndim != 3:
        raise DataFileError(f"{path}: a mask must be 3-D, got shape {image.shape}")
    values = np.asarray(image.dataobj)
    selected = np.isin(values, mask_labels) if mask_labels else values > 0
    if not selected.any():
        what = f"labels {mask_labels}" if mask_labels else "non-zero voxels"
        raise DataFileError(f"{path}: the mask has no {what}")
    return nib.Nifti1Image(selected.astype(np.uint8), image.affine), path


def _load_image(path: Path):
    try:
        return nib.load(path)
    except Exception as error:  # nibabel raises many kinds for a file that is not NIfTI
        raise DataFileError(f"{path}: not a readable NIfTI image ({error})") from None


def check_bold(run: Run, mask: nib.Nifti1Image, mask_path: Path) -> tuple[int, float]:
    """(scans, repetition time) of a run whose BOLD file is 4-D and on the mask's grid (from headers)."""
    image = _load_image(run.bold)
    if image.ndim != 4:
        raise DataFileError(f"{run.bold}: BOLD must be 4-D (x, y, z, time), got shape {image.shape}")
    if image.shape[:3] != mask.shape or not np.allclose(image.affine, mask.affine, atol=1e-3):
        raise DataFileError(
            f"{run.bold}: its grid (shape {image.shape[:3]} and affine) differs from the mask {mask_path} "
            f"(shape {mask.shape}): resample the mask to the BOLD grid"
        )
    return image.shape[3], repetition_time(run, image)


def repetition_time(run: Run, image) -> float:
    if run.sidecar is not None:
        try:
            value = json.loads(run.sidecar.read_text()).get("RepetitionTime")
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DataFileError(f"{run.sidecar}: not readable JSON ({error})") from None
        if value is not None:
            return float(value)
    zooms = image.header.get_zooms()
    unit = image.header.get_xyzt_units()[1]
    t_r = float(zooms[3]) / (1000.0 if unit == "msec" else 1.0)
    if not t_r > 0:
        raise DataFileError(f"{run.bold}: no repetition time in its header or JSON sidecar (set data.glm.t_r)")
    return t_r


def masked_bold(run: Run, mask: nib.Nifti1Image) -> np.ndarray:
    """The run's scans x mask voxels (float32), refusing non-finite values."""
    data = np.asarray(_load_image(run.bold).dataobj, dtype=np.float32)
    rows = data[np.asarray(mask.dataobj, dtype=bool)].T
    bad = ~np.isfinite(rows)
    if bad.any():
        volumes = np.flatnonzero(bad.any(axis=1))
        raise DataFileError(
            f"{run.bold}: {len(volumes)} volumes hold NaN or Inf inside the mask (first: volume {volumes[0]})"
        )
    return rows


@dataclass(frozen=True)
class Stimuli:
    """Latents by stimulus name, and each name's row in the stimuli file (the trials' order)."""

    path: Path
    names: list[str]
    latents: np.ndarray  # (stimuli, latent_dim)

    def rows(self, names, source: Path) -> np.ndarray:
        index = {name: k for k, name in enumerate(self.names)}
        unknown = [name for name in names if name not in index]
        if unknown:
            raise DataFileError(f"{source}: stimulus {unknown[0]!r} is not in {self.path}")
        return np.array([index[name] for name in names], dtype=int)


def read_stimuli(root: Path, stimuli: str | None) -> Stimuli:
    """``data.stimuli`` (relative to the root), else ``stimuli.tsv`` or ``stimuli.npy`` in the root."""
    if stimuli is None:
        found = [root / name for name in ("stimuli.tsv", "stimuli.npy") if (root / name).is_file()]
        if not found:
            raise InputError(f"data.stimuli: no stimuli.tsv or stimuli.npy in {root}; name the latents file")
        path = found[0]
    else:
        path = Path(stimuli) if Path(stimuli).is_absolute() else root / stimuli
    if not path.is_file():
        raise DataFileError(f"{path}: no such stimuli file")
    if path.suffix == ".npy":
        try:
            latents = np.load(path, allow_pickle=False)
        except ValueError as error:
            raise DataFileError(f"{path}: not a NumPy array of numbers ({error})") from None
        names = [str(k) for k in range(len(latents))]
    else:
        table = pd.read_csv(path, sep="\t", dtype={"stimulus": str})
        if "stimulus" not in table.columns:
            raise DataFileError(f"{path}: no 'stimulus' column (columns: stimulus, then one per latent dimension)")
        names = table["stimulus"].tolist()
        latents = table.drop(columns="stimulus").to_numpy()
    if latents.ndim != 2 or not np.issubdtype(latents.dtype, np.number) or latents.shape[1] == 0:
        raise DataFileError(f"{path}: latents must be a (stimuli, latent_dim) table of numbers, got {latents.shape}")
    if not np.isfinite(latents).all():
        raise DataFileError(f"{path}: latents hold NaN or Inf")
    if len(set(names)) != len(names):
        raise DataFileError(f"{path}: a stimulus is listed twice")
    return Stimuli(path, names, latents.astype(np.float32))


def read_events(path: Path, column: str, n_scans: int, t_r: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, other events) of one run: rows naming a stimulus in ``column``, and the rest."""
    try:
        events = pd.read_csv(path, sep="\t", na_values="n/a", dtype={column: str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as error:
        raise DataFileError(f"{path}: not a readable events table ({error})") from None
    for required in ("onset", "duration", column):
        if required not in events.columns:
            hint = " (set data.stimulus_column)" if required == column else ""
            raise DataFileError(f"{path}: no {required!r} column{hint}; columns: {', '.join(events.columns)}")
    timing = events[["onset", "duration"]].apply(pd.to_numeric, errors="coerce")
    if timing.isna().any().any() or (timing["duration"] < 0).any():
        raise DataFileError(f"{path}: onset and duration must be numbers (duration >= 0)")
    if (timing["onset"] >= n_scans * t_r).any():
        raise DataFileError(f"{path}: an onset lies after the run's end ({n_scans} scans x {t_r} s)")
    events[["onset", "duration"]] = timing
    is_trial = events[column].notna()
    if not is_trial.any():
        raise DataFileError(f"{path}: no trials (every {column!r} is n/a)")
    others = events[~is_trial].copy()
    others["trial_type"] = others["trial_type"].fillna("event") if "trial_type" in others else "event"
    return events[is_trial].reset_index(drop=True), others.reset_index(drop=True)


def read_confounds(run: Run, columns: list[str], n_scans: int) -> np.ndarray | None:
    """The run's confound columns (fMRIPrep's file), n/a (the first scans of derivatives) as 0."""
    if not columns:
        return None
    if run.confounds is None:
        raise DataFileError(f"{run.bold}: data.glm.confounds needs its *_desc-confounds_timeseries.tsv")
    table = pd.read_csv(run.confounds, sep="\t", na_values="n/a")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataFileError(f"{run.confounds}: no column {missing[0]!r} (data.glm.confounds)")
    if len(table) != n_scans:
        raise DataFileError(f"{run.confounds}: {len(table)} rows, but the run has {n_scans} scans")
    return table[columns].fillna(0.0).to_numpy(dtype=float)


def file_stamp(path: Path | None) -> list:
    """What identifies a file's content cheaply: its path, size and modification time."""
    if path is None:
        return [None]
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]
