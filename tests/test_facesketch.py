import torch

from hyperexp.generate.facesketch import ATTRIBUTES, FaceSketch


def latents(n, seed=0, dim=512):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def test_shape_range_and_determinism():
    model = FaceSketch(size=64)
    z = latents(5)
    images = model(z)
    assert images.shape == (5, 3, 64, 64)
    assert images.min() >= -1 and images.max() <= 1
    torch.testing.assert_close(FaceSketch(size=64)(z), images)  # same seed, same projection


def test_attributes_are_standard_normal_for_gaussian_latents():
    attributes = FaceSketch().attributes(latents(4000))
    assert attributes.shape == (4000, len(ATTRIBUTES)) == (4000, 20)
    assert attributes.mean(0).abs().max() < 0.1
    assert (attributes.std(0) - 1).abs().max() < 0.1


def test_nearby_latents_give_similar_faces():
    model = FaceSketch(size=64)
    z = latents(16)
    near = z + 0.1 * latents(16, seed=1)
    far = latents(16, seed=2)
    near_distance = (model(z) - model(near)).pow(2).mean(dim=(1, 2, 3))
    far_distance = (model(z) - model(far)).pow(2).mean(dim=(1, 2, 3))
    assert (near_distance < far_distance).all()


def test_differentiable_from_pixels_to_latents():
    model = FaceSketch(size=32)
    z = latents(2).requires_grad_(True)
    model(z).mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
