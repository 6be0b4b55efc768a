"""Run names: short (the runs table shows about 17 characters), what tells a run apart first, and
a sweep's parent named so that two sweeps of one experiment read differently."""

from datetime import datetime

from omegaconf import OmegaConf

from hyperexp.track.naming import compact_key, curated_params, job_name, sweep_run_name

CFG = OmegaConf.create(
    {
        "trainer": {"seed": 0, "epochs": 60},
        "decoder": {"optimizer": {"lr": 0.001, "weight_decay": 0.01}},
        "data": {"protocol": "published", "simulation": {"seed": 2, "noise": 2.0}},
        "experiment": "paper",
    }
)
CHOICES = {"data": "subject1", "decoder": "adam", "experiment": "paper"}


def name(task, swept):
    return job_name(CFG, CHOICES, task, swept, "subject1", "adam")


def test_a_sweep_job_is_named_by_its_swept_values_first():
    task = ["experiment=paper", "data=subject1", "data.simulation.seed=2"]
    assert name(task, ["data", "data.simulation.seed"]) == "subject1·sim2·adam·s0"
    task = ["experiment=paper", "decoder.optimizer.lr=0.001", "data.simulation.noise=2.0"]
    assert name(task, ["decoder.optimizer.lr"]) == "lr=0.001·subject1·adam·s0"  # only swept keys, first
    assert name(["trainer.seed=0"], ["trainer.seed"]) == "s0·subject1·adam"


def test_a_single_run_is_named_by_data_decoder_seed_then_its_command_line():
    task = ["experiment=paper", "decoder.optimizer.lr=0.001", "tracking.note=x", "trainer.progress=false"]
    assert name(task, None) == "subject1·adam·s0·paper·lr=0.001"  # what changes no result is left out
    assert name([], None) == "subject1·adam·s0"


def test_keys_are_named_by_their_last_part_unless_two_share_it():
    assert compact_key("decoder.optimizer.lr") == "lr"
    assert compact_key("data.simulation.seed", ["trainer.seed", "data.simulation.seed"]) == "simulation.seed"
    assert compact_key("a.x.size", ["a.x.size", "b.size"]) == "x.size"


def test_two_sweeps_of_one_experiment_have_different_short_names():
    swept = {"data": "subject1,subject2,average,hyperaligned", "data.simulation.seed": "0,1,2,3"}
    first = sweep_run_name(["experiment=paper"], swept, datetime(2026, 12, 5, 7, 46, 12))
    second = sweep_run_name(["experiment=paper"], swept, datetime(2026, 12, 5, 8, 3, 0))
    assert first == "paper 07:46:12 data×4·sim×4"
    assert first[:14] != second[:14]  # the time, within what the runs table shows
    search = {"decoder.optimizer.lr": "tag(log, interval(1e-6, 1e-3))", "trainer.epochs": "choice(300, 1000)"}
    assert sweep_run_name(["hparams_search=adam"], search, datetime(2026, 1, 1, 9)) == "adam search 09:00:00 lr·epochs"
    assert sweep_run_name([], {"trainer.seed": "0,1"}, datetime(2026, 1, 1, 9)) == "sweep 09:00:00 seed×2"


def test_params_are_few_and_the_protocol_shows_only_where_it_is_not_the_published_one():
    config = OmegaConf.to_container(CFG)
    params = curated_params(config, CHOICES, [])
    assert params == {
        "experiment": "paper",
        "data": "subject1",
        "decoder": "adam",
        "decoder.optimizer.lr": "0.001",
        "trainer.epochs": "60",
        "trainer.seed": "0",
    }
    config["data"]["protocol"] = "strict"
    assert curated_params(config, CHOICES, [])["data.protocol"] == "strict"
