"""Helpers for tests that run training end to end more than once in one test (a resumed run, a
chain of runs): fresh loaders for every run, and an interruption at an epoch's end."""

from __future__ import annotations

from sparsitylab import data, train


def fresh_digits() -> data.Loaders:
    """scikit-learn's 8×8 digits as new loaders (a fresh shuffle generator) for every run."""
    train_split, test_split = data.load_digits_split()
    test = data.make_loader(test_split, 256)
    return data.Loaders(data.make_loader(train_split, 64, shuffle=True), test, test)


class Interrupt(Exception):
    """Stands for a kill at the end of an epoch, before that epoch's checkpoint."""


class StopAfter(train.Callback):
    """Raises :class:`Interrupt` at the end of epoch ``epoch``."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, model, epoch, record):
        if epoch == self.epoch:
            raise Interrupt
