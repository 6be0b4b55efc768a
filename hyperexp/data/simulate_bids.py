"""A small simulated BIDS dataset with known single-trial responses: ``python -m hyperexp.data.simulate_bids OUT``.

Per stimulus a latent z ~ N(0, I). A shared tuning maps the latent (and, scaled by
``visual_gain``, the face's visible attributes as the default facesketch draws them) to a
common response space; each subject's voxels mix that space by a random map of their own (their
masks differ in size, so voxel counts differ). A trial's true response is the stimulus's voxel
response plus trial-to-trial variability, in percent signal change. BOLD = baseline x (1 +
responses convolved with nilearn's Glover HRF / 100) + slow drift + scan noise, on a small 3-D
grid. Written: per subject and run ``*_bold.nii.gz`` (+ JSON sidecar), ``*_events.tsv`` (a
``stimulus`` column; training stimuli in each subject's own order, the test run repeating a few
stimuli), a brain mask; ``stimuli.tsv`` of latents; and the true responses in the files-source
format, ``derivatives/truth/data_k.npz`` (rows as the BIDS source orders them).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from hyperexp.atomic import atomic_path, atomic_write
from hyperexp.data.files import SubjectData, save_subject_npz
from hyperexp.data.glm import GlmSettings, trial_design
from hyperexp.generate.facesketch import FaceSketch

TASK = "faces"
BASELINE = 1000.0  # scanner units; responses are percent of it


@dataclass(frozen=True)
class BidsSimulation:
    n_subjects: int = 2
    train_runs: int = 3  # runs 1..train_runs; the test run is the last one
    trials_per_run: int = 60  # training trials per run (each a new stimulus)
    test_stimuli: int = 12
    test_repeats: int = 5  # each test stimulus shown this often in the test run
    latent_dim: int = 512
    common_dim: int = 128  # the shared response space each subject's voxels mix
    grid: int = 12  # the volume is grid^3 voxels; masks are balls of different radii
    mask_voxels: int | None = None  # instead: every subject's mask is this many voxels nearest the centre
    t_r: float = 2.0
    trial_interval: float = 10.0  # mean onset-to-onset seconds (uniform +-1 s jitter): a slow event design
    trial_duration: float = 2.0  # seconds a face is shown
    scan_noise: float = 0.15  # sd per scan, percent signal
    trial_noise: float = 0.3  # sd of a trial's variability around its stimulus's response
    drift: float = 1.0  # amplitude of the slow drift, percent signal
    visual_gain: float = 0.5
    seed: int = 0

    @property
    def test_run(self) -> int:
        return self.train_runs + 1


def write_dataset(folder: str | Path, sim: BidsSimulation = BidsSimulation()) -> Path:
    """Write the dataset into ``folder``; returns it."""
    folder = Path(folder)
    rng = np.random.default_rng(sim.seed)
    n_train = sim.train_runs * sim.trials_per_run
    # float32 values, written with 9 digits: stimuli.tsv holds exactly the latents of the truth files
    latents = rng.standard_normal((n_train + sim.test_stimuli, sim.latent_dim)).astype(np.float32).astype(np.float64)
    common = latents @ rng.standard_normal((sim.latent_dim, sim.common_dim)) / np.sqrt(sim.latent_dim)
    if sim.visual_gain > 0:
        attributes = latents @ FaceSketch(latent_dim=sim.latent_dim).projection.double().numpy()
        visual = rng.standard_normal((attributes.shape[1], sim.common_dim)) / np.sqrt(attributes.shape[1])
        common += sim.visual_gain * attributes @ visual
    names = [f"face{k:04d}" for k in range(len(latents))]
    write_table(
        folder / "stimuli.tsv",
        pd.DataFrame(latents, columns=[f"z{d}" for d in range(sim.latent_dim)]).assign(stimulus=names)[
            ["stimulus", *[f"z{d}" for d in range(sim.latent_dim)]]
        ],
    )
    description = {
        "Name": "hyperexp simulated faces",
        "BIDSVersion": "1.8.0",
        "GeneratedBy": [{"Name": "hyperexp.data.simulate_bids", **asdict(sim)}],
    }
    atomic_write(folder / "dataset_description.json", json.dumps(description, indent=2).encode())
    for k in range(1, sim.n_subjects + 1):
        truth = write_subject(folder, k, sim, common, names, rng)
        save_subject_npz(
            folder / "derivatives" / "truth" / f"data_{k}.npz",
            SubjectData(
                truth["x_train"],
                latents[:n_train].astype(np.float32),
                truth["x_test"],
                latents[n_train:].astype(np.float32),
            ),
        )
    return folder


def write_subject(
    folder: Path, k: int, sim: BidsSimulation, common: np.ndarray, names: list[str], rng
) -> dict[str, np.ndarray]:
    """One subject's runs and mask; returns the true responses (train by stimulus, test averaged)."""
    label = f"{k:02d}"
    func = folder / f"sub-{label}" / "func"
    shape = (sim.grid,) * 3
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    centre = (np.array(shape) - 1) / 2
    distance = np.linalg.norm(np.indices(shape).reshape(3, -1).T - centre, axis=1).reshape(shape)
    if sim.mask_voxels is None:
        mask = distance <= sim.grid * (0.38 + 0.04 * (k % 3))  # subjects' masks differ in size
    else:
        mask = np.zeros(shape, dtype=bool)
        mask.flat[np.argsort(distance, axis=None, kind="stable")[: sim.mask_voxels]] = True
    save_image(func / f"sub-{label}_task-{TASK}_desc-brain_mask.nii.gz", mask.astype(np.uint8), affine)
    n_voxels = int(mask.sum())
    voxel_map = rng.standard_normal((sim.common_dim, n_voxels)) / np.sqrt(sim.common_dim)
    stimulus_response = common @ voxel_map + rng.normal(1.0, 0.3, n_voxels)  # plus an evoked mean per voxel
    n_train = sim.train_runs * sim.trials_per_run
    train_order = rng.permutation(n_train)
    x_train, x_test = np.zeros((n_train, n_voxels)), np.zeros((sim.test_stimuli, n_voxels))
    for run in range(1, sim.test_run + 1):
        if run == sim.test_run:
            stimuli = rng.permutation(np.repeat(np.arange(n_train, n_train + sim.test_stimuli), sim.test_repeats))
        else:
            stimuli = train_order[(run - 1) * sim.trials_per_run : run * sim.trials_per_run]
        responses = stimulus_response[stimuli] + sim.trial_noise * rng.standard_normal((len(stimuli), n_voxels))
        if run == sim.test_run:
            for row, stimulus in enumerate(range(n_train, n_train + sim.test_stimuli)):
                x_test[row] = responses[stimuli == stimulus].mean(axis=0)
        else:
            x_train[stimuli] = responses  # rows in stimulus order, as the BIDS source orders them
        write_run(func, label, run, sim, stimuli, responses, mask, affine, names, rng)
    return {"x_train": x_train.astype(np.float32), "x_test": x_test.astype(np.float32)}


def write_run(func: Path, label: str, run: int, sim, stimuli, responses, mask, affine, names, rng) -> None:
    onsets = 8.0 + np.cumsum(rng.uniform(sim.trial_interval - 1, sim.trial_interval + 1, len(stimuli)))
    n_scans = int(np.ceil((onsets[-1] + 20.0) / sim.t_r))
    trials = pd.DataFrame({"onset": onsets.round(3), "duration": sim.trial_duration})
    no_events = pd.DataFrame({"onset": [], "duration": [], "trial_type": []})
    regressors, _ = trial_design(n_scans, sim.t_r, trials, no_events, GlmSettings(drift_model="none"))
    times = np.arange(n_scans) * sim.t_r
    drift = sim.drift * np.sin(2 * np.pi * times / (n_scans * sim.t_r) + rng.uniform(0, 2 * np.pi, (mask.sum(), 1))).T
    percent = regressors @ responses + drift + sim.scan_noise * rng.standard_normal((n_scans, int(mask.sum())))
    volumes = BASELINE * (1 + sim.scan_noise / 100 * rng.standard_normal((*mask.shape, n_scans)))
    volumes[mask] = (BASELINE * (1 + percent / 100)).T
    prefix = f"sub-{label}_task-{TASK}_run-{run}"
    save_image(func / f"{prefix}_bold.nii.gz", volumes.astype(np.float32), affine, t_r=sim.t_r)
    atomic_write(func / f"{prefix}_bold.json", json.dumps({"RepetitionTime": sim.t_r, "TaskName": TASK}).encode())
    events = trials.assign(trial_type="face", stimulus=[names[s] for s in stimuli])
    write_table(func / f"{prefix}_events.tsv", events)


def save_image(path: Path, data: np.ndarray, affine: np.ndarray, t_r: float | None = None) -> None:
    image = nib.Nifti1Image(data, affine)
    if t_r is not None:
        image.header.set_zooms((*image.header.get_zooms()[:3], t_r))
    image.header.set_xyzt_units("mm", "sec")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        nib.save(image, temporary.with_name(temporary.name + ".nii.gz"))
        temporary.with_name(temporary.name + ".nii.gz").replace(temporary)


def write_table(path: Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as temporary:
        table.to_csv(temporary, sep="\t", index=False, na_rep="n/a", float_format="%.9g")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hyperexp.data.simulate_bids", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the dataset's folder (created)")
    parser.add_argument("--subjects", type=int, default=BidsSimulation.n_subjects)
    parser.add_argument("--seed", type=int, default=BidsSimulation.seed)
    args = parser.parse_args(argv)
    write_dataset(args.out, BidsSimulation(n_subjects=args.subjects, seed=args.seed))
    print(
        f"{args.out}: simulated BIDS dataset (task {TASK}, runs 1-{BidsSimulation.train_runs} training, run {BidsSimulation.train_runs + 1} test)"
    )


if __name__ == "__main__":
    main()
