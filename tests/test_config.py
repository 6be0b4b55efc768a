"""Every option of every config group composes, and the composed config builds its parts."""


import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.conftest import REPO

CONF = REPO / "conf"
GROUPS = ["data", "decoder", "optimizer", "trainer", "generator", "tracking", "experiment"]
OPTIONS = [
    (group, path.stem)
    for group in GROUPS
    for path in sorted((CONF / group).glob("*.yaml"))
    if not path.stem.startswith("_")
]


def compose_with(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_each_required_group_has_options():
    groups = {group for group, _ in OPTIONS}
    assert groups == set(GROUPS)
    assert {"subject1", "subject2", "hyperaligned", "average", "subject"} <= {o for g, o in OPTIONS if g == "data"}


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_resolves(group, option):
    cfg = compose_with(f"{group}={option}")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["data"]["variant"] in ("subject", "average", "hyperaligned")
    assert resolved["trainer"]["epochs"] >= 1
    assert resolved["protocol"] in ("published", "strict")


def test_defaults_are_the_published_recipe():
    cfg = compose_with()
    assert cfg.trainer.epochs == 1500 and cfg.trainer.batch_size == 30
    assert cfg.optimizer.factory.lr == 1e-5 and cfg.optimizer.factory.weight_decay == 0.01
    assert cfg.data.simulation.n_voxels == 4096 and cfg.data.simulation.n_train == 1050
    assert cfg.data.simulation.n_test == 36 and cfg.data.simulation.repeats == 14


def test_subject_number_override_and_pool_size():
    assert compose_with("data=subject", "data.subject=5").data.subjects == [5]
    assert compose_with("data=subject2").data.subjects == [2]
    assert compose_with("data=hyperaligned", "data.n_subjects=4").data.n_subjects == 4


def test_parts_instantiate():
    cfg = compose_with()
    decoder = instantiate(cfg.decoder, in_features=10, out_features=3)
    optimizer = instantiate(cfg.optimizer.factory)(decoder.parameters())
    generator = instantiate(cfg.generator.model)
    assert decoder.weight.shape == (10, 3)
    assert optimizer.param_groups[0]["lr"] == 1e-5
    assert generator.latent_dim == 512


def test_unknown_option_is_rejected():
    with pytest.raises(Exception, match="nosuch"):
        compose_with("data=nosuch")
