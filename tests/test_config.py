"""Every option of every config group composes, builds its part, and the schema types each key."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from hyperexp.config import build, validated
from hyperexp.errors import InputError
from tests.conftest import REPO

CONF = REPO / "conf"
GROUPS = ["data", "decoder", "trainer", "generator", "evaluate", "tracking", "experiment"]
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONF / group).glob("*.yaml"))]


def compose_with(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_each_group_has_options_and_none_is_internal():
    assert {group for group, _ in OPTIONS} == set(GROUPS)
    assert {"subject1", "subject2", "hyperaligned", "average", "subject"} <= {o for g, o in OPTIONS if g == "data"}
    decoders = {"adam", "adam_fast", "adamw", "sgd", "ols", "ridge", "ridge_recipe", "pls"}
    assert decoders == {o for g, o in OPTIONS if g == "decoder"}
    assert not [option for _, option in OPTIONS if option.startswith("_")]  # --help lists only real choices


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_validates(group, option):
    cfg = compose_with(f"{group}={option}")
    trainer = validated(cfg.trainer)
    assert trainer.epochs >= 1
    assert cfg.data.variant in ("subject", "average", "hyperaligned")
    assert cfg.data.protocol in ("published", "strict")
    assert "_target_" in cfg.data and "_target_" in cfg.decoder and "_target_" in cfg.evaluate


def test_defaults_are_the_published_recipe():
    cfg = compose_with()
    assert cfg.trainer.epochs == 1500 and cfg.trainer.batch_size == 30 and cfg.trainer.last_batch == "pad"
    assert cfg.decoder.optimizer.lr == 1e-5 and cfg.decoder.optimizer.weight_decay == 0.01
    assert cfg.data.simulation.n_voxels == 4096 and cfg.data.simulation.n_train == 1050
    assert cfg.data.simulation.n_test == 36 and cfg.data.simulation.repeats == 14


def test_pool_choices():
    assert compose_with("data=subject", "data.subjects=[5]").data.subjects == [5]
    assert compose_with("data=subject2").data.subjects == [2]
    assert compose_with("data=hyperaligned", "data.n_subjects=4").data.n_subjects == 4


@pytest.mark.parametrize("decoder", ["adam", "adamw", "sgd", "ols", "ridge", "ridge_recipe", "pls"])
def test_each_decoder_builds_from_its_config(decoder):
    built = build(compose_with(f"decoder={decoder}").decoder)
    assert callable(built.fit) and callable(built.predict)


def test_parts_build():
    cfg = compose_with()
    generator = build(cfg.generator.model)
    evaluation = build(cfg.evaluate)
    assert generator.latent_dim == 512 and evaluation.extractor is None and evaluation.boundaries is None


@pytest.mark.parametrize(
    "override",
    ["data=nosuch", "trainer.epochs=abc", "trainer.nosuch=1", "data.subjects=1", "tracking.nosuch=x"],
)
def test_the_schema_refuses_unknown_keys_options_and_wrong_types(override):
    with pytest.raises(ConfigCompositionException):
        compose_with(override)


@pytest.mark.parametrize(
    "override,message",
    [
        ("trainer.epochs=0", "trainer.epochs: must be >= 1, got 0"),
        ("trainer.log_every=-3", "trainer.log_every: must be >= 1"),
        ("trainer.checkpoint_every=-1", "trainer.checkpoint_every: must be >= 0"),
        ("trainer.last_batch=drop", "trainer.last_batch: must be one of pad, partial"),
        ("trainer.feature_loss.weight=-1", "trainer.feature_loss.weight: must be >= 0"),
    ],
)
def test_ranges_and_choices_are_one_line_naming_the_key(override, message):
    with pytest.raises(InputError, match=message):
        validated(compose_with(override).trainer)


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_passes_the_checks_of_what_consumes_its_settings(group, option):
    config = validated(compose_with(f"{group}={option}"))  # the optimizer built, seeds, sizes, memory
    assert config.trainer.epochs >= 1


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["decoder.optimizer.weight_decay=-1"], "decoder.optimizer.weight_decay: Invalid weight_decay value: -1"),
        (["decoder=sgd", "decoder.optimizer.momentum=-0.5"], "decoder.optimizer.momentum: Invalid momentum value"),
        (["decoder=adamw", "+decoder.optimizer.eps=-1"], "decoder.optimizer.eps: Invalid epsilon value: -1"),
        (["decoder.optimizer.lr=inf"], "decoder.optimizer.lr: must be a finite number, got inf"),
        (["decoder.optimizer.lr=-1"], r"decoder.optimizer.lr: must be > 0, got -1"),
        (["generator.model.seed=-2"], r"generator.model.seed: a seed is an integer from 0 to 2\*\*64 - 1, got -2"),
        (["trainer.seed=18446744073709551616"], "trainer.seed: a seed is an integer"),
        (["tracking.uri=mysql://u@localhost/db"], "tracking.uri: a mysql store needs its Python driver 'MySQLdb'"),
    ],
)
def test_a_setting_its_consumer_refuses_is_one_line_naming_the_key(overrides, message):
    with pytest.raises(InputError, match=message):
        validated(compose_with(*overrides))


def test_the_seed_rule_is_what_torch_and_numpy_both_take():
    import numpy as np
    import torch

    from hyperexp.config import check_seed

    for seed in (-1, 0, 2**63, 2**64 - 1, 2**64):
        try:
            torch.Generator().manual_seed(seed)
            np.random.default_rng(seed)
            taken = True
        except (ValueError, RuntimeError):
            taken = False
        try:
            check_seed("trainer.seed", seed)
            accepted = True
        except InputError:
            accepted = False
        assert accepted == taken, seed


def test_image_memory_is_bounded_by_the_memory_available(monkeypatch):
    import hyperexp.config

    monkeypatch.setattr(hyperexp.config, "available_memory", lambda: 2**30)
    validated(compose_with("trainer.preview_size=1024"))  # 8 trials x 1024^2 x 3 x 4 bytes x 4 copies = 384 MiB
    with pytest.raises(InputError, match=r"^trainer.preview_size=4096: .* about 6.0 GiB, more than the 1.0 GiB of"):
        validated(compose_with("trainer.preview_size=4096"))
    with pytest.raises(InputError, match=r"^generator.model.size=2048: rendering 36 test trials twice"):
        validated(compose_with("generator.model.size=2048", "trainer.preview_size=128"))
