"""Metrics against hand-computed or independently computed values."""

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr
from skimage.metrics import structural_similarity

from hyperexp.errors import InputError
from hyperexp.evaluate.evaluation import load_boundaries, load_feature_extractor
from hyperexp.evaluate.metrics import (
    attribute_metrics,
    feature_metrics,
    image_metrics,
    latent_metrics,
    project_on_boundaries,
    two_way_identification,
)

# ----------------------------------------------------------------------------- identification


def test_identification_perfect_prediction_is_one():
    true = np.random.default_rng(0).standard_normal((6, 10))
    assert two_way_identification(true, true) == 1.0
    # Correlation ignores offset and positive scale.
    assert two_way_identification(true, 3.0 * true + 2.0) == 1.0


def test_identification_with_known_swap():
    # Mean-zero rows: t0 and t1 uncorrelated; t2 and t3 anti-correlated with both (r = -1/sqrt(3))
    # and correlated with each other (r = 1/3). Predictions 0 and 1 are swapped.
    true = np.array(
        [
            [1.0, -1.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, -1.0, 0.0, 0.0],
            [-1.0, 1.0, -1.0, 1.0, 1.0, -1.0],
            [-1.0, 1.0, -1.0, 1.0, -1.0, 1.0],
        ]
    )
    pred = true[[1, 0, 2, 3]]
    # Pred 0 (= t1): r with t0 is 0 -> loses to t1 (r = 1), beats t2 and t3 (r < 0); same for pred 1.
    # Preds 2 and 3 (r = 1 with their own) win all three pairs. Total 2 + 2 + 3 + 3 = 10 of 12.
    assert two_way_identification(true, pred) == pytest.approx(10 / 12)
    # Fully reversed order of an anti-correlated pair: each pred is its own negation -> 0.
    pair = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    assert two_way_identification(pair, pair[::-1]) == 0.0


def test_identification_ties_count_half_and_constant_prediction_is_chance():
    true = np.random.default_rng(1).standard_normal((5, 8))
    constant = np.ones((5, 8))
    assert two_way_identification(true, constant) == 0.5


def test_identification_matches_loop_reference():
    rng = np.random.default_rng(2)
    true = rng.standard_normal((7, 12))
    pred = true + 1.5 * rng.standard_normal((7, 12))
    wins = []
    for i in range(7):
        for j in range(7):
            if i != j:
                wins.append(pearsonr(pred[i], true[i])[0] > pearsonr(pred[i], true[j])[0])
    assert two_way_identification(true, pred) == pytest.approx(np.mean(wins))


# ----------------------------------------------------------------------------- latents


def test_latent_metrics_hand_computed():
    true = np.array([[1.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    pred = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 1.0]])
    metrics = latent_metrics(true, pred)
    # Squared errors 1, 0, 0, 0, 0, 1 -> MSE 2/6.
    assert metrics["latent_mse"] == pytest.approx(1 / 3)
    assert metrics["latent_similarity"] == pytest.approx(1 / (1 + 1 / 3))
    # Cosines: 1, 1, (4 + 2) / (sqrt(8) sqrt(5)).
    assert metrics["latent_cosine"] == pytest.approx((2 + 6 / np.sqrt(40)) / 3)
    expected_pearson = (pearsonr(true[:, 0], pred[:, 0])[0] + pearsonr(true[:, 1], pred[:, 1])[0]) / 2
    assert metrics["latent_pearson"] == pytest.approx(expected_pearson)
    assert set(metrics) == {
        "latent_mse",
        "latent_similarity",
        "latent_cosine",
        "latent_pearson",
        "latent_identification",
    }
    assert all(isinstance(value, float) for value in metrics.values())


def test_latent_pearson_linear_relations_and_constant_dimension():
    t = np.arange(5.0)
    true = np.stack([t, t, np.full(5, 3.0)], axis=1)
    pred = np.stack([2 * t + 1, -t, np.arange(5.0) ** 2], axis=1)
    # Dimension 0: r = +1, dimension 1: r = -1, dimension 2: true constant -> excluded.
    assert latent_metrics(true, pred)["latent_pearson"] == pytest.approx(0.0, abs=1e-12)
    assert latent_metrics(true[:, :1], pred[:, :1])["latent_pearson"] == pytest.approx(1.0)
    assert latent_metrics(true[:, 1:2], pred[:, 1:2])["latent_pearson"] == pytest.approx(-1.0)


def test_latent_metrics_perfect_and_torch_input():
    true = torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
    metrics = latent_metrics(true, true.clone())
    assert metrics["latent_mse"] == 0.0
    assert metrics["latent_similarity"] == 1.0
    assert metrics["latent_cosine"] == pytest.approx(1.0)
    assert metrics["latent_pearson"] == pytest.approx(1.0)
    assert metrics["latent_identification"] == 1.0


def test_latent_metrics_errors():
    with pytest.raises(ValueError, match="equal shapes"):
        latent_metrics(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="at least 2 trials"):
        latent_metrics(np.zeros((1, 4)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="NaN"):
        latent_metrics(np.full((3, 4), np.nan), np.zeros((3, 4)))


# ----------------------------------------------------------------------------- images


def random_images(n=3, size=16, seed=0):
    return np.random.default_rng(seed).random((n, size, size, 3))


def test_image_metrics_identical_images():
    images = random_images()
    metrics = image_metrics(images, images.copy())
    assert metrics["ssim"] == pytest.approx(1.0)
    assert metrics["pixel_correlation"] == pytest.approx(1.0)
    assert metrics["pixel_identification"] == 1.0


def test_image_metrics_pixel_correlation_and_identification_hand_checked():
    # Image 2 is the inverse of the mean of images 0 and 1, so it anti-correlates with both.
    true = random_images(n=3, seed=1)
    true[2] = 1 - (true[0] + true[1]) / 2
    pred = true[[1, 0, 2]]  # swap first two reconstructions
    metrics = image_metrics(true, pred)
    flat_true, flat_pred = true.reshape(3, -1), pred.reshape(3, -1)
    expected_correlation = np.mean([pearsonr(flat_true[i], flat_pred[i])[0] for i in range(3)])
    assert metrics["pixel_correlation"] == pytest.approx(expected_correlation)
    # Images 0 and 1 are independent noise (r ~ 0): each swapped prediction loses its pair
    # against the other and beats image 2 (r ~ -0.7); prediction 2 wins both pairs.
    assert metrics["pixel_identification"] == pytest.approx(4 / 6)
    # Prediction 2 is exact (SSIM 1); predictions 0 and 1 each compare images 0 and 1.
    cross_ssim = structural_similarity(true[0], true[1], channel_axis=-1, data_range=1.0)
    assert metrics["ssim"] == pytest.approx((2 * cross_ssim + 1) / 3)
    assert cross_ssim < 0.2


def test_image_metrics_ssim_matches_skimage_and_conventions_agree():
    true = random_images(n=2, seed=2)
    pred = np.clip(true + 0.1 * np.random.default_rng(3).standard_normal(true.shape), 0, 1)
    expected = np.mean([structural_similarity(t, p, channel_axis=-1, data_range=1.0) for t, p in zip(true, pred)])
    reference = image_metrics(true, pred)
    assert reference["ssim"] == pytest.approx(expected)
    assert 0.2 < reference["ssim"] < 0.99

    channel_first = image_metrics(
        torch.from_numpy(true).permute(0, 3, 1, 2).float(), torch.from_numpy(pred).permute(0, 3, 1, 2).float()
    )
    for key in reference:
        assert channel_first[key] == pytest.approx(reference[key], abs=1e-5)

    true_uint8 = np.round(true * 255).astype(np.uint8)
    pred_uint8 = np.round(pred * 255).astype(np.uint8)
    from_uint8 = image_metrics(true_uint8, pred_uint8)
    from_float = image_metrics(true_uint8 / 255.0, pred_uint8 / 255.0)
    for key in from_float:
        assert from_uint8[key] == pytest.approx(from_float[key], abs=1e-12)


def test_image_metrics_errors():
    images = random_images()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        image_metrics(images * 2 - 1, images)
    with pytest.raises(ValueError, match="differ in shape"):
        image_metrics(images, random_images(size=20))
    with pytest.raises(ValueError, match="images, got shape"):
        image_metrics(images[..., 0], images[..., 0])
    with pytest.raises(ValueError, match="dtype"):
        image_metrics(images.astype(np.int32), images.astype(np.int32))


# ----------------------------------------------------------------------------- attributes


def test_attribute_metrics_linear_relations():
    t = np.array([0.0, 1.0, 2.0, 5.0])
    true = np.stack([t, t, t], axis=1)
    pred = np.stack([0.5 * t - 3, -2 * t, np.array([1.0, 0.0, 0.0, 1.0])], axis=1)
    metrics = attribute_metrics(true, pred, ["age", "smile", "pose"])
    assert metrics["attr_r/age"] == pytest.approx(1.0)
    assert metrics["attr_r/smile"] == pytest.approx(-1.0)
    expected_pose = pearsonr(t, pred[:, 2])[0]
    assert metrics["attr_r/pose"] == pytest.approx(expected_pose)
    assert metrics["attribute_similarity"] == pytest.approx(expected_pose / 3)
    assert set(metrics) == {"attr_r/age", "attr_r/smile", "attr_r/pose", "attribute_similarity"}


def test_attribute_metrics_constant_column_is_nan_and_excluded():
    true = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
    pred = np.array([[0.0, 5.0], [2.0, 6.0], [4.0, 7.0]])
    metrics = attribute_metrics(true, pred, ["a", "b"])
    assert np.isnan(metrics["attr_r/b"])
    assert metrics["attribute_similarity"] == pytest.approx(1.0)


def test_attribute_metrics_name_errors():
    values = np.random.default_rng(0).standard_normal((4, 2))
    with pytest.raises(ValueError, match="2 attribute columns"):
        attribute_metrics(values, values, ["a"])
    with pytest.raises(ValueError, match="unique"):
        attribute_metrics(values, values, ["a", "a"])
    with pytest.raises(ValueError, match="metric key"):
        attribute_metrics(values, values, ["a", "b:c"])


def test_project_on_boundaries_normalises():
    latents = np.array([[1.0, 2.0, 3.0], [-1.0, 0.0, 4.0]])
    boundaries = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 4.0]])
    expected = np.array([[1.0, (6 + 12) / 5], [-1.0, 16 / 5]])
    np.testing.assert_allclose(project_on_boundaries(latents, boundaries), expected)
    with pytest.raises(ValueError, match="non-zero"):
        project_on_boundaries(latents, np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"\(A, D\)"):
        project_on_boundaries(latents, boundaries[:, :2])


def test_load_boundaries(tmp_path):
    rng = np.random.default_rng(0)
    flat, row = rng.standard_normal(512), rng.standard_normal((1, 512)).astype(np.float32)
    np.save(tmp_path / "age.npy", flat)
    np.save(tmp_path / "smile.npy", row)
    loaded = load_boundaries([tmp_path / "age.npy", str(tmp_path / "smile.npy")])
    assert loaded.shape == (2, 512) and loaded.dtype == np.float64
    np.testing.assert_array_equal(loaded[0], flat)
    np.testing.assert_array_equal(loaded[1], row[0])


def test_boundary_files_are_refused_in_one_line_naming_the_file(tmp_path):
    from hyperexp.evaluate import Evaluation

    np.save(tmp_path / "short.npy", np.zeros(511) + 1)
    with pytest.raises(InputError, match=r"attribute_boundaries: boundaries are 511-d, latents 512-d"):
        Evaluation(attribute_boundaries=[str(tmp_path / "short.npy")]).check_latent_dim(512)
    bad = np.ones(512)
    bad[7] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    with pytest.raises(InputError, match=r"inf\.npy: a boundary must be finite and non-zero"):
        load_boundaries([tmp_path / "inf.npy"])
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"pickled\.npy: cannot read"):
        load_boundaries([tmp_path / "pickled.npy"])
    np.save(tmp_path / "square.npy", np.ones((2, 512)))
    with pytest.raises(InputError, match=r"square\.npy: a boundary must have shape"):
        load_boundaries([tmp_path / "square.npy"])
    with pytest.raises(InputError, match=r"missing\.npy: cannot read"):
        Evaluation(attribute_boundaries=[str(tmp_path / "missing.npy")])


# ----------------------------------------------------------------------------- features


class MeanColourExtractor(torch.nn.Module):
    """Features = per-channel means; a linear layer gives it a parameter (device lookup)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Linear(3, 3, bias=False)
        with torch.no_grad():
            self.scale.weight.copy_(torch.eye(3))

    def forward(self, images):
        return self.scale(images.mean(dim=(2, 3)))


def test_feature_metrics_hand_computed():
    true = np.zeros((2, 8, 8, 3))
    true[0, ..., 0] = 1.0  # pure red -> features (1, 0, 0)
    true[1, ..., 1] = 1.0  # pure green -> (0, 1, 0)
    pred = np.zeros((2, 8, 8, 3))
    pred[0, ..., 0] = 1.0
    pred[1, ..., 0] = 1.0  # green reconstructed as red -> (1, 0, 0)
    extractor = MeanColourExtractor().train()
    metrics = feature_metrics(true, pred, extractor, batch_size=1)
    # Cosines 1 and 0; squared feature errors 0 and 2 over 6 elements.
    assert metrics["feature_cosine"] == pytest.approx(0.5)
    assert metrics["feature_similarity"] == pytest.approx(1 / (1 + 2 / 6))
    assert extractor.training  # mode restored


def test_feature_metrics_batch_size_invariant_and_identical_images():
    images = random_images(n=5, size=8, seed=4)
    extractor = MeanColourExtractor()
    assert feature_metrics(images, images, extractor)["feature_similarity"] == 1.0
    pred = random_images(n=5, size=8, seed=5)
    by_one = feature_metrics(images, pred, extractor, batch_size=1)
    by_all = feature_metrics(images, pred, extractor, batch_size=16)
    for key in by_one:
        assert by_one[key] == pytest.approx(by_all[key], rel=1e-6)


# torch 2.13 marks torch.jit.script/load deprecated; TorchScript is still the configured format.
@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_load_feature_extractor_round_trip_and_errors(tmp_path):
    path = tmp_path / "extractor.pt"
    torch.jit.script(MeanColourExtractor()).save(str(path))
    loaded = load_feature_extractor(path)
    assert isinstance(loaded, torch.jit.ScriptModule)
    assert not loaded.training
    images = random_images(n=2, size=8, seed=6)
    assert feature_metrics(images, images * 0.5, loaded)["feature_cosine"] == pytest.approx(1.0)

    with pytest.raises(InputError, match="missing.pt: no such feature extractor file"):
        load_feature_extractor(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torchscript archive")
    with pytest.raises(InputError, match="garbage.pt: not a loadable TorchScript network"):
        load_feature_extractor(garbage)
