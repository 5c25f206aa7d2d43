"""Training loop: loss goes down, callbacks fire, seeding reproduces, devices are checked."""

from __future__ import annotations

import pytest
import torch

from sparsitylab import data, models, train


@pytest.fixture(scope="module")
def digits():
    tr, te = data.load_digits_split()
    return data.make_loader(tr, 64, shuffle=True), data.make_loader(te, 256)


def small_mlp():
    return models.mlp((64, 32, 10))


def test_a_few_steps_reduce_loss(digits):
    train_loader, test_loader = digits
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
    train_loader, test_loader = digits
    rec = Recorder()
    net = small_mlp()
    history = train.fit(
        net, train_loader, epochs=2, val_loader=test_loader, callbacks=[rec], progress=False
    )
    assert rec.steps == list(range(1, 2 * len(train_loader) + 1)) and rec.epochs == [1, 2]
    assert history["custom"] == [42.0, 42.0] and len(history["val_acc"]) == 2


def test_penalty_changes_gradient(digits):
    train_loader, _ = digits

    def weights_after(callbacks):
        train.seed_everything(2)
        net = small_mlp()
        train.fit(
            net, train_loader, 1, callbacks=callbacks, progress=False, max_steps=3, scheduler=None
        )
        return net[1].weight.detach().clone()

    assert not torch.equal(weights_after([]), weights_after([Recorder()]))


def test_max_steps_stops_early(digits):
    train_loader, _ = digits
    rec = Recorder()
    history = train.fit(
        small_mlp(), train_loader, epochs=5, callbacks=[rec], progress=False, max_steps=7
    )
    assert rec.steps[-1] == 7 and len(history) == 1


def test_bad_arguments(digits):
    train_loader, _ = digits
    with pytest.raises(ValueError, match="epochs=0"):
        train.fit(small_mlp(), train_loader, epochs=0)
    with pytest.raises(ValueError, match="scheduler='step'"):
        train.fit(small_mlp(), train_loader, epochs=1, scheduler="step", progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            train.resolve_device("cuda")
    with pytest.raises(ValueError, match="empty"):
        train.evaluate(small_mlp(), [])
