"""Decoders: MXNet's semantics, the training loop's bookkeeping, and one interface for all."""

import functools
import math

import numpy as np
import pytest
import torch

from hyperexp.config import TrainerConfig
from hyperexp.decode import (
    Dense,
    FitContext,
    GradientDecoder,
    OLSDecoder,
    PLSDecoder,
    RidgeCVDecoder,
    StopRequested,
)
from hyperexp.decode.loop import epoch_batches, linear_l2_step
from hyperexp.decode.losses import FeatureMatchingLoss, l2_loss
from hyperexp.decode.optim import MXNetAdam
from hyperexp.errors import InputError


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
    model = Dense(5, 3).double()
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


class RecordingLogger:
    def __init__(self):
        self.calls = []

    def log(self, epoch, history, predict):
        self.calls.append((epoch, history.epochs_done))


def adam_decoder(lr=1e-2, seed=0):
    return GradientDecoder(functools.partial(MXNetAdam, lr=lr, weight_decay=0.01), seed=seed)


def settings(**overrides):
    return TrainerConfig(**{"epochs": 30, "batch_size": 7, "log_every": 10, "progress": False, **overrides})


def fit(seed=0, logger=None, **context):
    from hyperexp.evaluate import EpochMetrics

    x_train, t_train, x_test, t_test = make_problem()
    decoder = adam_decoder(seed=seed)
    monitor = EpochMetrics({"test": (x_test, t_test)})
    assert decoder.fit(x_train, t_train, FitContext(settings(), monitor=monitor, logger=logger, **context)) is decoder
    return decoder, decoder.history_


def test_training_reduces_loss_is_seeded_and_logs_on_schedule():
    logger = RecordingLogger()
    decoder, history = fit(logger=logger)
    assert logger.calls == [(0, 0), (10, 10), (20, 20), (30, 30)]  # epoch 0: the untrained decoder
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.test_loss[-1] < history.test_loss[0]
    again, history_again = fit()
    torch.testing.assert_close(again.coef_, decoder.coef_, rtol=0, atol=0)
    torch.testing.assert_close(history_again.test_loss, history.test_loss, rtol=0, atol=0)
    other, _ = fit(seed=1)
    assert not torch.equal(other.coef_, decoder.coef_)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"epochs": 0}, "trainer.epochs: must be >= 1"),
        ({"batch_size": 0}, "trainer.batch_size: must be >= 1"),
        ({"epochs": 10**12}, "trainer.epochs: at most"),
        ({"last_batch": "drop"}, "trainer.last_batch: must be one of pad, partial"),
    ],
)
def test_bad_schedules_are_refused_naming_the_key(overrides, message):
    with pytest.raises(InputError, match=message):
        settings(**overrides)


def test_a_batch_larger_than_the_training_set_is_refused_before_training():
    x_train, t_train, _, _ = make_problem()
    with pytest.raises(InputError, match="trainer.batch_size: 61 is larger than the training set"):
        adam_decoder().fit(x_train, t_train, FitContext(settings(batch_size=61)))


def test_padded_last_batch_is_mxnet_ndarrayiter_pad():
    # NDArrayIter(last_batch_handle='pad'): the last batch is topped up from the start of the epoch's order
    order = torch.tensor([5, 3, 9, 0, 7, 1, 8, 2, 6, 4])
    padded = epoch_batches(order, 4, "pad")
    assert [b.tolist() for b in padded] == [[5, 3, 9, 0], [7, 1, 8, 2], [6, 4, 5, 3]]
    assert [b.tolist() for b in epoch_batches(order, 4, "partial")][-1] == [6, 4]
    assert [len(b) for b in epoch_batches(order, 5, "pad")] == [5, 5]  # no padding when it divides


def test_analytic_linear_step_equals_autograd():
    torch.manual_seed(0)
    model = Dense(40, 8).double()
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


class ListCheckpoints:
    def __init__(self, every):
        self.every, self.saved = every, []

    def due(self, epoch):
        return epoch % self.every == 0

    def save(self, state):
        self.saved.append(state)


def test_stop_checkpoint_and_resume_equal_an_uninterrupted_run(tmp_path):
    straight, straight_history = fit()
    checkpoints, polls = ListCheckpoints(5), []
    with pytest.raises(StopRequested) as stopped:
        fit(checkpoints=checkpoints, stop_requested=lambda: len(polls.append(1) or polls) >= 13)
    assert stopped.value.epoch == 13 and [c["epoch"] for c in checkpoints.saved] == [5, 10, 13]
    torch.save(checkpoints.saved[-1], tmp_path / "last.pt")
    state = torch.load(tmp_path / "last.pt", weights_only=True)

    resumed, history = fit(seed=0, resume_from=state)
    torch.testing.assert_close(resumed.coef_, straight.coef_, rtol=0, atol=0)
    torch.testing.assert_close(history.test_loss, straight_history.test_loss, rtol=0, atol=0)
    torch.testing.assert_close(history.train_loss, straight_history.train_loss, rtol=0, atol=0)


@pytest.mark.parametrize(
    "decoder", [OLSDecoder(), RidgeCVDecoder([0.1, 1.0, 10.0]), PLSDecoder(6), adam_decoder()], ids=type
)
def test_every_decoder_fits_and_predicts_through_one_interface(decoder):
    from hyperexp.evaluate import EpochMetrics

    x_train, t_train, x_test, t_test = make_problem()
    logger = RecordingLogger()
    context = FitContext(settings(epochs=20), monitor=EpochMetrics({"test": (x_test, t_test)}), logger=logger)
    history = decoder.fit(x_train, t_train, context).history_
    assert decoder.coef_.shape == (40, 8) and decoder.intercept_.shape == (8,)
    prediction = decoder.predict(x_test)
    torch.testing.assert_close(prediction, x_test @ decoder.coef_ + decoder.intercept_, rtol=1e-5, atol=1e-5)
    assert {"train_loss", "test_loss", "test_latent_cosine"} <= set(history.metrics)
    assert logger.calls[0][0] == 0 and logger.calls[-1][0] == history.epochs_done
    assert float(history.test_loss[-1]) < 0.5 * float(l2_loss(torch.zeros_like(t_test), t_test))
    module = decoder.as_module()
    torch.testing.assert_close(module(x_test), prediction, rtol=1e-5, atol=1e-5)


def test_closed_form_decoders_match_their_solvers():
    from hyperexp.decode.solvers import fit_ols, ridge_cv

    x_train, t_train, _, _ = make_problem()
    ols = OLSDecoder()
    ols.fit(x_train, t_train)
    w, b = fit_ols(x_train.double().numpy(), t_train.double().numpy())
    np.testing.assert_allclose(ols.coef_.numpy(), w, rtol=1e-5, atol=1e-6)
    ridge = RidgeCVDecoder([0.1, 1.0, 10.0], n_folds=3)
    ridge.fit(x_train, t_train)
    expected = ridge_cv(x_train.double().numpy(), t_train.double().numpy(), [0.1, 1.0, 10.0], n_folds=3)
    assert ridge.alpha_ == expected.alpha and ridge.fitted_summary() == {"alpha": expected.alpha}
    np.testing.assert_allclose(ridge.coef_.numpy(), expected.W, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "decoder,message",
    [
        (GradientDecoder(functools.partial(MXNetAdam, lr=-1.0)), "decoder.optimizer.lr: must be > 0"),
        (GradientDecoder(functools.partial(MXNetAdam, lr=float("nan"))), "decoder.optimizer.lr: must be > 0"),
        (RidgeCVDecoder([]), "decoder.alphas: must be a non-empty list"),
        (RidgeCVDecoder([1.0, -2.0]), "decoder.alphas: must be a non-empty list"),
        (RidgeCVDecoder([1.0], n_folds=1), "decoder.n_folds: must be >= 2"),
        (PLSDecoder(0), "decoder.n_components: must be >= 1"),
    ],
    ids=lambda value: value if isinstance(value, str) else type(value).__name__,
)
def test_decoder_settings_are_checked_by_fit_naming_the_key(decoder, message):
    x_train, t_train, _, _ = make_problem()
    with pytest.raises(InputError, match=message):
        decoder.check_fits(len(x_train), FitContext(settings()))  # what a run calls before any work
    with pytest.raises(InputError, match=message):
        decoder.fit(x_train, t_train, FitContext(settings()))
    assert not hasattr(decoder, "coef_")


def test_the_number_of_folds_is_checked_against_the_training_set():
    with pytest.raises(InputError, match="decoder.n_folds: 5 folds need at least as many trials, got 4"):
        RidgeCVDecoder([1.0]).check_fits(4, FitContext())


@pytest.mark.parametrize("layer", [0, 1])
def test_feature_loss_through_the_generator_decreases_and_reaches_the_decoder(layer):
    from hyperexp.generate.facesketch import FaceSketch

    torch.manual_seed(0)
    generator = FaceSketch(latent_dim=32, size=16)
    x_train, _, x_test, _ = make_problem(d=8)
    mixing = torch.randn(40, 32, generator=torch.Generator().manual_seed(1)) / 40**0.5
    t_train, t_test = x_train @ mixing, x_test @ mixing
    loss_fn = FeatureMatchingLoss(generator, layer=layer, weight=1.0)
    decoder = adam_decoder()
    untrained = Dense(40, 32, generator=torch.Generator().manual_seed(0))
    before = loss_fn.feature_term(untrained(x_test), t_test).item()
    history = decoder.fit(x_train, t_train, FitContext(settings(epochs=15, batch_size=10), loss=loss_fn)).history_
    assert loss_fn.feature_term(decoder.predict(x_test), t_test).item() < 0.7 * before
    assert history.train_loss[-1] < history.train_loss[0]
    assert all(not p.requires_grad for p in generator.parameters())
    with pytest.raises(InputError, match="weight: must be > 0"):
        FeatureMatchingLoss(generator, layer=layer, weight=0.0)


def test_feature_loss_works_with_the_pggan_hidden_layers():
    from hyperexp.generate.pggan_weights import build_pggan

    torch.manual_seed(0)
    generator = build_pggan(random_init=True, device="cpu")
    loss_fn = FeatureMatchingLoss(generator, layer=0, weight=0.5)
    prediction = torch.randn(2, 512, requires_grad=True)
    loss = loss_fn(prediction, torch.randn(2, 512))
    loss.backward()
    assert loss.item() > 0 and prediction.grad.abs().sum() > 0


def test_pls_decoder_predicts_what_scikit_learn_predicts():
    from sklearn.cross_decomposition import PLSRegression

    x_train, t_train, x_test, _ = make_problem()
    decoder = PLSDecoder(5)
    decoder.fit(x_train, t_train)
    reference = PLSRegression(5, scale=False).fit(x_train.double().numpy(), t_train.double().numpy())
    np.testing.assert_allclose(decoder.predict(x_test).numpy(), reference.predict(x_test.double().numpy()), atol=1e-4)
    with pytest.raises(InputError, match="decoder.n_components: 60 needs more than 60 trials"):
        PLSDecoder(60).check_fits(60, FitContext())
