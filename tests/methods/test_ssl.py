"""SSL end to end on digits: exact zero groups, freezing keeps them, finalize and compact keep the
outputs."""

from __future__ import annotations

import pytest
import torch

from sparsitylab import models, reparam, runner, train
from sparsitylab.methods.ssl import SSL
from sparsitylab.sparsify import groups


@pytest.mark.parametrize("exact,lam", [("zero", 0.02), ("prox", 0.01)])
def test_ssl_learns_exactly_zero_groups_and_freezing_keeps_them(digits, exact, lam):
    train.seed_everything(0)
    net = models.mlp((64, 32, 16, 10))
    opt = train.sgd(net, lr=0.05, momentum=0.9, weight_decay=0)
    ssl = SSL({"neuron_in": lam, "neuron_out": lam}, exact=exact)
    train.fit(net, digits.train, 6, optimizer=opt, callbacks=[ssl], progress=False)
    assert ssl.optimizer is opt  # the prox step reads this one's LR
    dead = groups.zero_group_fraction(net, "neuron_out")
    assert max(dead.values()) > 0.1, f"no hidden neuron died ({exact}): {dead}"
    assert train.evaluate(net, digits.train)["acc"] > 0.5
    zeros_before = {n: (p == 0) for n, p in net.named_parameters()}
    ssl.freeze(net)
    train.fit(
        net, digits.train, 1, optimizer=train.sgd(net, lr=0.05), callbacks=[ssl], progress=False
    )
    for name, was_zero in zeros_before.items():
        layer, _, tensor = name.rpartition(".")
        value = getattr(net.get_submodule(layer), tensor)  # what the forward pass uses
        assert bool((value[was_zero] == 0).all()), f"{name}: frozen zeros came back"
    assert "fc1.bias" in reparam.get_masks(net)  # dead neurons' biases are masked too
    final = ssl.finalize(net)
    small = ssl.compact(final)
    x = next(iter(digits.train))[0]
    assert torch.allclose(small(x), net.eval()(x), atol=1e-5) and reparam.is_masked(net)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in net.parameters())


def test_ssl_through_the_runner_trains_freezes_fine_tunes_and_compacts(digits):
    run = runner.run(
        "ssl",
        models.mlp((64, 32, 16, 10)),
        digits,
        epochs=4,
        finetune_epochs=1,
        method_options={"strengths": {"neuron_in": 0.02, "neuron_out": 0.02}},
        progress=False,
        optimizer=train.SGD(lr=0.05, weight_decay=0.0),
    )
    assert [r["stage"] for r in run.history.records] == ["train"] * 4 + ["finetune"]
    assert run.compacted is not None and run.compacted_macs < run.macs
    x = next(iter(digits.test))[0]
    torch.testing.assert_close(run.compacted(x), run.model.eval()(x), atol=1e-5, rtol=1e-4)
    assert run.compacted_params == sum(p.numel() for p in run.compacted.parameters())


def test_ssl_rejects_bad_arguments(digits):
    with pytest.raises(ValueError, match="exact"):
        SSL({"filter": 0.1}, exact="round")
    with pytest.raises(RuntimeError, match="reads the learning rate"):
        SSL({"neuron_in": 0.1}, exact="prox").after_step(models.mlp((4, 3, 2)), 1)
    with pytest.raises(
        ValueError, match="has no 'filter' groups"
    ):  # used to give a silent zero penalty
        runner.run(SSL({"filter": 0.1}), models.mlp((64, 8, 10)), digits, epochs=1, progress=False)


def test_prox_ssl_refuses_an_optimizer_whose_momentum_is_one():
    model = models.lenet5()
    method = SSL({"filter": 1e-3}, exact="prox")
    method.prepare(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="momentum in \\[0, 1\\).*momentum=1.0"):
        method.on_fit_start(model, optimizer)
