"""Bad files a run reads beyond the table in tests/bad_input_cases.py: generator weights and
settings, feature networks and attribute boundaries; each refused as one line (InputError) before
any MLflow run or output folder exists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hyperexp.errors import InputError
from tests.conftest import run_in_process, runs_of, store
from tests.feature_networks import IGNORE_JIT_DEPRECATION, GreyscaleOnly, OneNumberPerBatch, save_scripted
from tests.mxnet_files import save_params

BASE = ["experiment=smoke", "trainer.progress=false", "trainer.epochs=2", "trainer.log_every=1"]


def case_mismatched_params(root):
    path = root / "generator.params"
    save_params(path, {"1.weight": np.zeros((4, 4), np.float32)})
    return ["generator=pggan", f"generator.model.weights={path}"], "generator.params"


def case_bfloat16_generator_on_the_cpu(root):
    args = ["generator=pggan", "generator.model.random_init=true", "generator.model.dtype=bfloat16"]
    return [*args, "generator.model.device=cpu"], "CUDA-only options; on cpu use float32"


def case_missing_feature_network(root):
    return [f"evaluate.feature_extractor={root / 'vggface.pt'}"], "vggface.pt: no such feature extractor file"


def case_corrupt_feature_network(root):
    path = save_scripted(GreyscaleOnly(), root / "vggface.pt")
    path.write_bytes(path.read_bytes()[:300])
    return [f"evaluate.feature_extractor={path}"], "vggface.pt: not a loadable TorchScript network"


def case_feature_network_that_cannot_take_rgb_images(root):
    path = save_scripted(GreyscaleOnly(), root / "vggface.pt")
    expected = "vggface.pt: the feature network fails on float32 (B, 3, 128, 128) images in [0, 1] (RuntimeError: "
    return [f"evaluate.feature_extractor={path}"], expected


def case_feature_network_without_per_image_features(root):
    path = save_scripted(OneNumberPerBatch(), root / "vggface.pt")
    return [f"evaluate.feature_extractor={path}"], "vggface.pt: the feature network must return (B, ...) features"


def boundaries(root: Path, **arrays: np.ndarray) -> list[str]:
    for name, array in arrays.items():
        np.save(root / f"{name}.npy", array)
    return [f"evaluate.attribute_boundaries=[{','.join(str(root / f'{name}.npy') for name in arrays)}]"]


def case_missing_boundary(root):
    args = boundaries(root, smile=np.ones(512))
    return [args[0].replace("smile", "age")], "age.npy: cannot read as an attribute boundary .npy"


def case_corrupt_boundary(root):
    args = boundaries(root, smile=np.ones(512))
    (root / "smile.npy").write_bytes((root / "smile.npy").read_bytes()[:200])
    return args, "smile.npy: cannot read as an attribute boundary .npy"


def case_boundary_of_the_wrong_length(root):
    return boundaries(root, smile=np.ones(512), age=np.ones(511)), "boundaries differ in length [511, 512]"


def case_boundaries_of_another_latent_space(root):
    return boundaries(root, smile=np.ones(256)), "attribute_boundaries: boundaries are 256-d, latents 512-d"


def case_boundary_holding_several_rows(root):
    return boundaries(root, smile=np.ones((2, 512))), "smile.npy: a boundary must have shape (D,) or (1, D)"


CASES = {name[5:]: case for name, case in globals().items() if name.startswith("case_")}


@IGNORE_JIT_DEPRECATION
@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_line_before_any_run_or_file(tmp_path, name):
    args, message = CASES[name](tmp_path)
    with pytest.raises(InputError) as refused:
        run_in_process(tmp_path, *BASE, *args)
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert runs_of(store(tmp_path)) == [] if (tmp_path / "runs" / "mlflow.db").is_file() else True
    assert not (tmp_path / "out").exists()  # no output folder, no half-written file
