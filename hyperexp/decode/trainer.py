"""The gradient-descent training loop for a decoder.

The loop keeps data on the training device, shuffles there with a seeded generator, and never
synchronises with the host inside an epoch: per-epoch losses accumulate in device tensors and are
read back only every ``sync_every`` epochs, when the caller's ``on_log`` hook gets them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from hyperexp.decode.model import LinearDecoder, l2_loss


@torch.no_grad()
def linear_l2_step(model: LinearDecoder, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Write the gradients of ``l2_loss(model(x), t)`` into the preallocated ``.grad`` tensors and
    return the loss, without autograd.

    For a linear model the gradient is ``x.T @ error / (batch * outputs)``; writing it in place
    saves autograd's graph, the allocation of fresh gradients and a zeroing pass each step (about
    a third of the step time at the published size on CPU).
    """
    error = torch.addmm(model.bias, x, model.weight).sub_(t)
    scale = 1.0 / error.numel()
    torch.addmm(model.weight.grad, x.t(), error, beta=0.0, alpha=scale, out=model.weight.grad)
    torch.sum(error, dim=0, out=model.bias.grad).mul_(scale)
    return 0.5 * scale * torch.dot(error.view(-1), error.view(-1))


@dataclass
class History:
    """Per-epoch values (host tensors of length ``epochs``): ``train_loss`` (mean over the
    epoch's batches), ``test_loss`` and any extra test metrics, filled up to ``epochs_done``."""

    metrics: dict[str, torch.Tensor]
    epochs_done: int = 0

    @property
    def train_loss(self) -> torch.Tensor:
        return self.metrics["train_loss"]

    @property
    def test_loss(self) -> torch.Tensor:
        return self.metrics["test_loss"]

    def at(self, epoch_index: int) -> dict[str, float]:
        return {name: float(values[epoch_index]) for name, values in self.metrics.items()}


TestMetrics = Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


class StopRequested(KeyboardInterrupt):
    """Raised at an epoch boundary after ``should_stop()`` said so (e.g. on SIGINT/SIGTERM)."""

    def __init__(self, epoch: int):
        super().__init__(f"stopped after epoch {epoch}")
        self.epoch = epoch


def train_decoder(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x_train: torch.Tensor,
    t_train: torch.Tensor,
    x_test: torch.Tensor,
    t_test: torch.Tensor,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    log_every: int = 100,
    on_log: Callable[[int, History], None] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = l2_loss,
    test_metrics: TestMetrics | None = None,
    progress: bool = True,
    checkpoint_every: int = 0,
    on_checkpoint: Callable[[dict], None] | None = None,
    resume_from: dict | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> History:
    """Mini-batch training with reshuffling each epoch (the last batch may be smaller).

    After each epoch the test loss and ``test_metrics(prediction, target)`` (cheap device-side
    scalars) are recorded. ``on_log(epoch, history)`` runs after epochs ``log_every,
    2*log_every, ...``, after the last one and at a stop, with all values so far on the host.

    Checkpoints (model, optimizer, shuffling RNG and metrics so far) go to ``on_checkpoint``
    every ``checkpoint_every`` epochs, and when ``should_stop()`` turns true, which ends
    training at that epoch boundary with :class:`StopRequested`. ``resume_from`` continues
    from such a checkpoint; the result equals an uninterrupted run (same seed, same device).
    """
    n_train = len(x_train)
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    if batch_size > n_train:
        raise ValueError(f"batch_size {batch_size} is larger than the training set ({n_train} trials)")
    device = x_train.device
    generator = torch.Generator(device=device).manual_seed(seed)
    on_device: dict[str, torch.Tensor] = {}
    history = History({})

    def record(epoch: int, values: dict[str, torch.Tensor]) -> None:
        for name, value in values.items():
            if name not in on_device:
                on_device[name] = torch.zeros(epochs, device=device)
                history.metrics[name] = torch.zeros(epochs)
            on_device[name][epoch] = value

    def sync(upto: int) -> None:
        for name, values in on_device.items():
            history.metrics[name][:upto] = values[:upto].cpu()
        history.epochs_done = upto

    def checkpoint(done: int) -> dict:
        return {
            "epoch": done,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "shuffle_rng": generator.get_state(),
            "metrics": {name: values[:done].cpu() for name, values in on_device.items()},
        }

    first_epoch = 0
    if resume_from is not None:
        first_epoch = int(resume_from["epoch"])
        if not 0 < first_epoch <= epochs:
            raise ValueError(f"checkpoint is at epoch {first_epoch}, outside 1..{epochs}")
        model.load_state_dict(resume_from["model"])
        optimizer.load_state_dict(resume_from["optimizer"])
        generator.set_state(resume_from["shuffle_rng"])
        for name, values in resume_from["metrics"].items():
            record(0, {name: values[0]})
            on_device[name][:first_epoch] = values.to(device)
        sync(first_epoch)

    analytic = isinstance(model, LinearDecoder) and loss_fn is l2_loss
    if analytic:
        for parameter in model.parameters():
            parameter.grad = torch.zeros_like(parameter)
    bar = tqdm(total=epochs, initial=first_epoch, desc="train", unit="epoch", disable=not progress, dynamic_ncols=True)
    for epoch in range(first_epoch, epochs):
        model.train()
        order = torch.randperm(n_train, generator=generator, device=device)
        epoch_sum = torch.zeros((), device=device)
        for start in range(0, n_train, batch_size):
            batch = order[start : start + batch_size]
            if analytic:
                loss = linear_l2_step(model, x_train[batch], t_train[batch])
            else:
                loss = loss_fn(model(x_train[batch]), t_train[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            optimizer.step()
            epoch_sum += loss.detach() * len(batch)
        model.eval()
        with torch.no_grad():
            prediction = model(x_test)
            # test_loss is the latent L2 loss whatever the training objective, so runs compare
            record(epoch, {"train_loss": epoch_sum / n_train, "test_loss": l2_loss(prediction, t_test)})
            if test_metrics is not None:
                record(epoch, test_metrics(prediction, t_test))
        bar.update(1)
        done = epoch + 1
        stop = should_stop is not None and should_stop() and done < epochs
        if done % log_every == 0 or done == epochs or stop:
            sync(done)
            bar.set_postfix(train=f"{history.train_loss[epoch]:.4f}", test=f"{history.test_loss[epoch]:.4f}")
            if on_log is not None:
                on_log(done, history)
        if on_checkpoint is not None and ((checkpoint_every and done % checkpoint_every == 0) or stop):
            on_checkpoint(checkpoint(done))
        if stop:
            sync(done)
            bar.close()
            raise StopRequested(done)
    bar.close()
    return history
