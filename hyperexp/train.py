"""Train a decoder and track the run: ``python -m hyperexp.train [overrides]``.

data -> (align) -> decode -> generate -> evaluate -> track, configured by Hydra (``conf/``),
one MLflow run per job. ``-m`` runs a sweep, e.g. ``-m data=subject1,subject2,hyperaligned``.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import hydra
import matplotlib

matplotlib.use("Agg")  # headless: figures are only written to files
import matplotlib.pyplot as plt
import mlflow
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from hyperexp.data import DecodingData, Simulation, load_subjects, prepare, select_subjects
from hyperexp.decode.trainer import History, resolve_device, train_decoder
from hyperexp.evaluate import cheap_latent_metrics, final_metrics, image_metrics
from hyperexp.evaluate.grids import comparison_grid
from hyperexp.generate import render, to_uint8
from hyperexp.track import MetricBuffer, flatten, git_commit, log_params, setup_experiment, tracked_run

log = logging.getLogger("hyperexp")


def check_trainer_config(trainer: DictConfig) -> None:
    """Fail before any work or MLflow run on settings that cannot work."""
    for key in ("epochs", "batch_size", "log_every", "preview_trials"):
        value = trainer[key]
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"trainer.{key} must be a positive integer, got {value!r}")


def load_data(cfg: DictConfig, device: torch.device) -> DecodingData:
    data_cfg = cfg.data
    subject_numbers = select_subjects(data_cfg.subjects, data_cfg.n_subjects)
    simulation = Simulation(**OmegaConf.to_container(data_cfg.simulation))
    subjects, paths = load_subjects(
        subject_numbers,
        source=data_cfg.source,
        root=data_cfg.root,
        simulation=simulation,
        cache_dir=data_cfg.cache_dir,
    )
    data = prepare(subjects, data_cfg.variant, cfg.protocol, names=[str(p) for p in paths], device=device,
                   cache_dir=Path(data_cfg.cache_dir) / "aligned")  # fmt: skip
    data.info["subject_numbers"] = subject_numbers
    return data


def save_png(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def plot_losses(history: History, path: Path) -> Path:
    epochs = np.arange(1, history.epochs_done + 1)
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(epochs, history.train_loss[: history.epochs_done], label="train")
    axes.plot(epochs, history.test_loss[: history.epochs_done], label="test")
    axes.set(xlabel="epoch", ylabel="L2 loss (0.5 x MSE)", yscale="log", title="decoder loss")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def run(cfg: DictConfig, output_dir: Path) -> float:
    """One training job; returns the final test loss (what a sweeper would minimise)."""
    check_trainer_config(cfg.trainer)
    trainer_cfg, generator_cfg = cfg.trainer, cfg.generator
    device = resolve_device(trainer_cfg.device)
    data = load_data(cfg, device)
    generator = instantiate(generator_cfg.model).to(device).eval()
    if generator.latent_dim != data.t_train.shape[1]:
        raise ValueError(f"the generator takes {generator.latent_dim}-d latents, the data have {data.t_train.shape[1]}-d")

    experiment_id = setup_experiment(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.artifact_root)
    run_name = cfg.tracking.run_name or f"{cfg.data.name}-{cfg.optimizer.name}"
    hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
    tags = {
        "data_variant": data.info["variant"],
        "subjects": ",".join(map(str, data.info["subject_numbers"])),
        "protocol": cfg.protocol,
        "git_commit": git_commit(Path(__file__).parent),
        "sweep": str(Path(hydra_cfg.sweep.dir).name) if hydra_cfg and hydra_cfg.mode.name == "MULTIRUN" else "none",
        "output_dir": str(output_dir),
    }
    with tracked_run(experiment_id, run_name, tags) as active:
        run_id = active.info.run_id
        log.info("MLflow run %s (%s) in experiment '%s'", run_id, run_name, cfg.tracking.experiment)
        log_params(run_id, flatten(OmegaConf.to_container(cfg, resolve=True)))

        torch.manual_seed(trainer_cfg.seed)
        x_train, t_train, x_test, t_test = (
            torch.as_tensor(array, device=device) for array in (data.x_train, data.t_train, data.x_test, data.t_test)
        )
        model = instantiate(cfg.decoder, in_features=x_train.shape[1], out_features=t_train.shape[1]).to(device)
        optimizer = instantiate(cfg.optimizer.factory)(model.parameters())

        preview = slice(0, min(trainer_cfg.preview_trials, len(t_test)))
        preview_stimuli = render(generator, t_test[preview], generator_cfg.batch_size, generator_cfg.preview_size)
        preview_stimuli_uint8 = to_uint8(preview_stimuli)
        metrics = MetricBuffer(run_id)
        logged_epochs = 0

        def on_log(epoch: int, history: History) -> None:
            nonlocal logged_epochs
            for index in range(logged_epochs, epoch):
                metrics.add(history.at(index), index + 1)
            logged_epochs = epoch
            with torch.no_grad():
                predicted = model(x_test[preview])
            images = render(generator, predicted, generator_cfg.batch_size, generator_cfg.preview_size)
            grid = comparison_grid(preview_stimuli_uint8, to_uint8(images))
            mlflow.log_image(grid, key="reconstructions", step=epoch)
            if len(images) >= 2:  # identification needs two trials
                preview_metrics = image_metrics((preview_stimuli + 1) / 2, (images.clamp(-1, 1) + 1) / 2)
                metrics.add({f"preview_{name}": value for name, value in preview_metrics.items()}, epoch)
            metrics.flush()

        history = train_decoder(
            model, optimizer, x_train, t_train, x_test, t_test,
            epochs=trainer_cfg.epochs, batch_size=trainer_cfg.batch_size, seed=trainer_cfg.seed,
            log_every=trainer_cfg.log_every, on_log=on_log, test_metrics=cheap_latent_metrics,
            progress=trainer_cfg.progress,
        )  # fmt: skip

        with torch.no_grad():
            predicted = model(x_test)
        stimuli = render(generator, t_test, generator_cfg.batch_size)
        reconstructions = render(generator, predicted, generator_cfg.batch_size)
        results = final_metrics(
            data.t_test, predicted.cpu().numpy(), stimuli, reconstructions, generator,
            attribute_boundaries=cfg.evaluate.attribute_boundaries, feature_extractor=cfg.evaluate.feature_extractor,
        )  # fmt: skip
        final_loss = float(history.test_loss[history.epochs_done - 1])
        results.update(final_test_loss=final_loss, final_train_loss=float(history.train_loss[history.epochs_done - 1]))
        metrics.add({f"final/{name}": value for name, value in results.items()}, trainer_cfg.epochs)
        metrics.flush()
        save_final_artifacts(output_dir, stimuli, reconstructions, predicted, model, history)
        mlflow.log_artifacts(str(output_dir / "artifacts"))
        hydra_folder = output_dir / ".hydra"
        if hydra_folder.is_dir():
            mlflow.log_artifacts(str(hydra_folder), "hydra")
        log.info("final test loss %.5f, latent similarity %.4f, SSIM %.4f; outputs in %s",
                 final_loss, results["latent_similarity"], results["ssim"], output_dir)  # fmt: skip
    return final_loss


def save_final_artifacts(output_dir: Path, stimuli, reconstructions, predicted, model, history: History) -> None:
    """Full-resolution reconstructions (per trial, as the published code saves them) and a grid,
    the loss curve, the decoder weights and predicted latents, under ``output_dir/artifacts``."""
    folder = output_dir / "artifacts"
    stimuli, reconstructions = to_uint8(stimuli), to_uint8(reconstructions)
    for trial, (stimulus, reconstruction) in enumerate(zip(stimuli, reconstructions)):
        save_png(stimulus, folder / "stimuli" / f"trial_{trial:02d}.png")
        save_png(reconstruction, folder / "reconstructions" / f"trial_{trial:02d}.png")
    save_png(comparison_grid(stimuli, reconstructions), folder / "reconstructions_grid.png")
    plot_losses(history, folder / "loss_curve.png")
    torch.save({name: tensor.cpu() for name, tensor in model.state_dict().items()}, folder / "decoder.pt")
    np.save(folder / "predicted_latents.npy", predicted.cpu().numpy())


def _interrupt_on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"received signal {signum}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    # SIGTERM (kill, a scheduler's timeout) unwinds like Ctrl-C, so the run ends KILLED, not RUNNING.
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        return run(cfg, output_dir)
    except ValueError as error:  # bad input or settings: one clear line, no traceback
        log.error("%s", error)
        print(f"hyperexp: error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
