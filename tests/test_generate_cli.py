"""``python -m hyperexp.generate``: the documented commands, as typed, and their errors.

docs/published-files.md quotes:

    python -m hyperexp.generate render latents.npy out/ --generator facesketch
    python -m hyperexp.generate convert generator.params generator.safetensors
    python -m hyperexp.generate render latents.npy out/ --weights generator.safetensors
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hyperexp.generate import render
from hyperexp.generate.__main__ import grid_image, main
from hyperexp.generate.facesketch import FaceSketch
from tests.conftest import run_cli
from tests.mxnet_files import GENERATOR_FIXTURES, save_params, unpack_fixture_generator


def generate(*args: str, cwd: Path):
    return run_cli(*args, cwd=cwd, module="hyperexp.generate")


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def gaussian_latents(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 512)).astype(np.float32)


def test_readme_render_with_facesketch(tmp_path):
    latents = gaussian_latents(3)
    np.save(tmp_path / "latents.npy", latents)
    result = generate("render", "latents.npy", "out/", "--generator", "facesketch", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert sorted(path.name for path in out.iterdir()) == [
        "face_0000.png",
        "face_0001.png",
        "face_0002.png",
        "grid.png",
    ]
    with torch.no_grad():
        faces = FaceSketch()(torch.from_numpy(latents))
    expected = np.clip(np.rint(127.5 * faces.numpy() + 127.5), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    for index in range(3):
        np.testing.assert_array_equal(png(out / f"face_{index:04d}.png"), expected[index])
    grid = png(out / "grid.png")  # 2 x 2 tiles of 128 pixels, the last one black
    assert grid.shape == (256, 256, 3) and (grid[128:, 128:] == 0).all()
    np.testing.assert_array_equal(grid[128:, :128], expected[2])


def test_readme_convert_then_render_with_pggan_weights(tmp_path):
    unpack_fixture_generator(tmp_path)
    np.save(tmp_path / "latents.npy", np.load(GENERATOR_FIXTURES / "latents.npy")[:1])
    converted = generate("convert", "generator.params", "generator.safetensors", cwd=tmp_path)
    assert converted.returncode == 0, converted.stderr
    rendered = generate("render", "latents.npy", "out/", "--weights", "generator.safetensors", cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["face_0000.png", "grid.png"]
    face = png(tmp_path / "out" / "face_0000.png")
    assert face.shape == (1024, 1024, 3) and face.dtype == np.uint8
    mxnet = np.load(GENERATOR_FIXTURES / "full_stride16.npy")[0].transpose(1, 2, 0)
    mxnet_pixels = np.clip(np.rint(127.5 * mxnet + 127.5), 0, 255)
    difference = np.abs(face[::16, ::16].astype(int) - mxnet_pixels)
    assert difference.max() <= 1 and (difference == 0).mean() > 0.99
    assert png(tmp_path / "out" / "grid.png").shape == (256, 256, 3)


def test_size_and_batch_size_in_process(tmp_path, capsys):
    latents = gaussian_latents(3, seed=1)
    np.save(tmp_path / "latents.npy", latents)
    arguments = ["render", str(tmp_path / "latents.npy"), str(tmp_path / "out")]
    assert main([*arguments, "--generator", "facesketch", "--size", "32", "--batch-size", "2", "--device", "cpu"]) == 0
    assert "wrote 3 images" in capsys.readouterr().out
    in_one_batch = render(FaceSketch(), latents, batch_size=3, size=32)
    for index in range(3):
        np.testing.assert_array_equal(png(tmp_path / "out" / f"face_{index:04d}.png"), in_one_batch[index])
    assert png(tmp_path / "out" / "grid.png").shape == (64, 64, 3)  # 2 x 2 tiles


def bad_latents(tmp_path: Path, array: np.ndarray | None) -> str:
    path = tmp_path / "latents.npy"
    if array is not None:
        np.save(path, array)
    return str(path)


@pytest.mark.parametrize(
    ("latents", "flags", "problem"),
    [
        (gaussian_latents(1), [], "--weights: not given; the published PGGAN weights"),
        (gaussian_latents(1), ["--weights", "{tmp}/absent.params"], "{tmp}/absent.params: no such weights file"),
        (gaussian_latents(1), ["--generator", "facesketch", "--device", "tpu9"], "--device: "),
        (None, ["--generator", "facesketch"], "{tmp}/latents.npy: cannot read latents"),
        (np.zeros((2, 10), np.float32), ["--generator", "facesketch"], "{tmp}/latents.npy: latents have 10 dimensions"),
        (
            np.zeros((2, 2, 512), np.float32),
            ["--generator", "facesketch"],
            "{tmp}/latents.npy: latents must have shape",
        ),
        (
            np.full((1, 512), np.nan, np.float32),
            ["--generator", "facesketch"],
            "{tmp}/latents.npy: latents must be finite",
        ),
    ],
)
def test_render_errors_are_one_line_and_leave_no_output(tmp_path, capsys, latents, flags, problem):
    flags = [flag.format(tmp=tmp_path) for flag in flags]
    assert main(["render", bad_latents(tmp_path, latents), str(tmp_path / "out"), *flags]) == 1
    error = capsys.readouterr().err
    assert error.startswith("hyperexp: error: " + problem.format(tmp=tmp_path)) and error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_output_folder_that_is_a_file(tmp_path, capsys):
    (tmp_path / "out").write_text("")
    latents = bad_latents(tmp_path, gaussian_latents(1))
    assert main(["render", latents, str(tmp_path / "out"), "--generator", "facesketch"]) == 1
    assert capsys.readouterr().err.startswith(f"hyperexp: error: {tmp_path / 'out'}: cannot create the output folder")


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (["render", "latents.npy", "--weights", "generator.params", "--out", "faces/"], "unrecognized arguments"),
        (["render", "latents.npy"], "required: OUT_DIR"),
        (["render", "latents.npy", "out/", "--size", "0"], "argument --size: must be >= 1, got 0"),
        (["render", "latents.npy", "out/", "--batch-size", "two"], "argument --batch-size: invalid"),
        (["render", "latents.npy", "out/", "--generator", "stylegan"], "argument --generator: invalid choice"),
        (["render", "latents.npy", "out/", "--generator", "facesketch", "--weights", "w.pt"], "--weights: facesketch"),
        (["paint"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2(capsys, arguments, problem):
    with pytest.raises(SystemExit) as info:
        main(arguments)
    assert info.value.code == 2 and problem in capsys.readouterr().err


def test_convert_errors(tmp_path, capsys):
    save_params(tmp_path / "broken.params", {"1.weight": np.zeros(1, np.float32)})
    assert main(["convert", str(tmp_path / "broken.params"), str(tmp_path / "out.safetensors")]) == 1
    assert capsys.readouterr().err.startswith(f"hyperexp: error: {tmp_path / 'broken.params'}: missing keys")
    assert main(["convert", str(tmp_path / "broken.params"), str(tmp_path / "out.txt")]) == 1
    assert capsys.readouterr().err.startswith(f"hyperexp: error: {tmp_path / 'out.txt'}: cannot write '.txt'")
    assert main(["convert", str(tmp_path / "absent.params"), str(tmp_path / "out.pt")]) == 1
    assert "absent.params: no such weights file" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["broken.params"]


def test_grid_image():
    tiles = np.arange(5, dtype=np.uint8)[:, None, None, None].repeat(2, 1).repeat(2, 2).repeat(3, 3)
    grid = grid_image(tiles)
    assert grid.shape == (4, 6, 3) and grid[0, 2, 0] == 1 and grid[2, 0, 0] == 3 and grid[3, 4, 0] == 0
