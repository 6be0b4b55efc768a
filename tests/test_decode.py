import math

import numpy as np
import pytest
import torch

from hyperexp.decode.model import LinearDecoder, MXNetAdam, l2_loss
from hyperexp.decode.trainer import train_decoder


def mxnet_adam_reference(weight, grads, lr, wd, beta1=0.9, beta2=0.999, eps=1e-8):
    """MXNet's Adam written out by hand (float64): coupled wd, eps on the uncorrected sqrt(v)."""
    m, v, w = np.zeros_like(weight), np.zeros_like(weight), weight.copy()
    for t, grad in enumerate(grads, start=1):
        g = grad + wd * w
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        lr_t = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        w = w - lr_t * m / (np.sqrt(v) + eps)
    return w


def test_l2_loss_has_mxnet_scale():
    prediction, target = torch.tensor([[1.0, 3.0], [0.0, 0.0]]), torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    # per sample 0.5 * mean over outputs of squared error: 0.5*(1+4)/2, 0.5*(4+0)/2; then batch mean
    assert l2_loss(prediction, target).item() == pytest.approx((1.25 + 1.0) / 2)


def test_published_adam_first_steps_equal_hand_computed_mxnet_semantics():
    torch.manual_seed(0)
    x, t = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    model = LinearDecoder(5, 3).double()
    start_w, start_b = model.weight.detach().numpy().copy(), model.bias.detach().numpy().copy()
    # eps large enough that its placement matters: PyTorch's own Adam would differ
    optimizer = MXNetAdam(model.parameters(), lr=1e-2, weight_decay=0.01, eps=1e-3)
    grads_w, grads_b = [], []
    for step in range(4):
        batch = slice(3 * (step % 2), 3 * (step % 2) + 3)
        w, b = model.weight.detach().numpy(), model.bias.detach().numpy()
        error = x[batch].numpy() @ w + b - t[batch].numpy()
        # d/dW of mean over batch of 0.5 * mean over 3 outputs: the batch-size rescaling of Gluon
        grads_w.append(x[batch].numpy().T @ error / (3 * 3))
        grads_b.append(error.sum(0) / (3 * 3))
        optimizer.zero_grad()
        l2_loss(model(x[batch]), t[batch]).backward()
        np.testing.assert_allclose(model.weight.grad.numpy(), grads_w[-1], rtol=1e-12)
        optimizer.step()
        expected_w = mxnet_adam_reference(start_w, grads_w, lr=1e-2, wd=0.01, eps=1e-3)
        expected_b = mxnet_adam_reference(start_b, grads_b, lr=1e-2, wd=0.01, eps=1e-3)
        np.testing.assert_allclose(model.weight.detach().numpy(), expected_w, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(model.bias.detach().numpy(), expected_b, rtol=1e-10, atol=1e-12)


def make_problem(seed=0, n=90, p=40, d=8):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=generator)
    t = x @ torch.randn(p, d, generator=generator) / p**0.5
    return x[:60], t[:60], x[60:], t[60:]


def train(seed=0, epochs=30, log_every=10, on_log=None):
    torch.manual_seed(seed)
    model = LinearDecoder(40, 8)
    optimizer = MXNetAdam(model.parameters(), lr=1e-2, weight_decay=0.01)
    history = train_decoder(
        model,
        optimizer,
        *make_problem(),
        epochs=epochs,
        batch_size=7,
        seed=seed,
        log_every=log_every,
        on_log=on_log,
        progress=False,
    )
    return model, history


def test_training_reduces_loss_is_seeded_and_logs_on_schedule():
    calls = []
    model, history = train(on_log=lambda epoch, h: calls.append((epoch, h.epochs_done)))
    assert calls == [(10, 10), (20, 20), (30, 30)]
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.test_loss[-1] < history.test_loss[0]
    again, history_again = train()
    torch.testing.assert_close(again.weight, model.weight, rtol=0, atol=0)
    torch.testing.assert_close(history_again.test_loss, history.test_loss, rtol=0, atol=0)
    other, _ = train(seed=1)
    assert not torch.equal(other.weight, model.weight)


@pytest.mark.parametrize("epochs,batch_size,message", [(0, 7, "positive"), (5, 0, "positive"), (5, 61, "larger than")])
def test_bad_schedules_are_refused(epochs, batch_size, message):
    model = LinearDecoder(40, 8)
    optimizer = MXNetAdam(model.parameters())
    with pytest.raises(ValueError, match=message):
        train_decoder(model, optimizer, *make_problem(), epochs=epochs, batch_size=batch_size, progress=False)


def test_analytic_linear_step_equals_autograd():
    from hyperexp.decode.trainer import linear_l2_step

    torch.manual_seed(0)
    model = LinearDecoder(40, 8).double()
    x, t = torch.randn(7, 40, dtype=torch.float64), torch.randn(7, 8, dtype=torch.float64)
    loss = l2_loss(model(x), t)
    loss.backward()
    expected = [p.grad.clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.full_like(p, 123.0)  # stale values must be overwritten, not accumulated
    analytic_loss = linear_l2_step(model, x, t)
    assert analytic_loss.item() == pytest.approx(loss.item(), rel=1e-12)
    for p, grad in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, grad, rtol=1e-12, atol=1e-14)


def test_stop_checkpoint_and_resume_equal_an_uninterrupted_run(tmp_path):
    from hyperexp.decode.trainer import StopRequested

    straight, straight_history = train()
    saved = []
    torch.manual_seed(0)
    model = LinearDecoder(40, 8)
    optimizer = MXNetAdam(model.parameters(), lr=1e-2, weight_decay=0.01)
    epochs_seen = []
    with pytest.raises(StopRequested) as stopped:
        train_decoder(
            model,
            optimizer,
            *make_problem(),
            epochs=30,
            batch_size=7,
            seed=0,
            log_every=10,
            progress=False,
            on_checkpoint=saved.append,
            checkpoint_every=5,
            should_stop=lambda: len(epochs_seen.append(1) or epochs_seen) >= 13,
        )
    assert stopped.value.epoch == 13 and [c["epoch"] for c in saved] == [5, 10, 13]
    torch.save(saved[-1], tmp_path / "last.pt")
    state = torch.load(tmp_path / "last.pt", weights_only=True)

    torch.manual_seed(99)  # a different init: everything must come from the checkpoint
    resumed = LinearDecoder(40, 8)
    resumed_optimizer = MXNetAdam(resumed.parameters(), lr=1e-2, weight_decay=0.01)
    history = train_decoder(
        resumed,
        resumed_optimizer,
        *make_problem(),
        epochs=30,
        batch_size=7,
        seed=0,
        log_every=10,
        progress=False,
        resume_from=state,
    )
    torch.testing.assert_close(resumed.weight, straight.weight, rtol=0, atol=0)
    torch.testing.assert_close(history.test_loss, straight_history.test_loss, rtol=0, atol=0)
    torch.testing.assert_close(history.train_loss, straight_history.train_loss, rtol=0, atol=0)


@pytest.mark.parametrize("layer", [0, 1])
def test_feature_loss_through_the_generator_decreases_and_reaches_the_decoder(layer):
    from hyperexp.decode.model import FeatureMatchingLoss
    from hyperexp.generate.facesketch import FaceSketch

    torch.manual_seed(0)
    generator = FaceSketch(latent_dim=32, size=16)
    x_train, _, x_test, _ = make_problem(d=8)
    mixing = torch.randn(40, 32, generator=torch.Generator().manual_seed(1)) / 40**0.5
    t_train, t_test = x_train @ mixing, x_test @ mixing
    loss_fn = FeatureMatchingLoss(generator, layer=layer, weight=1.0)
    model = LinearDecoder(40, 32)
    before = loss_fn.feature_term(model(x_test), t_test).item()
    optimizer = MXNetAdam(model.parameters(), lr=1e-2)
    history = train_decoder(
        model, optimizer, x_train, t_train, x_test, t_test, epochs=15, batch_size=10, loss_fn=loss_fn, progress=False
    )
    assert loss_fn.feature_term(model(x_test), t_test).item() < 0.7 * before
    assert history.train_loss[-1] < history.train_loss[0]
    assert all(not p.requires_grad for p in generator.parameters())
    with pytest.raises(ValueError, match="weight must be > 0"):
        FeatureMatchingLoss(generator, layer=layer, weight=0.0)


def test_feature_loss_works_with_the_pggan_hidden_layers():
    from hyperexp.decode.model import FeatureMatchingLoss
    from hyperexp.generate.pggan import build_pggan

    torch.manual_seed(0)
    generator = build_pggan(random_init=True, device="cpu")
    loss_fn = FeatureMatchingLoss(generator, layer=0, weight=0.5)
    prediction = torch.randn(2, 512, requires_grad=True)
    loss = loss_fn(prediction, torch.randn(2, 512))
    loss.backward()
    assert loss.item() > 0 and prediction.grad.abs().sum() > 0
