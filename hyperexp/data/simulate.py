"""The embedded simulated experiment: published-format files with known ground truth.

Per stimulus a latent z ~ N(0, I) is drawn. All subjects share one latent-to-voxel tuning
(a random linear map), plus, scaled by ``visual_gain``, a tuning to the face's visible
attributes as the default facesketch stimulus model (seed 0) draws them; each subject's cortex holds that response under its own functional
topography (a random orthogonal remix of voxels: a permutation followed by rotations of voxel
pairs, the kind of difference Procrustes hyperalignment undoes), with its own voxel offsets and
gains, plus trial noise. A test trial is the average of ``repeats`` noisy presentations, so test
data are cleaner than training data, as in the published experiment.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psutil
from filelock import FileLock

from hyperexp.atomic import atomic_write
from hyperexp.data.files import SubjectData, save_subject_dat
from hyperexp.data.limits import human_size
from hyperexp.errors import InputError
from hyperexp.generate.facesketch import FaceSketch
from hyperexp.timed import timed


@dataclass  # not frozen: it is also the typed schema of data.simulation, which Hydra merges into
class Simulation:
    n_subjects: int = 2
    n_voxels: int = 4096
    n_train: int = 1050
    n_test: int = 36
    latent_dim: int = 512
    repeats: int = 14
    noise: float = 2.0  # trial noise sd; the latent-driven signal has unit variance per voxel
    visual_gain: float = 0.5  # extra response to what the face looks like (facesketch's attributes)
    seed: int = 0

    def __post_init__(self):
        for name in ("n_subjects", "n_voxels", "n_train", "n_test", "latent_dim", "repeats"):
            if getattr(self, name) < 1:
                raise InputError(f"data.simulation.{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("noise", "visual_gain"):
            if not getattr(self, name) >= 0:
                raise InputError(f"data.simulation.{name}: must be >= 0, got {getattr(self, name)}")
        available = psutil.virtual_memory().available
        if self.planned_bytes() > available:
            raise InputError(
                f"data.simulation: {self.n_subjects} subjects x {self.n_train + self.n_test} trials x "
                f"{self.n_voxels} voxels would take about {human_size(self.planned_bytes())} of memory to "
                f"simulate, more than the {human_size(available)} available"
            )

    def planned_bytes(self) -> int:
        """About what :func:`simulate_experiment` holds at once: its float64 work arrays (tuning,
        signals, a subject's noise) and every subject's float32 trials; also about the files' size."""
        trials = self.n_train + self.n_test
        work = 8 * self.n_voxels * (self.latent_dim + 4 * trials + self.repeats * self.n_test)
        return work + self.file_bytes()

    def file_bytes(self) -> int:
        """The simulated files' size: every subject's float32 trials."""
        return 4 * self.n_subjects * (self.n_train + self.n_test) * (self.n_voxels + self.latent_dim)

    def key(self) -> str:
        """A short content key: the same parameters give the same files."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def _topography(rng: np.random.Generator, n_voxels: int):
    """A random orthogonal voxel remix: permutation, then a rotation of each voxel pair."""
    permutation = rng.permutation(n_voxels)
    angles = rng.uniform(0, 2 * np.pi, n_voxels // 2)

    def remix(responses: np.ndarray) -> np.ndarray:
        out = responses[:, permutation].copy()
        even, odd = out[:, 0 : 2 * len(angles) : 2], out[:, 1 : 2 * len(angles) : 2]
        cos, sin = np.cos(angles), np.sin(angles)
        out[:, 0 : 2 * len(angles) : 2], out[:, 1 : 2 * len(angles) : 2] = (
            cos * even - sin * odd,
            sin * even + cos * odd,
        )
        return out

    return remix


def simulate_experiment(simulation: Simulation | None = None, **overrides) -> list[SubjectData]:
    """All subjects of a simulated experiment (float32 arrays, trials x features)."""
    sim = simulation or Simulation(**overrides)
    rng = np.random.default_rng(sim.seed)
    t_train = rng.standard_normal((sim.n_train, sim.latent_dim))
    t_test = rng.standard_normal((sim.n_test, sim.latent_dim))
    tuning = rng.standard_normal((sim.latent_dim, sim.n_voxels)) / np.sqrt(sim.latent_dim)
    signal_train, signal_test = t_train @ tuning, t_test @ tuning
    if sim.visual_gain > 0:
        # Cortex responds to what the face looks like: the stimulus model's visible attributes
        # (most latent directions change nothing visible) drive voxels through a tuning of their own.
        attributes = FaceSketch(latent_dim=sim.latent_dim).projection.double().numpy()
        visual_tuning = rng.standard_normal((attributes.shape[1], sim.n_voxels)) / np.sqrt(attributes.shape[1])
        signal_train += sim.visual_gain * (t_train @ attributes) @ visual_tuning
        signal_test += sim.visual_gain * (t_test @ attributes) @ visual_tuning

    subjects = []
    for _ in range(sim.n_subjects):
        remix = _topography(rng, sim.n_voxels)
        offset = rng.normal(0.0, 1.0, sim.n_voxels)
        gain = np.exp(rng.normal(0.0, 0.2, sim.n_voxels))
        x_train = gain * (remix(signal_train) + sim.noise * rng.standard_normal(signal_train.shape)) + offset
        repeat_noise = rng.standard_normal((sim.repeats, *signal_test.shape)).mean(axis=0)
        x_test = gain * (remix(signal_test) + sim.noise * repeat_noise) + offset
        subjects.append(
            SubjectData(
                x_train=x_train.astype(np.float32),
                t_train=t_train.astype(np.float32),
                x_test=x_test.astype(np.float32),
                t_test=t_test.astype(np.float32),
            )
        )
    return subjects


def ensure_simulated_files(simulation: Simulation, cache_dir: str | Path) -> Path:
    """Write ``data_1.dat ... data_n.dat`` once per parameter set; returns their folder.

    A file lock makes parallel jobs of a sweep wait for one writer instead of racing.
    """
    folder = Path(cache_dir) / f"simulated-{simulation.key()}"
    expected = [folder / f"data_{k}.dat" for k in range(1, simulation.n_subjects + 1)]
    if all(path.is_file() for path in expected):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not all(path.is_file() for path in expected):
            with timed(f"simulating {simulation.n_subjects} subjects into {folder}"):
                for path, subject in zip(expected, simulate_experiment(simulation)):
                    save_subject_dat(path, subject)
            atomic_write(folder / "simulation.json", json.dumps(asdict(simulation), indent=2).encode())
    return folder
