"""Train a decoder and record the run: ``python -m hyperexp.train [overrides]``.

Build the data, the decoder, the generator and the evaluation from their config groups; fit the
decoder with a preview logger; evaluate the test trials; record everything in one MLflow run.
``-m`` runs a sweep, each job a child of the sweep's parent run (:mod:`hyperexp.sweep`).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from hyperexp.artifacts import save_attribute_correlations, save_final_artifacts, save_per_trial
from hyperexp.cli import fail, run_app
from hyperexp.config import build, validated
from hyperexp.data import DataShape, planned_shape
from hyperexp.decode import FitContext, History, StopRequested
from hyperexp.decode.checkpoints import Checkpoints
from hyperexp.decode.losses import training_objective
from hyperexp.device import resolve_device
from hyperexp.errors import InputError
from hyperexp.evaluate import EpochMetrics
from hyperexp.evaluate.convergence import tail_drop
from hyperexp.evaluate.trials import PER_TRIAL_FILE, stimulus_set_key
from hyperexp.generate import check_precision, render
from hyperexp.preflight import check_before_work
from hyperexp.signals import GracefulStop
from hyperexp.threads import apply_thread_budget, thread_budget
from hyperexp.track.naming import job_identity
from hyperexp.track.preview import PreviewLogger
from hyperexp.track.runs import Run
from hyperexp.track.sweep import record_failed_job

log = logging.getLogger("hyperexp")
ATTRIBUTE_PREFIX = "attr_r/"  # per-attribute correlations from Evaluation: a table, not metrics


def run(cfg: DictConfig, output_dir: Path, hydra_config: DictConfig | None = None, stop=lambda: False) -> float | None:
    """One job; returns the final validation loss (what ``hparams_search`` minimises; never a test
    metric), or None without a validation split (``data.validation_trials``)."""
    config = validated(cfg)  # every group's types, ranges and choices
    settings = config.trainer
    threads = thread_budget(settings.threads, hydra_config)
    apply_thread_budget(threads)
    device = resolve_device(settings.device)
    decoder = build(cfg.decoder)
    generator = build(cfg.generator.model).to(device).eval()
    evaluation = build(cfg.evaluate)
    tracker = build(cfg.tracking)
    context = FitContext(settings, loss=training_objective(generator, settings), stop_requested=stop)
    check_parts_agree(planned_shape(**vars(config.data)), decoder, generator, evaluation, context)
    tracker.check(settings.resume, OmegaConf.to_container(cfg, resolve=True))  # the store, what it resumes
    check_before_work(cfg, output_dir)  # where it writes: before anything is written
    data = build(cfg.data, device=device)
    splits = {name: tuple(torch.as_tensor(a, device=device) for a in rows) for name, rows in data.splits().items()}
    (x_train, t_train), (x_test, t_test) = splits.pop("train"), splits["test"]  # splits: the held-out rows

    job = job_identity(cfg, hydra_config, data, decoder_choice(hydra_config, decoder), output_dir)
    job.tags["threads"] = str(threads)
    job.tags["test_set"] = stimulus_set_key(data.t_test)  # runs with equal keys pair trial by trial in reports
    with tracker.start(job, settings.resume, output_dir) as run_:
        log.info("MLflow run %s (%s) in experiment '%s'", run_.run_id, job.name, tracker.experiment)
        run_.log_datasets(data)
        shown, batch_size = slice(0, settings.preview_trials), cfg.generator.batch_size
        context.resume_from = run_.resume_from
        context.monitor = EpochMetrics(splits)
        context.logger = PreviewLogger(run_, generator, x_test[shown], t_test[shown], batch_size, settings.preview_size)
        checkpoint = output_dir / "checkpoints" / "last.pt"
        context.checkpoints = Checkpoints(checkpoint, settings.checkpoint_every, run_.tag_checkpoint)
        try:
            history = decoder.fit(x_train, t_train, context).history_
        except StopRequested as stopped:
            stopped.run_id = run_.run_id  # for the message that says how to continue
            raise
        warn_if_still_falling(history)

        with torch.no_grad():
            predicted = decoder.predict(x_test)
        stimuli, reconstructions = (render(generator, z, batch_size) for z in (t_test, predicted))
        results, trials = evaluation(
            data.t_test, predicted.cpu().numpy(), stimuli, reconstructions, generator, batch_size
        )
        with run_.staged_artifacts() as folder:
            summary = record_results(run_, folder, results, history, decoder.fitted_summary(), context.logger.seconds)
            save_final_artifacts(folder, stimuli, reconstructions, predicted, history)
            save_per_trial(folder / PER_TRIAL_FILE, trials)
        run_.log_model(decoder, data.x_train[:2], summary, model_description(job.name, data, history))
    output_dir.mkdir(parents=True, exist_ok=True)
    np.save(output_dir / "predicted_latents.npy", predicted.cpu().numpy())  # the job's result, for `generate render`
    log.info("latent similarity %.4f, SSIM %.4f; run %s", results["latent_similarity"], results["ssim"], job.name)
    return validation_loss(history)


def record_results(run_: Run, folder: Path, results: dict, history: History, fitted: dict, logging_s: float):
    """End-of-run summary metrics (``test/*``, ``validation/loss``) logged once (and returned, for
    the model); the attribute correlations as a table and a figure in ``folder`` with their mean as
    ``test/attribute_similarity``; what the decoder chose; and what training and logging cost, as tags."""
    step = 0  # one value per run, at step 0: MLflow's chart view compares runs on it in a bar chart
    correlations = {k.removeprefix(ATTRIBUTE_PREFIX): v for k, v in results.items() if k.startswith(ATTRIBUTE_PREFIX)}
    summary = {f"test/{key}": value for key, value in results.items() if not key.startswith(ATTRIBUTE_PREFIX)}
    if (loss := validation_loss(history)) is not None:
        summary["validation/loss"] = loss
    logged = run_.log_metrics(summary, step)
    run_.log_metrics({f"decoder/{key}": value for key, value in fitted.items()}, step)
    run_.flush()
    timing = {"fit_seconds": history.seconds, "logging_seconds": logging_s}
    run_.set_tags({key: f"{value:.2f}" for key, value in timing.items()})
    if correlations:
        save_attribute_correlations(folder, correlations)
    return logged


def model_description(name: str, data, history: History) -> str:
    """What the logged model is, in the UI's description field."""
    return (
        f"The decoder of run `{name}`: fMRI responses ({data.x_train.shape[1]} features, float32) to "
        f"{data.t_train.shape[1]}-d generator latents; fitted on {len(data.x_train)} trials of {data.name} "
        f"for {history.epochs_done} epochs. Its metrics are the run's test metrics. "
        "Load it with `mlflow.pyfunc.load_model(model_uri).predict(x)`."
    )


def validation_loss(history: History) -> float | None:
    values = history.metrics.get("validation_loss")
    return None if values is None else float(values[history.epochs_done - 1])


def warn_if_still_falling(history: History) -> None:
    """Say so when the test loss was still falling at the end: such a run compares nothing yet."""
    drop = tail_drop(history.test_loss.tolist())
    if drop is not None and drop.still_falling:
        log.warning(
            "test loss still falling: the last %d of %d epochs made %.0f%% of its improvement; results are "
            "preliminary (trainer=quick is for smoke tests only)",
            drop.tail_epochs,
            history.epochs_done,
            100 * drop.fraction,
        )


def check_parts_agree(data: DataShape, decoder, generator, evaluation, context: FitContext) -> None:
    """Refuse parts that cannot work together, before any data are made or any MLflow run exists."""
    if generator.latent_dim != data.latent_dim:
        raise InputError(f"generator.model: takes {generator.latent_dim}-d latents, the data have {data.latent_dim}-d")
    if data.n_test < 2:
        raise InputError(f"data: the metrics need at least 2 test trials, got {data.n_test}")
    check_precision(generator)
    evaluation.check_latent_dim(data.latent_dim)
    evaluation.check_image_size(generator.image_size)
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
        run_id = getattr(stopped, "run_id", "<run id>")
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
