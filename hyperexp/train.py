"""Train a decoder and track the run: ``python -m hyperexp.train [overrides]``.

data -> (align) -> decode -> generate -> evaluate -> track, configured by Hydra (``conf/``),
one MLflow run per job. ``-m`` runs a sweep, e.g. ``-m data=subject1,subject2,hyperaligned``;
each job is then a child of the sweep's parent run (see :mod:`hyperexp.sweep`).
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path

import hydra
import mlflow
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from hyperexp.artifacts import save_final_artifacts
from hyperexp.data import DecodingData, Simulation, load_subjects, prepare, select_subjects
from hyperexp.decode import fit_closed_form
from hyperexp.decode.model import FeatureMatchingLoss, l2_loss
from hyperexp.decode.trainer import History, StopRequested, train_decoder
from hyperexp.device import resolve_device
from hyperexp.evaluate import cheap_latent_metrics, final_metrics, image_metrics
from hyperexp.evaluate.grids import comparison_grid
from hyperexp.generate import render, to_uint8
from hyperexp.sweep import job_group, read_sweep_file, record_failed_job
from hyperexp.track import MetricBuffer, flatten, git_commit, log_params, setup_experiment, tracked_run

log = logging.getLogger("hyperexp")


class GracefulStop:
    """SIGINT/SIGTERM ask training to stop at the next epoch boundary (after a checkpoint);
    a second signal stops at once."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt(f"signal {signum} again: stopping now")
        self.requested = True
        log.warning("signal %d: stopping after this epoch (send it again to stop at once)", signum)

    def __call__(self) -> bool:
        return self.requested


def build(node: DictConfig, *args, **kwargs):
    """``hydra.utils.instantiate``, re-raising a target's own ValueError (bad input such as a
    corrupt weights file) unwrapped, so it reaches the user as one line."""
    try:
        return instantiate(node, *args, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, ValueError):
            raise error.__cause__ from None
        raise


def check_trainer_config(trainer: DictConfig) -> None:
    """Fail before any work or MLflow run on settings that cannot work."""
    for key in ("epochs", "batch_size", "log_every", "preview_trials"):
        value = trainer[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"trainer.{key} must be a positive integer, got {value!r}")
    if not isinstance(trainer.checkpoint_every, int) or trainer.checkpoint_every < 0:
        raise ValueError(f"trainer.checkpoint_every must be >= 0, got {trainer.checkpoint_every!r}")


def load_data(cfg: DictConfig, device: torch.device) -> DecodingData:
    data_cfg = cfg.data
    subject_numbers = select_subjects(data_cfg.subjects, data_cfg.n_subjects)
    subjects, paths = load_subjects(
        subject_numbers,
        source=data_cfg.source,
        root=data_cfg.root,
        simulation=Simulation(**OmegaConf.to_container(data_cfg.simulation)),
        cache_dir=data_cfg.cache_dir,
    )
    data = prepare(
        subjects,
        data_cfg.variant,
        cfg.protocol,
        names=[str(p) for p in paths],
        device=device,
        cache_dir=Path(data_cfg.cache_dir) / "aligned",
    )
    data.info["subject_numbers"] = subject_numbers
    return data


def job_tags(cfg: DictConfig, data: DecodingData, output_dir: Path) -> tuple[dict[str, str], str | None]:
    """Tags of this job's run, and its parent run id when it is part of a sweep."""
    tags = {
        "data_variant": data.info["variant"],
        "subjects": ",".join(map(str, data.info["subject_numbers"])),
        "pool_size": str(len(data.info["subject_numbers"])),
        "protocol": cfg.protocol,
        "seed": str(cfg.trainer.seed),
        "git_commit": git_commit(Path(__file__).parent),
        "output_dir": str(output_dir),
        "sweep": "none",
    }
    hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
    sweep = read_sweep_file(hydra_cfg.sweep.dir) if hydra_cfg and hydra_cfg.mode.name == "MULTIRUN" else None
    if sweep is None:
        return tags, None
    overrides = list(hydra_cfg.overrides.task)
    tags.update(sweep=sweep["sweep"], group=job_group(overrides, sweep["swept_keys"]), job=str(hydra_cfg.job.num))
    return tags, sweep["parent_run_id"]


def resume_state(run_id: str, cfg: DictConfig) -> dict:
    """The last checkpoint of run ``run_id``, after checking the run was made with this config."""
    run = mlflow.MlflowClient().get_run(run_id)
    path = run.data.tags.get("checkpoint")
    if not path or not Path(path).is_file():
        raise ValueError(f"trainer.resume={run_id}: that run has no checkpoint on disk (tag 'checkpoint': {path})")
    ignored = ("trainer.resume", "trainer.progress", "tracking.", "hydra.")
    current = {k: v for k, v in flatten(OmegaConf.to_container(cfg, resolve=True)).items() if not k.startswith(ignored)}
    logged = {k: v for k, v in run.data.params.items() if not k.startswith(ignored)}
    differing = sorted(k for k in current.keys() | logged.keys() if current.get(k) != logged.get(k))
    if differing:
        raise ValueError(f"trainer.resume={run_id}: config differs from the run's in {', '.join(differing[:5])}")
    return torch.load(path, map_location="cpu", weights_only=True)


def evaluate_once(model, x_train, t_train, x_test, t_test) -> History:
    """A one-step history for a closed-form decoder (same metric names as training)."""
    with torch.no_grad():
        prediction = model(x_test)
        values = {
            "train_loss": l2_loss(model(x_train), t_train),
            "test_loss": l2_loss(prediction, t_test),
            **cheap_latent_metrics(prediction, t_test),
        }
    return History({name: value.reshape(1).cpu() for name, value in values.items()}, epochs_done=1)


def run(cfg: DictConfig, output_dir: Path, should_stop=None) -> float:
    """One training job; returns the final test loss (what a sweeper would minimise)."""
    trainer_cfg, generator_cfg = cfg.trainer, cfg.generator
    check_trainer_config(trainer_cfg)
    device = resolve_device(trainer_cfg.device)
    data = load_data(cfg, device)
    if "solver" not in cfg.optimizer and trainer_cfg.batch_size > len(data.x_train):
        raise ValueError(
            f"trainer.batch_size={trainer_cfg.batch_size} is larger than the training set ({len(data.x_train)} trials)"
        )
    generator = build(generator_cfg.model).to(device).eval()
    if generator.latent_dim != data.t_train.shape[1]:
        raise ValueError(
            f"the generator takes {generator.latent_dim}-d latents, the data have {data.t_train.shape[1]}-d"
        )

    experiment_id = setup_experiment(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.artifact_root)
    resume_id = trainer_cfg.resume
    resumed = resume_state(resume_id, cfg) if resume_id else None
    tags, parent_id = job_tags(cfg, data, output_dir)
    run_name = cfg.tracking.run_name or f"{cfg.data.name}-{cfg.optimizer.name}"
    with tracked_run(experiment_id, run_name, tags, run_id=resume_id, parent_run_id=parent_id) as active:
        run_id = active.info.run_id
        log.info("MLflow run %s (%s) in experiment '%s'", run_id, run_name, cfg.tracking.experiment)
        if resumed is None:
            log_params(run_id, flatten(OmegaConf.to_container(cfg, resolve=True)))
        torch.manual_seed(trainer_cfg.seed)
        x_train, t_train, x_test, t_test = (
            torch.as_tensor(array, device=device) for array in (data.x_train, data.t_train, data.x_test, data.t_test)
        )
        metrics = MetricBuffer(run_id)
        preview = slice(0, min(trainer_cfg.preview_trials, len(t_test)))
        preview_stimuli = render(generator, t_test[preview], generator_cfg.batch_size, generator_cfg.preview_size)
        preview_stimuli_uint8 = to_uint8(preview_stimuli)  # the top row of every preview grid
        logged_epochs = resumed["epoch"] if resumed else 0
        logging_seconds = 0.0

        def on_log(epoch: int, history: History) -> None:
            nonlocal logged_epochs, logging_seconds
            started = time.perf_counter()
            for index in range(logged_epochs, epoch):
                metrics.add(history.at(index), index + 1)
            logged_epochs = epoch
            with torch.no_grad():
                predicted = model(x_test[preview])
            images = render(generator, predicted, generator_cfg.batch_size, generator_cfg.preview_size)
            mlflow.log_image(
                comparison_grid(preview_stimuli_uint8, to_uint8(images)), key="reconstructions", step=epoch
            )
            if len(images) >= 2:  # identification needs two trials
                preview_metrics = image_metrics((preview_stimuli + 1) / 2, (images.clamp(-1, 1) + 1) / 2)
                metrics.add({f"preview_{name}": value for name, value in preview_metrics.items()}, epoch)
            metrics.flush()
            logging_seconds += time.perf_counter() - started

        fit_started = time.perf_counter()
        if "solver" in cfg.optimizer:
            model, solver_info = fit_closed_form(build(cfg.optimizer.solver), data.x_train, data.t_train)
            model = model.to(device)
            history = evaluate_once(model, x_train, t_train, x_test, t_test)
            metrics.add(solver_info, 1)
            on_log(1, history)
        else:
            model = build(cfg.decoder, in_features=x_train.shape[1], out_features=t_train.shape[1]).to(device)
            optimizer = build(cfg.optimizer.factory)(model.parameters())
            feature_loss = trainer_cfg.feature_loss
            loss_fn = (
                FeatureMatchingLoss(generator, feature_loss.layer, feature_loss.weight)
                if feature_loss.weight
                else l2_loss
            )
            if trainer_cfg.compile and loss_fn is not l2_loss:
                # The published recipe's analytic step has nothing to compile; a generator in the loss does.
                loss_fn = torch.compile(loss_fn)
            checkpoint_path = output_dir / "checkpoints" / "last.pt"

            def save_checkpoint(state: dict) -> None:
                checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(state, checkpoint_path.with_suffix(".tmp"))
                checkpoint_path.with_suffix(".tmp").replace(checkpoint_path)  # never a half-written checkpoint
                mlflow.set_tag("checkpoint", str(checkpoint_path))

            history = train_decoder(
                model,
                optimizer,
                x_train,
                t_train,
                x_test,
                t_test,
                epochs=trainer_cfg.epochs,
                batch_size=trainer_cfg.batch_size,
                seed=trainer_cfg.seed,
                log_every=trainer_cfg.log_every,
                on_log=on_log,
                test_metrics=cheap_latent_metrics,
                progress=trainer_cfg.progress,
                checkpoint_every=trainer_cfg.checkpoint_every,
                loss_fn=loss_fn,
                on_checkpoint=save_checkpoint,
                resume_from=resumed,
                should_stop=should_stop,
            )

        fit_seconds = time.perf_counter() - fit_started
        with torch.no_grad():
            predicted = model(x_test)
        stimuli = render(generator, t_test, generator_cfg.batch_size)
        reconstructions = render(generator, predicted, generator_cfg.batch_size)
        results = final_metrics(
            data.t_test,
            predicted.cpu().numpy(),
            stimuli,
            reconstructions,
            generator,
            attribute_boundaries=cfg.evaluate.attribute_boundaries,
            feature_extractor=cfg.evaluate.feature_extractor,
        )
        last = history.epochs_done - 1
        results.update(final_test_loss=float(history.test_loss[last]), final_train_loss=float(history.train_loss[last]))
        metrics.add({f"final/{name}": value for name, value in results.items()}, history.epochs_done)
        # What the periodic logging (grids, preview metrics, metric uploads) cost within the fit
        metrics.add(
            {
                "timing/fit_seconds": fit_seconds,
                "timing/logging_seconds": logging_seconds,
                "timing/logging_fraction": logging_seconds / fit_seconds,
            },
            history.epochs_done,
        )
        metrics.flush()
        save_final_artifacts(output_dir / "artifacts", stimuli, reconstructions, predicted, model, history)
        mlflow.log_artifacts(str(output_dir / "artifacts"))
        if (output_dir / ".hydra").is_dir():
            mlflow.log_artifacts(str(output_dir / ".hydra"), "hydra")
        log.info(
            "test loss %.5f, latent similarity %.4f, SSIM %.4f; outputs in %s",
            results["final_test_loss"],
            results["latent_similarity"],
            results["ssim"],
            output_dir,
        )
    return results["final_test_loss"]


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    stop = GracefulStop()
    stop.install()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        return run(cfg, output_dir, should_stop=stop)
    except StopRequested as stopped:
        run_id = mlflow.last_active_run().info.run_id if mlflow.last_active_run() else "<run id>"
        print(f"hyperexp: stopped after epoch {stopped.epoch}; continue with trainer.resume={run_id}", file=sys.stderr)
        sys.exit(130)
    except Exception as error:
        bad_input = isinstance(error, ValueError)  # bad input or settings: one clear line, no traceback
        message = str(error) if bad_input else f"{type(error).__name__}: {error}"
        if hydra_cfg.mode.name == "MULTIRUN":
            # Record the failure and let the sweep go on; its end reports every failed job.
            log.error("job %d failed: %s", hydra_cfg.job.num, message, exc_info=not bad_input)
            record_failed_job(output_dir, hydra_cfg.job.num, list(hydra_cfg.overrides.task), message)
            return None
        if not bad_input:
            raise
        log.error("%s", message)
        print(f"hyperexp: error: {message}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
