"""A small file cannot make the reader spend much memory or time: each way a pickle or .npz can
declare more than it holds is refused from declared sizes, before NumPy or pickle allocates."""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from numpy.lib import format as npy

from hyperexp.data.files import DataFileError, load_subject
from hyperexp.data.limits import ReadLimit, human_size
from tests.conftest import REPO

RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy.(_)core.multiarray._reconstruct, as this NumPy pickles it
MB = 2**20


class Reduce:
    """Pickles as the given reduce value: a hostile file written without hand-made opcodes."""

    def __init__(self, *reduce_value):
        self.reduce_value = reduce_value

    def __reduce__(self):
        return self.reduce_value


def memoised_references(path):
    """The incident: one array referenced by all 1050 trials, ~100 KB on disk, ~100 MB stacked."""
    row = np.random.default_rng(0).standard_normal(12288)
    latent = np.random.default_rng(1).standard_normal(512).astype(np.float32)
    path.write_bytes(pickle.dumps(([row] * 1050, [latent] * 1050, [row] * 36, [latent] * 36), protocol=4))
    return r"declares 103\.9 MiB of arrays, over the limit of [\d.]+ KiB \(4x the file's [\d.]+ KiB\)"


def reconstruct_without_data(path):
    """NumPy's _reconstruct allocates the shape it is given; no BUILD follows to fill it."""
    huge = Reduce(RECONSTRUCT, (np.ndarray, (1050, 2**20), b"f"))
    path.write_bytes(pickle.dumps((huge, huge, huge, huge), protocol=4))
    return r"declares 4\.1 GiB of arrays, over the limit of \d+ B \(4x the file's"


def state_without_data(path):
    empty = Reduce(RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (2**36,), np.dtype("f4"), False, b""))
    path.write_bytes(pickle.dumps((empty, [], [], []), protocol=4))
    return r"an array of shape \(68719476736,\) and dtype float32 declares 256\.0 GiB but holds 0 B"


def ndarray_called(path):
    path.write_bytes(pickle.dumps((Reduce(np.ndarray, ((1050, 2**20), "f4")), [], [], []), protocol=4))
    return r"refused to call numpy\.ndarray"


def far_memo_slot(path):
    """Nine bytes: store None in memo slot 200,000,000; the unpickler sizes its memo table to fit."""
    path.write_bytes(b"\x80\x04N" + b"r" + struct.pack("<I", 200_000_000) + b".")
    return r"memo slot 200000000 \(byte 3\) skips past the 0 written so far"


def empty_sets(path):
    """One byte per empty set: 250x the file in Python objects."""
    path.write_bytes(b"\x80\x04](" + b"\x8f" * 200_000 + b"e.")
    return r"uses the pickle instruction EMPTY_SET \(byte 4\)"


def nested_shared_lists(path):
    """Forty levels of [level, level]: 2**40 numbers for NumPy to discover in a few hundred bytes."""
    level = [1]
    for _ in range(40):
        level = [level, level]
    path.write_bytes(pickle.dumps((level, level, level, level), protocol=4))
    return r"x_train trial 0 is a list, expected an array"


def small_members(dim=4):
    rng = np.random.default_rng(0)
    return {
        "t_train": rng.standard_normal((6, dim), dtype=np.float32),
        "x_test": rng.standard_normal((3, 5), dtype=np.float32),
        "t_test": rng.standard_normal((3, dim), dtype=np.float32),
    }


def write_npy_member(archive, name, array, header_shape=None):
    """An .npy member; header_shape makes its header declare another shape than the data it holds."""
    with archive.open(f"{name}.npy", "w") as member:
        header = {"descr": "<f4", "fortran_order": False, "shape": header_shape or array.shape}
        npy.write_array_header_1_0(member, header)
        member.write(array.tobytes())


def npz_lying_header(path):
    with zipfile.ZipFile(path, "w") as archive:
        write_npy_member(archive, "x_train", np.zeros((6, 5), np.float32), header_shape=(2**31, 4096))
        for name, array in small_members().items():
            write_npy_member(archive, name, array)
    return r"x_train declares 32\.0 TiB \(shape \(2147483648, 4096\), float32\) but holds 248 B"


def npz_deflate_bomb(path):
    """64 MiB of zeros that deflate to 65 KB: honest headers, but more than the file holds."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x_train.npy", "w", force_zip64=True) as member:
            npy.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": (16384, 1024)})
            for _ in range(64):
                member.write(bytes(MB))
        for name, array in small_members().items():
            write_npy_member(archive, name, array)
    return r"declares 64\.0 MiB of arrays, over the limit of [\d.]+ KiB \(4x the file's"


HOSTILE = {
    "memoised_references.dat": memoised_references,
    "reconstruct_without_data.dat": reconstruct_without_data,
    "state_without_data.dat": state_without_data,
    "ndarray_called.dat": ndarray_called,
    "far_memo_slot.dat": far_memo_slot,
    "empty_sets.dat": empty_sets,
    "nested_shared_lists.dat": nested_shared_lists,
    "lying_header.npz": npz_lying_header,
    "deflate_bomb.npz": npz_deflate_bomb,
}

# Loads each file in a fresh interpreter: time, tracemalloc's peak (which also sees memory that is
# allocated but never touched) and the growth of the process's peak RSS since the imports.
MEASURE = """
import json, resource, sys, time, tracemalloc
from hyperexp.data.files import DataFileError, load_subject
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
baseline = rss()
tracemalloc.start()
results = []
for path in sys.argv[1:]:
    tracemalloc.reset_peak()
    start = time.perf_counter()
    try:
        load_subject(path)
        message = None
    except DataFileError as error:
        message = str(error)
    seconds = time.perf_counter() - start
    results.append(dict(path=path, seconds=seconds, peak=tracemalloc.get_traced_memory()[1],
                        rss_growth=rss() - baseline, message=message))
print(json.dumps(results))
"""


def measure(paths, script: str = MEASURE) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", script, *map(str, paths)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def published_size_file(path):
    """An honest file of the published size (1050 + 36 trials, 4096 voxels, 512-d latents)."""
    rng = np.random.default_rng(0)
    parts = [
        rng.standard_normal(shape, dtype=np.float32) for shape in ((1050, 4096), (1050, 512), (36, 4096), (36, 512))
    ]
    path.write_bytes(pickle.dumps(tuple(list(part) for part in parts), protocol=4))


def test_hostile_files_are_refused_in_under_a_second_and_100_mb(tmp_path):
    expected = {tmp_path / name: write(tmp_path / name) for name, write in HOSTILE.items()}
    honest = tmp_path / "data_1.dat"
    published_size_file(honest)
    results = measure([*expected, honest])  # the honest file last: its load raises the peak RSS
    for result, (path, message) in zip(results, expected.items()):
        assert path.stat().st_size < 300_000
        assert result["message"] is not None, f"{path.name} was accepted"
        assert result["message"].startswith(f"{path}: ") and "\n" not in result["message"]
        assert re.search(message, result["message"]), result["message"]
        assert result["seconds"] < 1.0, result
        assert result["peak"] < 100 * MB, result
        assert result["rss_growth"] < 100 * MB, result
    assert results[-1]["message"] is None, results[-1]["message"]


def test_max_bytes_caps_the_file_and_what_unpickling_builds(tmp_path):
    path = tmp_path / "data_1.dat"
    rng = np.random.default_rng(0)
    path.write_bytes(pickle.dumps(tuple(list(rng.standard_normal((40, 64))) for _ in range(4)), protocol=4))
    size = path.stat().st_size
    assert len(load_subject(path).x_train) == 40
    with pytest.raises(DataFileError, match=rf"data_1.dat: the file is {human_size(size)}, over the limit of 1\.0 KiB"):
        load_subject(path, max_bytes=1024)
    with pytest.raises(
        DataFileError, match=r"unpickling would take about [\d.]+ KiB, over the limit of .* \(max_bytes\)"
    ):
        load_subject(path, max_bytes=size + 1)
    with pytest.raises(ValueError, match="max_bytes must be a positive number of bytes, got 0"):
        load_subject(path, max_bytes=0)


def test_the_limit_is_the_smaller_of_max_bytes_and_four_times_the_file(tmp_path):
    limit = ReadLimit(tmp_path / "data_1.npz", file_bytes=10 * MB, max_bytes=8 * MB)
    limit.check_arrays(8 * MB)
    with pytest.raises(DataFileError, match=r"declares 8\.0 MiB of arrays, over the limit of 8\.0 MiB \(max_bytes\)"):
        limit.check_arrays(8 * MB + 1)
    small = ReadLimit(tmp_path / "data_1.npz", file_bytes=1000, max_bytes=8 * MB)
    small.check_arrays(4000)
    with pytest.raises(DataFileError, match=r"over the limit of 3\.9 KiB \(4x the file's 1000 B\)"):
        small.check_arrays(4001)


def test_a_compressed_npz_counts_what_it_inflates_to(tmp_path):
    path = tmp_path / "data_1.npz"
    rng = np.random.default_rng(0)
    small_integers = rng.integers(0, 16, (128, 256)).astype(np.float32)  # deflates to about a third
    np.savez_compressed(
        path,
        x_train=small_integers,
        t_train=rng.standard_normal((128, 8)),
        x_test=small_integers[:4],
        t_test=rng.standard_normal((4, 8)),
    )
    assert load_subject(path).x_train.shape == (128, 256)
    inflated = sum(info.file_size for info in zipfile.ZipFile(path).infolist())
    file_size = path.stat().st_size
    assert file_size < inflated // 2 and inflated < 4 * file_size
    max_bytes = (file_size + inflated) // 2
    with pytest.raises(
        DataFileError,
        match=rf"declares {human_size(inflated)} of arrays, over the limit of {human_size(max_bytes)} \(max_bytes\)",
    ):
        load_subject(path, max_bytes=max_bytes)


def test_human_sizes():
    assert [human_size(n) for n in (0, 1023, 1536, 5 * MB, 3 * 2**40, 2**200)] == [
        "0 B",
        "1023 B",
        "1.5 KiB",
        "5.0 MiB",
        "3.0 TiB",
        "over 1024 EiB",
    ]


def listed(item: bytes, size: int, per: int = 1000) -> bytes:
    """Protocol 4: one list, appended in batches of ``per`` copies of ``item``, about ``size`` bytes."""
    batch = b"(" + item * per + b"e"
    return b"\x80\x04]" + batch * (size // len(batch)) + b"."


def object_bombs(size: int) -> dict[str, bytes]:
    """Files of small objects, each allowed instruction repeated: what CPython builds from them is
    40x to 80x the file (an empty list per byte; a tuple around the last object per byte)."""
    module, name = RECONSTRUCT.__module__.encode(), RECONSTRUCT.__name__.encode()
    empty_array = b"c" + module + b"\n" + name + b"\n\x94cnumpy\nndarray\n\x94K\x00\x85C\x01b\x87\x94e"
    return {
        "empty_lists": listed(b"]", size),  # the incident: 7.5 GB and 73 s before a bound by file size
        "nested_tuples": b"\x80\x04N" + b"\x85" * size + b".",
        "memo_references": b"\x80\x04]\x94" + listed(b"h\x00", size)[3:],
        "nones_on_the_stack": b"\x80\x04" + b"N" * size + b".",
        "marks": b"\x80\x04" + b"(" * size + b"N.",
        "floats": listed(b"G" + struct.pack(">d", 1.5), size),
        "dtype_copies": b"\x80\x04]\x94(cnumpy\ndtype\n\x94\x8c\x02f4\x85\x94e" + listed(b"h\x01h\x02R", size)[3:],
        "empty_arrays": b"\x80\x04]\x94(" + empty_array + listed(b"h\x01h\x03R", size)[3:],
        "payload_then_lists": b"\x80\x04]\x8e"
        + struct.pack("<Q", size // 2)
        + bytes(size // 2)
        + b"a"
        + listed(b"]", size // 2)[3:],
    }


# Each file's load alone: the peak RSS (Linux's VmHWM) is reset before it, after the imports; the
# time is CPU time, which other processes on a busy machine do not stretch.
MEASURE_PEAK = """
import json, sys, time
from hyperexp.data.files import DataFileError, load_subject
def status(key):
    return int(next(line for line in open("/proc/self/status") if line.startswith(key + ":")).split()[1]) * 1024
results = []
for path in sys.argv[1:]:
    open("/proc/self/clear_refs", "w").write("5")
    baseline, start = status("VmRSS"), time.process_time()
    try:
        load_subject(path)
        message = None
    except DataFileError as error:
        message = str(error)
    results.append(dict(seconds=time.process_time() - start, rss_growth=status("VmHWM") - baseline, message=message))
print(json.dumps(results))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="the peak RSS is reset through Linux's /proc")
def test_a_file_of_small_objects_is_refused_from_its_first_megabytes(tmp_path):
    size = 24 * MB  # the incident's file was 40 MB; what counts is that it is well over OBJECT_ALLOWANCE
    paths = {}
    for name, payload in object_bombs(size).items():
        paths[name] = tmp_path / f"{name}.dat"
        paths[name].write_bytes(payload)
    results = dict(zip(paths, measure(paths.values(), MEASURE_PEAK)))
    for name, result in results.items():
        assert result["message"] is not None and "of Python objects, over the limit of" in result["message"], result
        assert result["rss_growth"] < size + 50 * MB, (name, result)  # the file's bytes, and little more
        assert result["seconds"] < 1.0, (name, result)
