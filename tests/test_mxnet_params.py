"""The MXNet NDArray-list reader (and the tests' writer) against files written by MXNet 1.9.1, and corrupt files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hyperexp.errors import InputError
from hyperexp.generate.mxnet_params import ParamsFileError, load_params
from tests.mxnet_files import encode_params, save_params

DENSE = Path(__file__).parent / "fixtures" / "mxnet" / "dense"

# (file, keys in file order, weight .npy, bias .npy)
DENSE_VARIANTS = [
    ("dense.params", ["0.weight", "0.bias"], "weight.npy", "bias.npy"),
    ("dense_fp16.params", ["0.weight", "0.bias"], "weight_fp16.npy", "bias_fp16.npy"),
    (
        "dense_prefixed.params",
        ["hybridsequential0_dense0_weight", "hybridsequential0_dense0_bias"],
        "weight.npy",
        "bias.npy",
    ),
]


@pytest.mark.parametrize(("name", "keys", "weight_file", "bias_file"), DENSE_VARIANTS)
def test_dense_variants_load_exact_values(name, keys, weight_file, bias_file):
    params = load_params(DENSE / name)
    assert list(params) == keys
    weight, bias = params.values()
    expected_weight, expected_bias = np.load(DENSE / weight_file), np.load(DENSE / bias_file)
    assert weight.dtype == expected_weight.dtype and bias.dtype == expected_bias.dtype
    np.testing.assert_array_equal(weight, expected_weight)
    np.testing.assert_array_equal(bias, expected_bias)
    assert weight.flags.writeable and weight.flags.aligned


@pytest.mark.parametrize("name", ["dense.params", "dense_prefixed.params"])
def test_dense_layer_reproduces_mxnet_output(name):
    weight, bias = (torch.from_numpy(array) for array in load_params(DENSE / name).values())
    layer = torch.nn.Linear(64, 512)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
        output = layer(torch.from_numpy(np.load(DENSE / "input.npy")))
    np.testing.assert_allclose(output.numpy(), np.load(DENSE / "output.npy"), rtol=1e-6, atol=1e-6)


def test_fp16_dense_output_close_to_float32_reference():
    weight, bias = (torch.from_numpy(array).float() for array in load_params(DENSE / "dense_fp16.params").values())
    output = F.linear(torch.from_numpy(np.load(DENSE / "input.npy")), weight, bias)
    np.testing.assert_allclose(output.numpy(), np.load(DENSE / "output.npy"), atol=5e-3)


@pytest.mark.parametrize("name", [variant[0] for variant in DENSE_VARIANTS])
def test_writer_reproduces_mxnet_files_byte_for_byte(name):
    assert encode_params(load_params(DENSE / name)) == (DENSE / name).read_bytes()


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "uint8", "int32", "int8", "int64"])
def test_every_dtype_round_trips(tmp_path, dtype):
    rng = np.random.default_rng(0)
    params = {
        "2.b": (rng.standard_normal((2, 3, 4)) * 50).astype(dtype),
        "generator0_conv0_weight": (rng.standard_normal(5) * 50).astype(dtype),
        "empty": np.zeros((0, 3), dtype),
    }
    save_params(tmp_path / "x.params", params)
    loaded = load_params(tmp_path / "x.params")
    assert list(loaded) == list(params)
    for key, array in params.items():
        assert loaded[key].dtype == array.dtype and loaded[key].shape == array.shape
        np.testing.assert_array_equal(loaded[key], array)


def test_writer_rejects_dtypes_mxnet_cannot_store(tmp_path):
    with pytest.raises(ValueError, match="bool"):
        save_params(tmp_path / "x.params", {"a": np.ones(3, bool)})
    assert list(tmp_path.iterdir()) == []


# Byte offsets in a file holding one float32 array of shape (3,) named "a" (see the format).
ARRAY_MAGIC_AT, STORAGE_AT, NDIM_AT, DIM0_AT, DTYPE_AT, DATA_AT = 24, 28, 32, 36, 52, 56
NAME_COUNT_AT, NAME_AT = 68, 84


@pytest.fixture
def one_array_bytes() -> bytearray:
    data = bytearray(encode_params({"a": np.arange(3, dtype=np.float32)}))
    assert len(data) == NAME_AT + 1 and data[NAME_AT:] == b"a"
    return data


def expect_error(path: Path, data: bytes | bytearray, match: str) -> str:
    path.write_bytes(bytes(data))
    with pytest.raises(ParamsFileError, match=match) as info:
        load_params(path)
    message = str(info.value)
    assert isinstance(info.value, InputError)
    assert message.startswith(str(path)) and "\n" not in message
    return message


def patch(data: bytearray, offset: int, fmt: str, value: int) -> bytearray:
    struct.pack_into(fmt, data, offset, value)
    return data


def test_wrong_file_magic(tmp_path, one_array_bytes):
    expect_error(tmp_path / "x.params", patch(one_array_bytes, 0, "<Q", 0x113), "wrong magic 0x113")


def test_not_a_params_file(tmp_path):
    expect_error(tmp_path / "x.params", b"\x89PNG\r\n\x1a\n" + bytes(40), "wrong magic")


CUTS = [0, 10, 20, ARRAY_MAGIC_AT + 2, DIM0_AT + 3, DTYPE_AT, DATA_AT + 5, NAME_COUNT_AT + 1, NAME_AT]


@pytest.mark.parametrize("cut", CUTS)
def test_truncated_file(tmp_path, one_array_bytes, cut):
    expect_error(tmp_path / "x.params", one_array_bytes[:cut], "truncated")


def test_unknown_dtype(tmp_path, one_array_bytes):
    expect_error(tmp_path / "x.params", patch(one_array_bytes, DTYPE_AT, "<i", 12), "array 0: unknown dtype flag 12")


@pytest.mark.parametrize(("storage", "name"), [(1, "row_sparse"), (2, "csr"), (9, "storage type 9")])
def test_non_dense_storage(tmp_path, one_array_bytes, storage, name):
    data = patch(one_array_bytes, STORAGE_AT, "<i", storage)
    expect_error(tmp_path / "x.params", data, f"{name} storage is not supported")


@pytest.mark.parametrize("names", [0, 2])
def test_name_count_mismatch(tmp_path, one_array_bytes, names):
    expect_error(tmp_path / "x.params", patch(one_array_bytes, NAME_COUNT_AT, "<Q", names), "name count mismatch")


def test_corrupt_dimension_fails_without_allocating(tmp_path, one_array_bytes):
    # 2**40 float32 would be 4 TiB; the size must be checked against the bytes left first.
    expect_error(tmp_path / "x.params", patch(one_array_bytes, DIM0_AT, "<q", 2**40), "truncated")
    expect_error(tmp_path / "x.params", patch(one_array_bytes, DIM0_AT, "<q", -3), "negative dimension")


def test_corrupt_counts(tmp_path, one_array_bytes):
    expect_error(tmp_path / "x.params", patch(bytearray(one_array_bytes), 16, "<Q", 2**60), "array count")
    expect_error(tmp_path / "x.params", patch(bytearray(one_array_bytes), NDIM_AT, "<I", 10**6), "unsupported ndim")
    expect_error(tmp_path / "x.params", patch(bytearray(one_array_bytes), NAME_AT - 8, "<Q", 2**62), "truncated")


def test_wrong_ndarray_magic(tmp_path, one_array_bytes):
    data = patch(one_array_bytes, ARRAY_MAGIC_AT, "<I", 0xF993FAC8)  # an older NDArray layout
    expect_error(tmp_path / "x.params", data, "NDArray magic 0xF993FAC8")


def test_trailing_bytes_and_bad_names(tmp_path, one_array_bytes):
    expect_error(tmp_path / "x.params", one_array_bytes + b"\0", "trailing")
    expect_error(tmp_path / "x.params", one_array_bytes[:NAME_AT] + b"\xff", "UTF-8")
    twice = bytearray(encode_params({"a": np.zeros(1, np.float32), "b": np.zeros(1, np.float32)}))
    twice[-1:] = b"a"
    expect_error(tmp_path / "x.params", twice, "duplicate key 'a'")


def test_missing_file(tmp_path):
    with pytest.raises(ParamsFileError, match="cannot read"):
        load_params(tmp_path / "absent.params")
