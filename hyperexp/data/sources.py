"""Where subjects' trials come from (``data.source``): a registered name, or a plug-in's class path.

A source is built from the ``data.*`` settings (each takes the ones it needs) and answers two
questions: :meth:`shape` (training trials, test trials, latent size; checked without writing
anything, before any run starts) and :meth:`load` (the subjects' trials, the paths they came from,
and tags for the run). ``data.source=simulated|files|bids`` names one of :data:`SOURCES`;
``data.source=my_package.MySource`` (a dotted path, as Hydra's ``_target_``) plugs in another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from hydra.utils import get_class

from hyperexp.data.files import DEFAULT_MAX_BYTES, SubjectData, load_subject, subject_file
from hyperexp.data.limits import DataFileError
from hyperexp.data.simulate import Simulation, ensure_simulated_files
from hyperexp.data.variants import check_same_stimuli
from hyperexp.errors import InputError


class Source(Protocol):
    def shape(self, numbers: list[int]) -> tuple[int, int, int]: ...

    def load(self, numbers: list[int]) -> tuple[list[SubjectData], list[Path], dict[str, str]]: ...


class FilesSource:
    """``data_k.dat`` / ``data_k.npz`` per subject in ``data.root`` (``data.source=files``)."""

    def __init__(self, root: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES, **unused):
        if root is None:
            raise InputError("data.root: data.source=files needs data.root=/folder/with/data_k.dat")
        self.folder, self.max_bytes = Path(root), max_bytes
        if not self.folder.is_dir():
            raise DataFileError(f"{self.folder}: data folder does not exist")

    def load(self, numbers: list[int]) -> tuple[list[SubjectData], list[Path], dict[str, str]]:
        paths = [subject_file(self.folder, k) for k in numbers]
        return [load_subject(path, max_bytes=self.max_bytes) for path in paths], paths, {}

    def shape(self, numbers: list[int]) -> tuple[int, int, int]:
        """Read the files (``load`` reads them again) and check that the subjects saw the same stimuli."""
        subjects, paths, _ = self.load(numbers)
        check_same_stimuli(subjects, [str(path) for path in paths])
        return len(subjects[0].x_train), len(subjects[0].x_test), subjects[0].latent_dim


class SimulatedSource(FilesSource):
    """The embedded simulated experiment (``data.source=simulated``), written once into ``cache_dir``."""

    def __init__(
        self,
        simulation: Simulation | dict | None = None,
        cache_dir: str | Path = "data",
        max_bytes: int = DEFAULT_MAX_BYTES,
        **unused,
    ):
        self.simulation = Simulation(**simulation) if isinstance(simulation, dict) else simulation or Simulation()
        self.cache_dir, self.max_bytes = cache_dir, max_bytes

    def check_pool(self, numbers: list[int]) -> None:
        if max(numbers) > self.simulation.n_subjects:
            raise InputError(
                f"data.subjects: subject {max(numbers)} is not in the simulated experiment of "
                f"{self.simulation.n_subjects} subjects (simulate more with data.simulation.n_subjects={max(numbers)})"
            )

    def shape(self, numbers: list[int]) -> tuple[int, int, int]:
        """From the settings alone: nothing is simulated yet."""
        self.check_pool(numbers)
        return self.simulation.n_train, self.simulation.n_test, self.simulation.latent_dim

    def load(self, numbers: list[int]) -> tuple[list[SubjectData], list[Path], dict[str, str]]:
        self.check_pool(numbers)
        self.folder = ensure_simulated_files(self.simulation, self.cache_dir)
        return super().load(numbers)


# Names for class paths; the BIDS source's module (nilearn, nibabel) is imported only when chosen.
SOURCES = {
    "simulated": "hyperexp.data.sources.SimulatedSource",
    "files": "hyperexp.data.sources.FilesSource",
    "bids": "hyperexp.data.bids_source.BidsSource",
}


def check_source_name(source: str) -> None:
    """A registered name or a dotted class path (checked when the source is built)."""
    if source not in SOURCES and "." not in source:
        raise InputError(f"data.source: must be one of {', '.join(SOURCES)} or a class path, got {source!r}")


def open_source(source: str, **settings) -> Source:
    """The source named by ``data.source``, built from the ``data.*`` settings."""
    check_source_name(source)
    try:
        source_class = get_class(SOURCES.get(source, source))
    except (ImportError, ValueError) as error:
        raise InputError(f"data.source: cannot import {source!r} ({error})") from None
    return source_class(**settings)
