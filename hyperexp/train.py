"""Train a decoder and record the run: ``python -m hyperexp.train [overrides]``.

Build the data, the decoder, the generator and the evaluation from their config groups; fit the
decoder with a preview logger; evaluate the test trials; record everything in one MLflow run.
``-m`` runs a sweep, each job a child of the sweep's parent run (:mod:`hyperexp.track.sweep`).
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from hyperexp.artifacts import save_final_artifacts
from hyperexp.cli import fail, run_app
from hyperexp.config import build, validated
from hyperexp.data import DataShape, planned_shape
from hyperexp.decode import FitContext, History, StopRequested
from hyperexp.decode.checkpoints import Checkpoints
from hyperexp.decode.losses import training_objective
from hyperexp.device import resolve_device
from hyperexp.errors import InputError
from hyperexp.evaluate import EpochMetrics
from hyperexp.generate import render
from hyperexp.preflight import check_before_work
from hyperexp.signals import GracefulStop
from hyperexp.track.outbox import Outbox
from hyperexp.track.preview import PreviewLogger
from hyperexp.track.resume import tag_checkpoint
from hyperexp.track.runs import JobRun, flatten, git_commit, job_run, last_run_id
from hyperexp.track.sweep import record_failed_job, sweep_membership

log = logging.getLogger("hyperexp")


def run(cfg: DictConfig, output_dir: Path, hydra_config: DictConfig | None = None, stop=lambda: False) -> float:
    """One job; returns the final test loss (what a sweeper would minimise)."""
    config = validated(cfg)  # every group's types, ranges and choices
    settings = config.trainer
    device = resolve_device(settings.device)
    decoder = build(cfg.decoder)
    generator = build(cfg.generator.model).to(device).eval()
    evaluation = build(cfg.evaluate)
    context = FitContext(settings, loss=training_objective(generator, settings), stop_requested=stop)
    check_parts_agree(planned_shape(**vars(config.data)), decoder, generator, evaluation, context)
    check_before_work(cfg, output_dir)  # the store, where it writes, what it resumes: before anything is written
    data = build(cfg.data, device=device)
    x_train, t_train, x_test, t_test = (torch.as_tensor(array, device=device) for array in data.arrays())

    sweep_tags, parent_id = sweep_membership(hydra_config)
    name = cfg.tracking.run_name or f"{data.name}-{decoder_choice(hydra_config, decoder)}"
    tags = {**data.tags(), **sweep_tags, "seed": str(settings.seed), "output_dir": str(output_dir)}
    tags["mlflow.source.git.commit"] = git_commit(Path(__file__).parent)  # MLflow's own tag: the UI shows it
    params = flatten(OmegaConf.to_container(cfg, resolve=True))
    with job_run(cfg.tracking, name, tags, params, settings.resume, parent_id, output_dir) as job:
        log.info("MLflow run %s (%s) in experiment '%s'", job.run_id, name, cfg.tracking.experiment)
        shown, batch_size = slice(0, settings.preview_trials), cfg.generator.batch_size
        context.resume_from = job.resume_from
        context.monitor = EpochMetrics(x_test, t_test)
        context.logger = PreviewLogger(job, generator, x_test[shown], t_test[shown], batch_size, settings.preview_size)
        tag = functools.partial(tag_checkpoint, job.outbox)
        context.checkpoints = Checkpoints(output_dir / "checkpoints" / "last.pt", settings.checkpoint_every, tag)
        history = decoder.fit(x_train, t_train, context)

        with torch.no_grad():
            predicted = decoder.predict(x_test)
        stimuli, reconstructions = (render(generator, z, batch_size) for z in (t_test, predicted))
        results = evaluation(data.t_test, predicted.cpu().numpy(), stimuli, reconstructions, generator)
        record_results(job, results, history, decoder.fitted_summary(), context.logger.seconds)
        save_final_artifacts(output_dir / "artifacts", stimuli, reconstructions, predicted, decoder, history)
        record_provenance(job.outbox, cfg, hydra_config, output_dir / "artifacts")
    log.info(
        "latent similarity %.4f, SSIM %.4f; outputs in %s", results["latent_similarity"], results["ssim"], output_dir
    )
    return float(history.test_loss[-1])


def record_results(job: JobRun, results: dict, history: History, fitted: dict, logging_seconds: float) -> None:
    """End-of-run metrics, what the decoder chose, and what training and logging cost."""
    step = history.epochs_done
    losses = {"final_test_loss": float(history.test_loss[-1]), "final_train_loss": float(history.train_loss[-1])}
    job.metrics.add({f"final/{key}": value for key, value in {**results, **losses}.items()}, step)
    job.metrics.add({f"decoder/{key}": value for key, value in fitted.items()}, step)
    timing = {"fit_seconds": history.seconds, "logging_seconds": logging_seconds}
    job.metrics.add({f"timing/{key}": value for key, value in timing.items()}, step)
    job.metrics.flush()


def record_provenance(outbox: Outbox, cfg: DictConfig, hydra_config: DictConfig | None, artifacts: Path) -> None:
    """The run's own resolved config and command-line overrides, beside its artifacts."""
    (artifacts / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    overrides = list(hydra_config.overrides.task) if hydra_config is not None else []
    (artifacts / "overrides.yaml").write_text(OmegaConf.to_yaml(overrides))
    outbox.log_artifacts(artifacts)


def check_parts_agree(data: DataShape, decoder, generator, evaluation, context: FitContext) -> None:
    """Refuse parts that cannot work together, before any data are made or any MLflow run exists."""
    if generator.latent_dim != data.latent_dim:
        raise InputError(f"generator.model: takes {generator.latent_dim}-d latents, the data have {data.latent_dim}-d")
    if data.n_test < 2:
        raise InputError(f"data: the metrics need at least 2 test trials, got {data.n_test}")
    evaluation.check_latent_dim(data.latent_dim)
    decoder.check_fits(data.n_train, context)


def decoder_choice(hydra_config: DictConfig | None, decoder) -> str:
    """The decoder's config option (``adam``, ``ridge``), or its class outside a Hydra app."""
    choices = hydra_config.runtime.choices if hydra_config is not None else {}
    return choices.get("decoder") or type(decoder).__name__


# An absolute path: the app finds conf/ when run as a module's function too (tests, other entry points).
@hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parents[1] / "conf"), config_name="config")
def main(cfg: DictConfig) -> float | None:
    hydra_config = HydraConfig.get()
    output_dir = Path(hydra_config.runtime.output_dir)
    multirun = hydra_config.mode.name == "MULTIRUN"
    try:
        return run(cfg, output_dir, hydra_config, stop=GracefulStop().install())
    except StopRequested as stopped:
        run_id = last_run_id() or "<run id>"
        print(f"hyperexp: stopped after epoch {stopped.epoch}; continue with trainer.resume={run_id}", file=sys.stderr)
        sys.exit(130)
    except Exception as error:
        if not multirun and isinstance(error, InputError):
            fail(error)
        if not multirun:
            raise  # a bug: keep the traceback
        # A sweep records the failure and goes on; its end reports every failed job.
        log.error("job %d failed: %s", hydra_config.job.num, error, exc_info=not isinstance(error, InputError))
        record_failed_job(output_dir, hydra_config.job.num, list(hydra_config.overrides.task), str(error))
        return None


if __name__ == "__main__":
    run_app(main)
