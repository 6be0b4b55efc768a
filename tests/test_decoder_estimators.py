"""Decoders as scikit-learn estimators: parameters in, ``clone`` gives an unfitted copy that refits
to the same numbers, the run-time context never becomes a parameter."""

from __future__ import annotations

import pickle

import pytest
import torch
from hydra import compose, initialize_config_dir
from sklearn.base import clone

from hyperexp.config import TrainerConfig, build
from hyperexp.decode import Decoder, FitContext, GradientDecoder
from hyperexp.evaluate import EpochMetrics
from tests.conftest import REPO

CONFIGURED = sorted(path.stem for path in (REPO / "conf" / "decoder").glob("*.yaml"))
# sized for 60 trials and 6 epochs
SMALL_FITS = {"pls": ["decoder.n_components=6"], "ridge_recipe": ["decoder.alphas=[50.0]"]}
FAST = ["decoder.optimizer.lr=0.05"]


def configured(name: str, seed: int = 0) -> Decoder:
    """``conf/decoder/<name>.yaml`` built as a run builds it (through Hydra's ``instantiate``)."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"decoder={name}", f"trainer.seed={seed}"])
        if "optimizer" in cfg.decoder:
            cfg = compose(config_name="config", overrides=[f"decoder={name}", f"trainer.seed={seed}", *FAST])
        else:
            cfg = compose(config_name="config", overrides=[f"decoder={name}", *SMALL_FITS.get(name, [])])
    return build(cfg.decoder)


def problem():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(80, 30, generator=generator)
    t = x @ torch.randn(30, 6, generator=generator) / 30**0.5 + 0.1 * torch.randn(80, 6, generator=generator)
    return x[:60], t[:60], x[60:], t[60:]


def context(x_test, t_test) -> FitContext:
    settings = TrainerConfig(epochs=6, batch_size=10, log_every=3, progress=False)
    return FitContext(settings, monitor=EpochMetrics({"test": (x_test, t_test)}))


def test_every_decoder_option_is_listed():
    assert {"adam", "adamw", "sgd", "ols", "pls", "ridge", "ridge_recipe"} <= set(CONFIGURED)


@pytest.mark.parametrize("name", CONFIGURED)
def test_a_clone_of_every_configured_decoder_refits_to_the_same_numbers(name):
    x_train, t_train, x_test, t_test = problem()
    original = configured(name)
    assert original.fit(x_train, t_train, context(x_test, t_test)) is original
    copy = clone(original)
    assert type(copy) is type(original) and copy is not original
    assert not hasattr(copy, "coef_") and not hasattr(copy, "history_")  # unfitted
    assert set(copy.get_params()) == set(original.get_params())
    assert repr(copy.get_params()) == repr(original.get_params())
    copy.fit(x_train, t_train, context(x_test, t_test))
    torch.testing.assert_close(copy.predict(x_test), original.predict(x_test), rtol=0, atol=0)
    torch.testing.assert_close(copy.history_.test_loss, original.history_.test_loss, rtol=0, atol=0)
    # and the original refits in place to the same numbers
    before = original.predict(x_test).clone()
    original.fit(x_train, t_train, context(x_test, t_test))
    torch.testing.assert_close(original.predict(x_test), before, rtol=0, atol=0)
    assert original.score(x_test, t_test) > 0.5  # RegressorMixin's R^2: these decoders learn the map


@pytest.mark.parametrize("name", [n for n in CONFIGURED if "seed" in configured(n).get_params()])
def test_the_seed_is_a_parameter_that_set_params_changes(name):
    x_train, t_train, x_test, t_test = problem()
    decoder = configured(name, seed=0)
    assert decoder.get_params()["seed"] == 0
    if not isinstance(decoder, GradientDecoder):
        assert configured(name, seed=4).get_params()["seed"] == 0  # ridge's fold seed is its own
        return
    assert configured(name, seed=4).get_params()["seed"] == 4  # the config passes trainer.seed
    first = clone(decoder).fit(x_train, t_train, context(x_test, t_test)).predict(x_test)
    other = clone(decoder).set_params(seed=1).fit(x_train, t_train, context(x_test, t_test)).predict(x_test)
    assert not torch.equal(first, other)


def test_the_fit_context_never_becomes_a_parameter():
    x_train, t_train, x_test, t_test = problem()
    decoder = configured("adam")
    fit_context = context(x_test, t_test)
    fit_context.stop_requested = lambda: False  # a collaborator that cannot be deep-copied safely
    decoder.fit(x_train, t_train, fit_context)
    assert set(decoder.get_params()) == {"optimizer", "init_scale", "seed"}
    copy = clone(decoder)
    assert not any(isinstance(value, FitContext) for value in vars(copy).values())
    restored = pickle.loads(pickle.dumps(copy))  # a clean clone travels (e.g. to a worker)
    assert restored.get_params()["seed"] == decoder.seed


def test_the_constructor_only_stores_its_settings():
    # bad settings are accepted here and refused by fit (tests/test_decode.py), as scikit-learn does
    decoder = build({"_target_": "hyperexp.decode.RidgeCVDecoder", "alphas": [], "n_folds": 1})
    assert decoder.get_params() == {"alphas": [], "n_folds": 1, "seed": 0}
