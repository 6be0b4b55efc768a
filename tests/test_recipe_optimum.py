"""``decoder=ridge_recipe`` is where the published recipe converges: Adam on the L2 loss with
coupled weight decay wd minimises the ridge objective with alpha = wd x N x 512."""

from __future__ import annotations

import functools

import torch
from hydra import compose, initialize_config_dir

from hyperexp.config import TrainerConfig, build
from hyperexp.decode import FitContext, GradientDecoder, RidgeCVDecoder
from hyperexp.decode.optim import MXNetAdam
from tests.conftest import REPO


def test_the_configured_penalty_is_the_recipes_weight_decay_times_trials_times_outputs():
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["decoder=ridge_recipe"])
    recipe = compose_adam()
    decoder = build(cfg.decoder)
    n_train, n_outputs = cfg.data.simulation.n_train, cfg.data.simulation.latent_dim
    assert decoder.alphas == [recipe.optimizer.weight_decay * n_train * n_outputs]


def compose_adam():
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config").decoder


def test_adam_with_coupled_weight_decay_converges_to_that_ridge():
    generator = torch.Generator().manual_seed(0)
    n, voxels, outputs, decay = 40, 12, 6, 0.01
    x = torch.randn(n, voxels, generator=generator)
    x = (x - x.mean(0)) / x.std(0)  # z-scored, as the recipe's inputs are
    t = x @ torch.randn(voxels, outputs, generator=generator) + torch.randn(n, outputs, generator=generator)
    t = t - t.mean(0)  # centred: the recipe also decays the bias, ridge leaves it free
    settings = TrainerConfig(epochs=300, batch_size=n, progress=False, log_every=300)
    adam = GradientDecoder(functools.partial(MXNetAdam, lr=0.1, weight_decay=decay))  # a fast rate: same optimum
    adam.fit(x, t, FitContext(settings))
    ridge, unpenalised = RidgeCVDecoder([decay * n * outputs], n_folds=2), RidgeCVDecoder([1e-6], n_folds=2)
    ridge.fit(x, t)
    unpenalised.fit(x, t)
    gap = (adam.coef_ - ridge.coef_).abs().max().item()
    assert gap < 1e-4
    assert (unpenalised.coef_ - ridge.coef_).abs().max().item() > 1000 * gap  # the penalty matters here
