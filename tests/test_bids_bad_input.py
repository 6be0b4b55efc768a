"""Bad BIDS input through the entry point, as the bad-input table's rows are run
(tests/test_bad_input.py): one line ``hyperexp: error: <file or key>: <problem>``, exit 1, before
any MLflow run, and no file written but Hydra's own snapshot. Each row starts from a tiny
simulated BIDS dataset and breaks one thing."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from hyperexp.data.simulate_bids import BidsSimulation, write_dataset
from tests.test_bad_input import HYDRA_SNAPSHOT, files_under, run_entry_point

TINY = BidsSimulation(n_subjects=2, train_runs=1, trials_per_run=6, test_stimuli=2, test_repeats=2, grid=5)
FUNC = "bids/sub-01/func"
RUN_1 = f"{FUNC}/sub-01_task-faces_run-1"
MASK = f"{FUNC}/sub-01_task-faces_desc-brain_mask.nii.gz"


def bids_args(root: Path, *extra: str) -> list[str]:
    return ["data.source=bids", f"data.root={root / 'bids'}", "data.test_runs=[2]", *extra]


def edit_events(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / f"{RUN_1}_events.tsv"
        change(pd.read_csv(path, sep="\t")).to_csv(path, sep="\t", index=False)

    return edit


def replace_image(relative: str, make: Callable[[nib.Nifti1Image], nib.Nifti1Image]) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / relative
        image = nib.load(path)
        nib.save(make(image), path)

    return edit


def nan_volume(image):
    data = np.asarray(image.dataobj).copy()
    data[2, 2, 2, 3] = np.nan  # the centre voxel is in every mask
    return nib.Nifti1Image(data, image.affine, image.header)


def remove(relative: str) -> Callable[[Path], None]:
    return lambda root: (root / relative).unlink()


@dataclass(frozen=True)
class BidsCase:
    name: str
    message: str  # a fragment of the one line; "{root}" is the test's folder
    extra: tuple[str, ...] = ()  # command-line arguments after the dataset's
    edit: Callable[[Path], None] | None = None
    args: Callable[[Path], list[str]] = bids_args


CASES = [
    BidsCase("no data.root", "data.root: data.source=bids needs data.root=", args=lambda r: ["data.source=bids"]),
    BidsCase(
        "no test runs",
        "data.test_runs: data.source=bids needs the test runs' numbers",
        args=lambda r: ["data.source=bids", f"data.root={r / 'bids'}"],
    ),
    BidsCase(
        "missing dataset",
        "{root}/nowhere: BIDS dataset folder does not exist",
        args=lambda r: ["data.source=bids", f"data.root={r}/nowhere", "data.test_runs=[2]"],
    ),
    BidsCase("missing subject", "{root}/bids: no folder for subject 3 (found sub-01, sub-02)", ("data.subjects=[3]",)),
    BidsCase("missing task", "{root}/bids/sub-01: no BOLD runs of task 'rest' (tasks: faces)", ("data.task=rest",)),
    BidsCase(
        "missing test run",
        "{root}/bids/sub-01: data.test_runs names run 9, but task 'faces' has runs [1, 2]",
        ("data.test_runs=[9]",),
    ),
    BidsCase(
        "missing run's events", f"{{root}}/{RUN_1}_events.tsv: no events file for", edit=remove(f"{RUN_1}_events.tsv")
    ),
    BidsCase(
        "events without the stimulus column",
        f"{{root}}/{RUN_1}_events.tsv: no 'stimulus' column (set data.stimulus_column)",
        edit=edit_events(lambda e: e.drop(columns="stimulus")),
    ),
    BidsCase(
        "stimulus not in the stimuli file",
        f"{{root}}/{RUN_1}_events.tsv: stimulus 'nosuch' is not in {{root}}/bids/stimuli.tsv",
        edit=edit_events(lambda e: e.assign(stimulus=["nosuch", *e.stimulus[1:]])),
    ),
    BidsCase(
        "no stimuli file", "data.stimuli: no stimuli.tsv or stimuli.npy in {root}/bids", edit=remove("bids/stimuli.tsv")
    ),
    BidsCase(
        "mask of another shape",
        f"{{root}}/{RUN_1}_bold.nii.gz: its grid (shape (5, 5, 5) and affine) differs from the mask {{root}}/{MASK} (shape (6, 5, 5))",
        edit=replace_image(MASK, lambda m: nib.Nifti1Image(np.ones((6, 5, 5), np.uint8), m.affine)),
    ),
    BidsCase(
        "mask of another affine",
        f"{{root}}/{RUN_1}_bold.nii.gz: its grid (shape (5, 5, 5) and affine) differs from the mask",
        edit=replace_image(MASK, lambda m: nib.Nifti1Image(np.asarray(m.dataobj), np.diag([2.0, 2.0, 2.0, 1.0]))),
    ),
    BidsCase(
        "3-D BOLD file",
        f"{{root}}/{RUN_1}_bold.nii.gz: BOLD must be 4-D (x, y, z, time), got shape (5, 5, 5)",
        edit=replace_image(f"{RUN_1}_bold.nii.gz", lambda b: nib.Nifti1Image(np.asarray(b.dataobj)[..., 0], b.affine)),
    ),
    BidsCase(
        "NaN volume",
        f"{{root}}/{RUN_1}_bold.nii.gz: 1 volumes hold NaN or Inf inside the mask (first: volume 3)",
        edit=replace_image(f"{RUN_1}_bold.nii.gz", nan_volume),
    ),
    BidsCase("unknown GLM method", "data.glm.method: must be one of lss, lsa, got 'lsx'", ("data.glm.method=lsx",)),
]
BY_NAME = {case.name: case for case in CASES}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("pristine") / "bids", TINY)


@pytest.mark.parametrize("name", BY_NAME)
def test_bad_bids_input_is_one_line_naming_the_file_before_any_run(tmp_path, name, pristine, capsys, monkeypatch):
    case = BY_NAME[name]
    shutil.copytree(pristine, tmp_path / "bids")
    if case.edit:
        case.edit(tmp_path)
    args = [*case.args(tmp_path), *case.extra]
    before = files_under(tmp_path)
    code, stderr = run_entry_point(tmp_path, args, capsys, monkeypatch)
    lines = [line for line in stderr.splitlines() if line.startswith("hyperexp:")]
    assert len(lines) == 1 and lines[0].startswith("hyperexp: error: "), stderr[-3000:]
    assert case.message.replace("{root}", str(tmp_path)) in lines[0], lines
    assert code == 1 and "Traceback" not in stderr
    after = files_under(tmp_path)
    assert not {path for path in before if after.get(path) != before[path]}
    assert set(after) - set(before) <= HYDRA_SNAPSHOT, sorted(set(after) - set(before))
