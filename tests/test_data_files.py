import os
import pickle

import numpy as np
import pytest

from hyperexp.data import load_subjects
from hyperexp.data.convert import main as convert_main
from hyperexp.data.files import DataFileError, SubjectData, load_subject, save_subject_dat


def arrays(dtype=np.float32, n_train=6, n_test=3, voxels=5, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((n_train, voxels)).astype(dtype),
        rng.standard_normal((n_train, dim)).astype(dtype),
        rng.standard_normal((n_test, voxels)).astype(dtype),
        rng.standard_normal((n_test, dim)).astype(dtype),
    )


def write_pickle(path, content, protocol=4):
    path.write_bytes(pickle.dumps(content, protocol=protocol))
    return path


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("as_lists", [True, False])
@pytest.mark.parametrize("protocol", [2, 4])
def test_reads_lists_and_arrays_in_both_float_widths(tmp_path, dtype, as_lists, protocol):
    parts = arrays(dtype)
    content = tuple(list(a) for a in parts) if as_lists else parts
    subject = load_subject(write_pickle(tmp_path / "data_1.dat", content, protocol))
    for loaded, original in zip((subject.x_train, subject.t_train, subject.x_test, subject.t_test), parts):
        assert loaded.dtype == dtype
        np.testing.assert_array_equal(loaded, original)


def test_npz_round_trip_and_converter(tmp_path, capsys):
    source = tmp_path / "data_1.dat"
    save_subject_dat(source, SubjectData(*arrays()))
    assert convert_main([str(source)]) == 0
    assert "6 training and 3 test trials" in capsys.readouterr().out
    from_npz, from_dat = load_subject(tmp_path / "data_1.npz"), load_subject(source)
    np.testing.assert_array_equal(from_npz.x_train, from_dat.x_train)
    np.testing.assert_array_equal(from_npz.t_test, from_dat.t_test)


class RunsACommand:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_pickle_that_would_run_a_command_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_pickle(tmp_path / "data_1.dat", (RunsACommand(), [], [], []))
    with pytest.raises(DataFileError, match=r"data_1.dat: refused to unpickle global '(posix|os)\.system'"):
        load_subject(path)
    assert not (tmp_path / "pwned").exists()


BAD_CASES = {
    "wrong tuple length": (lambda p: p[:3], "expected a tuple"),
    "ragged trials": (lambda p: ([p[0][0], p[0][1][:4]] + list(p[0][2:]), *p[1:]), "ragged"),
    "nan": (lambda p: (np.where(np.arange(5) == 2, np.nan, p[0]), *p[1:]), "non-finite"),
    "inf in latents": (lambda p: (p[0], p[1] * np.inf, *p[2:]), "t_train has .* non-finite"),
    "trial count mismatch": (lambda p: (p[0][:5], *p[1:]), "5 training responses but 6 training latents"),
    "train/test voxels": (lambda p: (p[0], p[1], p[2][:, :4], p[3]), "5 voxels, test trials 4"),
    "latent dims": (lambda p: (p[0], p[1], p[2], p[3][:, :3]), "4-d, test latents 3-d"),
    "not arrays": (lambda p: ("text", *p[1:]), "x_train is a str"),
    "3-d array": (lambda p: (p[0][None], *p[1:]), r"shape \(1, 6, 5\)"),
}


@pytest.mark.parametrize("case", BAD_CASES)
def test_malformed_files_give_one_clear_line_naming_the_file(tmp_path, case):
    change, message = BAD_CASES[case]
    path = write_pickle(tmp_path / "data_7.dat", tuple(change(list(arrays()))))
    with pytest.raises(DataFileError, match=message) as error:
        load_subject(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def test_missing_truncated_and_wrong_latent_size(tmp_path):
    with pytest.raises(DataFileError, match="no such data file"):
        load_subject(tmp_path / "data_1.dat")
    good = tmp_path / "data_1.dat"
    save_subject_dat(good, SubjectData(*arrays()))
    truncated = tmp_path / "data_2.dat"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(DataFileError, match="data_2.dat: not a readable data pickle"):
        load_subject(truncated)
    with pytest.raises(DataFileError, match="latents are 4-d, the generator expects 512-d"):
        load_subject(good, latent_dim=512)
    broken_npz = tmp_path / "data_3.npz"
    broken_npz.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DataFileError, match="data_3.npz: not a readable .npz"):
        load_subject(broken_npz)


def test_load_subjects_from_a_separate_folder(tmp_path):
    for k in (1, 2):
        save_subject_dat(tmp_path / f"data_{k}.dat", SubjectData(*arrays(seed=k)))
    subjects, paths = load_subjects([2, 1], source="files", root=str(tmp_path))
    assert [p.name for p in paths] == ["data_2.dat", "data_1.dat"]
    np.testing.assert_array_equal(subjects[0].x_train, arrays(seed=2)[0])
    with pytest.raises(DataFileError, match="data folder does not exist"):
        load_subjects([1], source="files", root=str(tmp_path / "nowhere"))
    with pytest.raises(DataFileError, match="data_3.dat: no such data file"):
        load_subjects([3], source="files", root=str(tmp_path))
