"""Training loop: loss goes down, callbacks fire, seeding reproduces, devices are checked."""

from __future__ import annotations

import pytest
import torch

from sparsitylab import data, models, train


def small_mlp():
    return models.mlp((64, 32, 10))


def test_a_few_steps_reduce_loss(digits):
    train_loader, test_loader = digits.train, digits.test
    train.seed_everything(0)
    net = small_mlp()
    before = train.evaluate(net, test_loader)["loss"]
    history = train.fit(
        net, train_loader, epochs=3, optimizer=train.sgd(net, lr=0.1), progress=False
    )
    after = train.evaluate(net, test_loader)
    assert after["loss"] < 0.5 * before and after["acc"] > 0.85
    assert history["epoch"] == [1, 2, 3] and all(s > 0 for s in history["seconds"])


def test_seeding_reproduces_training():
    def run():
        train.seed_everything(1)
        loader = data.make_loader(data.load_digits_split()[0], 64, shuffle=True, seed=1)
        net = small_mlp()
        train.fit(net, loader, epochs=1, progress=False, max_steps=5)
        return torch.cat([p.detach().flatten() for p in net.parameters()])

    assert torch.equal(run(), run())


class Recorder(train.Callback):
    def __init__(self):
        self.steps, self.epochs = [], []

    def penalty(self, model):
        return 1e-3 * sum(p.abs().sum() for p in model.parameters())

    def after_step(self, model, step):
        self.steps.append(step)

    def on_epoch_end(self, model, epoch, record):
        self.epochs.append(epoch)
        record["custom"] = 42.0


def test_callbacks_fire_and_penalty_is_added(digits):
    train_loader, test_loader = digits.train, digits.test
    rec = Recorder()
    net = small_mlp()
    history = train.fit(
        net, train_loader, epochs=2, val_loader=test_loader, callbacks=[rec], progress=False
    )
    assert rec.steps == list(range(1, 2 * len(train_loader) + 1)) and rec.epochs == [1, 2]
    assert history["custom"] == [42.0, 42.0] and len(history["val_acc"]) == 2


def test_penalty_changes_gradient(digits):
    train_loader = digits.train

    def weights_after(callbacks):
        train.seed_everything(2)
        net = small_mlp()
        train.fit(
            net, train_loader, 1, callbacks=callbacks, progress=False, max_steps=3, scheduler=None
        )
        return net.fc1.weight.detach().clone()

    assert not torch.equal(weights_after([]), weights_after([Recorder()]))


def test_max_steps_stops_early(digits):
    train_loader = digits.train
    rec = Recorder()
    history = train.fit(
        small_mlp(), train_loader, epochs=5, callbacks=[rec], progress=False, max_steps=7
    )
    assert rec.steps[-1] == 7 and len(history) == 1


def test_bad_arguments(digits):
    train_loader = digits.train
    with pytest.raises(ValueError, match="epochs=0"):
        train.fit(small_mlp(), train_loader, epochs=0)
    with pytest.raises(ValueError, match="train_loader is empty"):  # was a ZeroDivisionError
        train.fit(small_mlp(), [], epochs=1)
    with pytest.raises(ValueError, match="nonfinite='ignore'"):
        train.fit(small_mlp(), train_loader, epochs=1, nonfinite="ignore")
    with pytest.raises(ValueError, match="scheduler='step'"):
        train.fit(small_mlp(), train_loader, epochs=1, scheduler="step", progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            train.resolve_device("cuda")
    with pytest.raises(ValueError, match="empty"):
        train.evaluate(small_mlp(), [])


def test_max_steps_zero_takes_no_step(digits):
    net = small_mlp()
    before = [p.detach().clone() for p in net.parameters()]
    history = train.fit(net, digits.train, epochs=2, max_steps=0, progress=False)
    assert len(history) == 0 and all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


class Explode(train.Callback):
    """A penalty that becomes NaN at one step."""

    def __init__(self, at_step):
        self.at_step, self.calls = at_step, 0

    def penalty(self, model):
        self.calls += 1
        return float("nan") if self.calls == self.at_step else 0.0


def test_a_nan_loss_stops_training_naming_epoch_and_step(digits):
    net = small_mlp()
    with pytest.raises(train.NonFiniteLossError, match="epoch 1, step 3"):
        train.fit(net, digits.train, epochs=2, callbacks=[Explode(3)], progress=False)
    assert all(torch.isfinite(p).all() for p in net.parameters())  # the bad step was never taken


def test_a_nan_loss_can_be_skipped_and_is_counted(digits):
    history = train.fit(
        small_mlp(),
        digits.train,
        epochs=1,
        callbacks=[Explode(2)],
        progress=False,
        nonfinite="skip",
    )
    assert history.last("skipped") == 1 and len(history) == 1


def test_evaluate_and_recalibration_restore_the_mode(digits):
    net = models.convnet_bn().train()
    images = [(torch.randn(4, 1, 28, 28), torch.zeros(4, dtype=torch.long))]
    train.evaluate(net, images)
    assert net.training
    net.eval()
    train.recalibrate_batchnorm(net, images)
    assert not net.training and net.bn1.num_batches_tracked == 1


def test_on_fit_start_sees_the_optimizer_that_steps(digits):
    seen = []

    class Spy(train.Callback):
        def on_fit_start(self, model, optimizer):
            seen.append(optimizer)

    net = small_mlp()
    opt = train.sgd(net, lr=0.01)
    train.fit(net, digits.train, 1, optimizer=opt, callbacks=[Spy()], progress=False, max_steps=1)
    assert seen == [opt]


def test_sgd_config_builds_the_optimizer_from_groups():
    net = small_mlp()
    opt = train.SGD(lr=0.1, momentum=0.5, weight_decay=1e-4)(
        [{"params": list(net.fc1.parameters())}, {"params": list(net.fc2.parameters()), "lr": 0.01}]
    )
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01] and opt.param_groups[0][
        "momentum"
    ] == 0.5
    with pytest.raises(ValueError, match="momentum=1.0"):
        train.SGD(momentum=1.0)


def test_seed_everything_turns_deterministic_kernels_on_for_the_process_as_documented():
    before = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(False)
        train.seed_everything(0, deterministic=False)
        assert not torch.are_deterministic_algorithms_enabled()  # left as it was
        train.seed_everything(0)
        assert torch.are_deterministic_algorithms_enabled()  # and it stays on afterwards
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(before, warn_only=True)
