import os
import pickle

import numpy as np
import pytest

from hyperexp.data import load_subjects
from hyperexp.data.convert import main as convert_main
from hyperexp.data.files import DataFileError, SubjectData, load_subject, save_subject_dat
from tests.conftest import run_cli
from tests.test_data_bounds import Reduce


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


def as_numpy1_pickle(data: bytes, protocol: int) -> bytes:
    """The same pickle as NumPy 1.x writes it: _reconstruct under numpy.core, not numpy._core."""
    if protocol == 2:
        return data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert data[2] == 0x95  # drop the single frame (framing is optional) so a string can shrink
    return data[:2] + data[11:].replace(b"\x8c\x16numpy._core.multiarray", b"\x8c\x15numpy.core.multiarray")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("as_lists", [True, False])
@pytest.mark.parametrize("protocol", [2, 4])
def test_reads_pickles_written_by_numpy_1(tmp_path, protocol, as_lists, dtype):
    parts = arrays(dtype)
    data = pickle.dumps(tuple(list(a) for a in parts) if as_lists else parts, protocol=protocol)
    assert b"numpy._core.multiarray" in data  # written by NumPy 2
    path = tmp_path / "data_1.dat"
    path.write_bytes(as_numpy1_pickle(data, protocol))
    assert b"numpy._core" not in path.read_bytes()
    subject = load_subject(path)
    for loaded, original in zip((subject.x_train, subject.t_train, subject.x_test, subject.t_test), parts):
        assert loaded.dtype == dtype
        np.testing.assert_array_equal(loaded, original)


def test_reads_protocol_5_the_default_of_python_3_14(tmp_path):
    parts = arrays(np.float64)
    path = write_pickle(tmp_path / "data_1.dat", parts, protocol=5)
    assert b"_frombuffer" in path.read_bytes()
    subject = load_subject(path)
    np.testing.assert_array_equal(subject.t_test, parts[3])
    assert subject.t_test.dtype == np.float64


def test_a_dtype_whose_pickled_state_claims_objects_is_rebuilt_as_plain_numbers(tmp_path):
    """A BUILD can set a float64 dtype's flags to 'holds objects'; the reader rebuilds it from 'f8'."""
    reconstruct = np.zeros(1).__reduce__()[0]
    doctored = Reduce(np.dtype, ("f8", False, True), (3, "<", None, None, None, -1, -1, 0x3F))
    assert pickle.loads(pickle.dumps(doctored)).hasobject  # what NumPy itself would build
    values = np.arange(30, dtype=np.float64)
    trial = Reduce(reconstruct, (np.ndarray, (0,), b"b"), (1, (6, 5), doctored, False, values.tobytes()))
    parts = list(arrays(np.float64))
    path = write_pickle(tmp_path / "data_1.dat", (trial, *parts[1:]))
    subject = load_subject(path)
    assert subject.x_train.dtype == np.float64 and not subject.x_train.dtype.hasobject
    np.testing.assert_array_equal(subject.x_train, values.reshape(6, 5))


UNSAFE_ARRAYS = {
    "object array": (np.array([1, "two", 3.0], dtype=object), r"refused an array of dtype 'object' \(only numbers"),
    "string array": (np.array(["a", "b"]), r"refused an array of dtype '<U1' \(only numbers"),
}


@pytest.mark.parametrize("case", UNSAFE_ARRAYS)
def test_only_arrays_of_numbers_are_built(tmp_path, case):
    array, message = UNSAFE_ARRAYS[case]
    path = write_pickle(tmp_path / "data_1.dat", (array, *arrays()[1:]))
    with pytest.raises(DataFileError, match=message) as error:
        load_subject(path)
    assert str(error.value).startswith(f"{path}: ")


def test_protocol_2_bytes_may_only_be_latin1(tmp_path):
    """Protocol 2 writes bytes as _codecs.encode(text, 'latin1'); other codecs change the size."""
    data = pickle.dumps(arrays(), protocol=2)
    assert data.count(b"X\x06\x00\x00\x00latin1") == 1  # written once, then taken from the memo
    path = tmp_path / "data_1.dat"
    path.write_bytes(data.replace(b"X\x06\x00\x00\x00latin1", b"X\x06\x00\x00\x00utf_16"))
    with pytest.raises(DataFileError, match=r"data_1.dat: refused _codecs.encode with encoding 'utf_16'"):
        load_subject(path)


@pytest.mark.parametrize("field", [0, 3])
def test_a_split_whose_trials_are_all_identical_is_refused(tmp_path, field):
    parts = list(arrays())
    name, n_trials = ("x_train", 6) if field == 0 else ("t_test", 3)
    parts[field] = [parts[field][0].copy() for _ in range(n_trials)]  # equal values, not one shared array
    with pytest.raises(DataFileError, match=rf"data_1.dat: {name}: all {n_trials} trials are identical$"):
        load_subject(write_pickle(tmp_path / "data_1.dat", tuple(parts)))


def test_one_memoised_array_for_every_trial_is_refused_even_when_small(tmp_path):
    parts = list(arrays())
    parts[0] = [parts[0][0]] * 6  # six references to one array: small enough for the size limit
    with pytest.raises(DataFileError, match="x_train: all 6 trials are identical"):
        load_subject(write_pickle(tmp_path / "data_1.dat", tuple(parts)))


def test_repeated_stimuli_and_a_single_test_trial_are_legitimate(tmp_path):
    x_train, t_train, x_test, t_test = arrays()
    latents = list(t_train[:3])
    repeated = [latents[k] for k in (0, 1, 2, 0, 1, 0)]  # a face shown again: the same latent array
    responses = list(x_train)
    responses[4] = responses[1].copy()  # and two equal responses
    path = write_pickle(tmp_path / "data_1.dat", (responses, repeated, list(x_test[:1]), list(t_test[:1])))
    subject = load_subject(path)
    np.testing.assert_array_equal(subject.t_train[3], subject.t_train[0])
    assert subject.x_test.shape == (1, 5)


def test_trials_must_be_arrays_not_nested_lists(tmp_path):
    parts = list(arrays())
    parts[1] = [list(map(float, trial)) for trial in parts[1]]
    with pytest.raises(DataFileError, match="t_train trial 0 is a list, expected an array"):
        load_subject(write_pickle(tmp_path / "data_1.dat", tuple(parts)))


def test_converter_errors_are_one_line_and_exit_1(tmp_path, capsys):
    bad = write_pickle(tmp_path / "data_1.dat", arrays()[:3])
    assert convert_main([str(bad)]) == 1
    assert capsys.readouterr().err == f"hyperexp: error: {bad}: expected a tuple (X_tr, T_tr, X_te, T_te), got 3\n"
    good = tmp_path / "data_2.dat"
    save_subject_dat(good, SubjectData(*arrays()))
    assert convert_main([str(good), "--max-bytes", "100"]) == 1
    assert capsys.readouterr().err.startswith(f"hyperexp: error: {good}: the file is ")
    assert not (tmp_path / "data_2.npz").exists()
    (tmp_path / "a_file").write_text("not a folder")
    assert convert_main([str(good), str(tmp_path / "a_file" / "data_2.npz")]) == 1
    assert (
        capsys.readouterr().err
        == f"hyperexp: error: {tmp_path / 'a_file' / 'data_2.npz'}: cannot write (File exists)\n"
    )


def test_converter_runs_as_a_module(tmp_path):
    source = tmp_path / "data_1.dat"
    source.write_bytes(b"\x80\x04N" + b"r" + (200_000_000).to_bytes(4, "little") + b".")
    result = run_cli(str(source), cwd=tmp_path, timeout=120, module="hyperexp.data.convert")
    assert result.returncode == 1
    assert result.stderr == f"hyperexp: error: {source}: memo slot 200000000 (byte 3) skips past the 0 written so far\n"
