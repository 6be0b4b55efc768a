"""The PyTorch PGGAN generator against MXNet 1.9.1's outputs, and its weight files.

The full 1024x1024 forward costs ~1-2 s per image on a small CPU, so the default run does one
batch of the four reference latents (shared by the tests); tests/test_generate_cli.py renders one
more image through the command line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hyperexp.errors import InputError
from hyperexp.generate.mxnet_params import load_params
from hyperexp.generate.pggan import IMAGE_LAYER, PGGANGenerator, pixel_norm, upsample_nearest_2x
from hyperexp.generate.pggan_weights import (
    GeneratorWeightsError,
    build_pggan,
    convert_weights,
    load_weights,
    map_weight_keys,
    write_weight_file,
)
from tests.conftest import REPO
from tests.mxnet_files import GENERATOR_FIXTURES as FIXTURES
from tests.mxnet_files import save_params, unpack_fixture_generator


@pytest.fixture(scope="session")
def params_path(tmp_path_factory) -> Path:
    return unpack_fixture_generator(tmp_path_factory.mktemp("pggan"))


@pytest.fixture(scope="session")
def mxnet_arrays(params_path) -> dict[str, np.ndarray]:
    return load_params(params_path)


@pytest.fixture(scope="session")
def generator(params_path) -> PGGANGenerator:
    return build_pggan(params_path, device="cpu")


@pytest.fixture(scope="session")
def latents() -> torch.Tensor:
    return torch.from_numpy(np.load(FIXTURES / "latents.npy"))


@torch.inference_mode()
def forward(generator: PGGANGenerator, latents: torch.Tensor, layer: int = IMAGE_LAYER) -> torch.Tensor:
    return generator(latents, layer)


@pytest.fixture(scope="session")
def images(generator, latents) -> torch.Tensor:
    return forward(generator, latents)


@pytest.fixture(scope="session")
def key_table() -> list[tuple[str, str, tuple[int, ...]]]:
    """(structural key, prefixed key, shape) rows of param_table.tsv."""
    lines = (FIXTURES / "param_table.tsv").read_text().splitlines()[1:]
    rows = [line.split("\t") for line in lines]
    return [(row[2], row[3], tuple(int(dim) for dim in row[4].split("x"))) for row in rows]


def max_abs_diff(actual: torch.Tensor, expected: np.ndarray) -> float:
    assert tuple(actual.shape) == expected.shape
    return float(np.abs(actual.numpy() - expected).max())


# --- agreement with MXNet -------------------------------------------------------------------


def test_layer0_matches_mxnet(generator, latents):
    output = forward(generator, latents, 0)
    # MXNet's own float32 result is 9e-6 from a float64 evaluation here (values reach 5.6).
    np.testing.assert_allclose(output.numpy(), np.load(FIXTURES / "layer0.npy"), rtol=1e-6, atol=1e-5)


def test_layer3_matches_mxnet(generator, latents):
    output = forward(generator, latents, 3)
    assert output.shape == (4, 512, 32, 32)
    assert max_abs_diff(output[:, :, :8, :8], np.load(FIXTURES / "layer3_crop8.npy")) < 1e-4


def test_full_image_matches_mxnet(images):
    assert images.shape == (4, 3, 1024, 1024) and images.dtype == torch.float32
    assert max_abs_diff(images[:, :, ::16, ::16], np.load(FIXTURES / "full_stride16.npy")) < 1e-4
    assert max_abs_diff(images[:, :, :32, :32], np.load(FIXTURES / "full_crop32.npy")) < 1e-4
    assert images.abs().max() > 1  # not clipped


# --- weight files ---------------------------------------------------------------------------


def assert_same_parameters(model: PGGANGenerator, reference: PGGANGenerator) -> None:
    for (name, value), (_, expected) in zip(model.named_parameters(), reference.named_parameters(), strict=True):
        assert torch.equal(value, expected), name


def test_prefixed_keys_load_identically(tmp_path, mxnet_arrays, key_table, generator):
    # Another Gluon instance counter in the prefix, as MXNet writes for a second model.
    renamed = {prefixed.replace("generator0_", "generator1_"): mxnet_arrays[key] for key, prefixed, _ in key_table}
    save_params(tmp_path / "prefixed.params", renamed)
    assert_same_parameters(build_pggan(tmp_path / "prefixed.params", device="cpu"), generator)


def test_every_key_style_maps_to_the_same_parameters(key_table):
    structural = [row[0] for row in key_table]
    assert map_weight_keys(structural, "f") == {key: key for key in structural}
    # MXNet's own table pairs each prefixed name with its structural key.
    prefixed = {row[1]: row[0] for row in key_table}
    assert map_weight_keys(list(prefixed), "f") == prefixed
    module_keys = map_weight_keys([name for name, _ in PGGANGenerator().named_parameters()], "f")
    assert sorted(module_keys.values()) == sorted(structural)
    assert module_keys["blocks.3.conv1.weight"] == "11.3.weight" and module_keys["to_rgb.bias"] == "16.bias"


def test_converted_files_load_identically(tmp_path, params_path, generator):
    convert_weights(params_path, tmp_path / "generator.safetensors")
    assert_same_parameters(build_pggan(tmp_path / "generator.safetensors", device="cpu"), generator)
    convert_weights(tmp_path / "generator.safetensors", tmp_path / "generator.pt")
    assert_same_parameters(build_pggan(tmp_path / "generator.pt", device="cpu"), generator)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["generator.pt", "generator.safetensors"]


@pytest.mark.parametrize("style", ["module", "prefixed"])
def test_safetensors_in_the_other_key_styles_load_identically(tmp_path, mxnet_arrays, key_table, generator, style):
    # A user's own export: this module's state_dict names, or Gluon's names kept from the .params.
    from safetensors.torch import save_file

    if style == "module":
        tensors = {name: value.contiguous() for name, value in generator.state_dict().items()}
    else:
        tensors = {prefixed: torch.from_numpy(mxnet_arrays[key]) for key, prefixed, _ in key_table}
    save_file(tensors, tmp_path / "generator.safetensors")
    assert_same_parameters(build_pggan(tmp_path / "generator.safetensors", device="cpu"), generator)


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "generator.pt"
    target.write_bytes(b"old")

    def interrupted_save(tensors, path):
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(OSError, match="disk full"):
        write_weight_file(target, {"1.weight": torch.zeros(1)})
    assert target.read_bytes() == b"old" and [path.name for path in tmp_path.iterdir()] == ["generator.pt"]


def expect_weights_error(path: Path, match: str) -> str:
    with pytest.raises(GeneratorWeightsError, match=match) as info:
        build_pggan(path, device="cpu")
    message = str(info.value)
    assert isinstance(info.value, InputError)
    assert message.startswith(str(path)) and "\n" not in message
    return message


def tiny(key_table) -> dict[str, np.ndarray]:
    """Every structural key with a 1-element array: keys are checked before shapes."""
    return {structural: np.zeros(1, np.float32) for structural, _, _ in key_table}


def test_missing_and_extra_keys(tmp_path, key_table):
    arrays = tiny(key_table)
    del arrays["5.bias"]
    save_params(tmp_path / "missing.params", arrays)
    expect_weights_error(tmp_path / "missing.params", "missing key '5.bias'")

    arrays = {**tiny(key_table), "17.weight": np.zeros(1, np.float32)}
    save_params(tmp_path / "extra.params", arrays)
    message = expect_weights_error(tmp_path / "extra.params", "unexpected key '17.weight'")
    assert "missing" not in message.removeprefix(str(tmp_path))

    prefixed = {prefixed: np.zeros(1, np.float32) for _, prefixed, _ in key_table[:-1]}
    save_params(tmp_path / "prefixed.params", prefixed)
    expect_weights_error(tmp_path / "prefixed.params", "missing key 'generator0_conv1_bias'")


def test_misshapen_key_leaves_model_untouched(tmp_path, key_table):
    arrays = {structural: np.zeros(shape, np.float32) for structural, _, shape in key_table}
    arrays["15.3.weight"] = np.zeros((16, 16, 1, 3), np.float32)
    save_params(tmp_path / "misshapen.params", arrays)
    message = expect_weights_error(tmp_path / "misshapen.params", "key '15.3.weight' has shape")
    assert message.endswith("(16, 16, 1, 3), expected (16, 16, 3, 3)")
    model = PGGANGenerator()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    with pytest.raises(GeneratorWeightsError):
        load_weights(model, tmp_path / "misshapen.params")
    assert all(torch.equal(value, before[name]) for name, value in model.state_dict().items())


def test_unreadable_weight_files(tmp_path, key_table):
    expect_weights_error(tmp_path / "absent.params", "no such weights file")
    (tmp_path / "weights.h5").write_bytes(b"x")
    expect_weights_error(tmp_path / "weights.h5", "unknown weights format")
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    expect_weights_error(tmp_path / "bad.safetensors", "cannot read safetensors")
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    expect_weights_error(tmp_path / "bad.pt", "cannot read torch file")
    ints = {structural: np.zeros(shape, np.int8) for structural, _, shape in key_table}
    save_params(tmp_path / "ints.params", ints)
    expect_weights_error(tmp_path / "ints.params", "non-float dtype")
    (tmp_path / "truncated.params").write_bytes((tmp_path / "ints.params").read_bytes()[:1000])
    with pytest.raises(InputError, match="truncated.params: truncated file"):  # a ParamsFileError
        build_pggan(tmp_path / "truncated.params", device="cpu")


# --- building and running -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "key", "fragments"),
    [
        (
            {},
            "generator.model.weights",
            ["Dado et al., Sci Rep 2022", "generator.model.weights=/path/generator.params"],
        ),
        ({"weights": "generator.params", "random_init": True}, "generator.model.weights", ["not both"]),
        ({"random_init": True, "dtype": "float64"}, "generator.model.dtype", ["float32"]),
        ({"random_init": True, "device": "cpu", "dtype": "bfloat16"}, "generator.model.dtype", ["CUDA-only"]),
    ],
)
def test_bad_settings_name_their_config_key(settings, key, fragments):
    with pytest.raises(InputError) as info:
        build_pggan(**settings)
    message = str(info.value)
    assert message.startswith(key) and "\n" not in message
    assert all(fragment in message for fragment in fragments)


def test_random_init_hidden_layers_and_input_checks():
    torch.manual_seed(0)
    model = build_pggan(random_init=True, device="cpu")
    assert model.latent_dim == 512 and not model.training
    z = torch.randn(2, 512)
    with torch.inference_mode():
        for layer, shape in [(0, (2, 512, 4, 4)), (1, (2, 512, 8, 8)), (3, (2, 512, 32, 32))]:
            output = model(z, layer)
            assert output.shape == shape and output.is_contiguous() and torch.isfinite(output).all()
    for bad_layer in (-1, 10, 2.0, True):
        with pytest.raises(ValueError, match="layer"):
            model(z, bad_layer)
    with pytest.raises(ValueError, match=r"\(N, 512\)"):
        model(torch.zeros(2, 100))


def test_memory_formats_and_autograd_path_agree():
    torch.manual_seed(1)
    fast, plain = PGGANGenerator(channels_last=True), PGGANGenerator(channels_last=False)
    plain.load_state_dict(fast.state_dict())
    z = torch.randn(2, 512, requires_grad=True)
    with torch.inference_mode():
        reference = plain(z.detach(), 2)
        # Different convolution algorithms sum in different orders (float32 noise only).
        torch.testing.assert_close(fast(z.detach(), 2), reference, rtol=1e-4, atol=1e-4)
    # With gradients the activations run out of place; same values, and gradients reach z.
    with_grad = fast(z, 2)
    torch.testing.assert_close(with_grad.detach(), reference, rtol=1e-4, atol=1e-4)
    with_grad.square().mean().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_building_blocks():
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    assert torch.equal(upsample_nearest_2x(x), x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))
    expected = x / torch.sqrt((x**2).mean(dim=1, keepdim=True) + 1e-8)
    torch.testing.assert_close(pixel_norm(x), expected)


def test_hydra_config_builds_the_generator():
    from omegaconf import OmegaConf

    from hyperexp.config import build
    from hyperexp.errors import InputError

    config = OmegaConf.load(REPO / "conf" / "generator" / "pggan.yaml")
    assert config.batch_size == 4
    model = build(config.model, random_init=True, device="cpu")
    assert isinstance(model, PGGANGenerator)
    with pytest.raises(InputError, match="generator.model.weights"):
        build(config.model)


@pytest.mark.slow
def test_batch_size_does_not_change_images(generator, latents, images):
    one_at_a_time = torch.cat([forward(generator, latent[None]) for latent in latents])
    # Float32 noise only (MXNet's own batch 1 vs batch 4 difference is 2.8e-5).
    assert max_abs_diff(one_at_a_time, images.numpy()) < 1e-4
    assert max_abs_diff(one_at_a_time[:, :, ::16, ::16], np.load(FIXTURES / "full_stride16.npy")) < 1e-4
    assert max_abs_diff(one_at_a_time[:, :, :32, :32], np.load(FIXTURES / "full_crop32.npy")) < 1e-4
