"""Train a decoder and record the run: ``python -m hyperexp.train [overrides]``.

Build the data, the decoder, the generator and the evaluation from their config groups; fit the
decoder with a preview logger; evaluate the test trials; record everything in one MLflow run.
``-m`` runs a sweep, each job a child of the sweep's parent run (:mod:`hyperexp.track.sweep`).
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from pathlib import Path

import hydra
import mlflow
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from hyperexp.artifacts import save_final_artifacts
from hyperexp.config import build, validated
from hyperexp.decode import FitContext, StopRequested
from hyperexp.decode.checkpoints import Checkpoints
from hyperexp.decode.losses import training_objective
from hyperexp.device import resolve_device
from hyperexp.errors import InputError
from hyperexp.evaluate import EpochMetrics
from hyperexp.generate import render
from hyperexp.signals import GracefulStop
from hyperexp.track.preview import PreviewLogger
from hyperexp.track.resume import checkpoint_of, tag_checkpoint
from hyperexp.track.runs import MetricBuffer, flatten, git_commit, log_params, tracked_run
from hyperexp.track.store import setup_experiment
from hyperexp.track.sweep import record_failed_job, sweep_membership

log = logging.getLogger("hyperexp")


def run(cfg: DictConfig, output_dir: Path, hydra_config: DictConfig | None = None, stop=lambda: False) -> float:
    """One job; returns the final test loss (what a sweeper would minimise)."""
    settings = validated(cfg.trainer)
    device = resolve_device(settings.device)
    data = build(cfg.data, device=device)
    decoder = build(cfg.decoder)
    generator = build(cfg.generator.model).to(device).eval()
    evaluation = build(cfg.evaluate)
    feature_loss = settings.feature_loss
    objective = training_objective(generator, feature_loss.weight, feature_loss.layer, settings.compile)
    context = FitContext(settings, loss=objective, stop_requested=stop)
    check_parts_agree(data, decoder, generator, evaluation, context)
    x_train, t_train, x_test, t_test = (torch.as_tensor(a, device=device) for a in data.arrays())

    experiment_id = setup_experiment(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.artifact_root)
    params = flatten(OmegaConf.to_container(cfg, resolve=True))
    context.resume_from = checkpoint_of(settings.resume, params) if settings.resume else None
    sweep_tags, parent_id = sweep_membership(hydra_config)
    name = cfg.tracking.run_name or f"{data.name}-{decoder_choice(hydra_config, decoder)}"
    tags = {**data.tags(), **sweep_tags, "seed": str(settings.seed), "output_dir": str(output_dir)}
    tags["git_commit"] = git_commit(Path(__file__).parent)
    with tracked_run(experiment_id, name, tags, run_id=settings.resume, parent_run_id=parent_id) as active:
        run_id = active.info.run_id
        log.info("MLflow run %s (%s) in experiment '%s'", run_id, name, cfg.tracking.experiment)
        if context.resume_from is None:
            log_params(run_id, params)
        metrics = MetricBuffer(run_id)
        shown = slice(0, settings.preview_trials)
        batch_size = cfg.generator.batch_size
        context.monitor = EpochMetrics(x_test, t_test)
        context.logger = PreviewLogger(
            metrics, generator, x_test[shown], t_test[shown], batch_size, settings.preview_size
        )
        context.logger.logged_epochs = context.resume_from["epoch"] if context.resume_from else 0
        on_save = functools.partial(tag_checkpoint, run_id)
        context.checkpoints = Checkpoints(output_dir / "checkpoints" / "last.pt", settings.checkpoint_every, on_save)

        started = time.perf_counter()
        history = decoder.fit(x_train, t_train, context)
        fit_seconds = time.perf_counter() - started

        with torch.no_grad():
            predicted = decoder.predict(x_test)
        stimuli, reconstructions = (render(generator, z, batch_size) for z in (t_test, predicted))
        results = evaluation(data.t_test, predicted.cpu().numpy(), stimuli, reconstructions, generator)
        results.update(final_test_loss=float(history.test_loss[-1]), final_train_loss=float(history.train_loss[-1]))
        metrics.add({f"final/{key}": value for key, value in results.items()}, history.epochs_done)
        metrics.add({f"decoder/{key}": value for key, value in decoder.fitted_summary().items()}, history.epochs_done)
        timing = {"fit_seconds": fit_seconds, "logging_seconds": context.logger.seconds}
        metrics.add({f"timing/{key}": value for key, value in timing.items()}, history.epochs_done)
        metrics.flush()
        save_final_artifacts(output_dir / "artifacts", stimuli, reconstructions, predicted, decoder, history)
        mlflow.log_artifacts(str(output_dir / "artifacts"))
        if (output_dir / ".hydra").is_dir():
            mlflow.log_artifacts(str(output_dir / ".hydra"), "hydra")
        log.info(
            "test loss %.5f, latent similarity %.4f, SSIM %.4f; outputs in %s",
            *(results[key] for key in ("final_test_loss", "latent_similarity", "ssim")),
            output_dir,
        )
    return results["final_test_loss"]


def check_parts_agree(data, decoder, generator, evaluation, context: FitContext) -> None:
    """Refuse parts that cannot work together, before any MLflow run exists."""
    latent_dim = data.t_train.shape[1]
    if generator.latent_dim != latent_dim:
        raise InputError(f"generator.model: takes {generator.latent_dim}-d latents, the data have {latent_dim}-d")
    if len(data.x_test) < 2:
        raise InputError(f"data: the metrics need at least 2 test trials, got {len(data.x_test)}")
    evaluation.check_latent_dim(latent_dim)
    decoder.check_fits(len(data.x_train), context)


def decoder_choice(hydra_config: DictConfig | None, decoder) -> str:
    """The decoder's config option (``adam``, ``ridge``), or its class outside a Hydra app."""
    choices = hydra_config.runtime.choices if hydra_config is not None else {}
    return choices.get("decoder") or type(decoder).__name__


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    hydra_config = HydraConfig.get()
    output_dir = Path(hydra_config.runtime.output_dir)
    multirun = hydra_config.mode.name == "MULTIRUN"
    try:
        return run(cfg, output_dir, hydra_config, stop=GracefulStop().install())
    except StopRequested as stopped:
        last = mlflow.last_active_run()
        run_id = last.info.run_id if last else "<run id>"
        print(f"hyperexp: stopped after epoch {stopped.epoch}; continue with trainer.resume={run_id}", file=sys.stderr)
        sys.exit(130)
    except Exception as error:
        if not multirun and isinstance(error, InputError):
            print(f"hyperexp: error: {error}", file=sys.stderr)
            sys.exit(1)
        if not multirun:
            raise  # a bug: keep the traceback
        # A sweep records the failure and goes on; its end reports every failed job.
        log.error("job %d failed: %s", hydra_config.job.num, error, exc_info=not isinstance(error, InputError))
        record_failed_job(output_dir, hydra_config.job.num, list(hydra_config.overrides.task), str(error))
        return None


if __name__ == "__main__":
    main()
