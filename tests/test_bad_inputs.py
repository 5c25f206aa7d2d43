"""Bad input across the public API gets a clear error: the right exception type, naming the
argument.

Every case below is one ordinary mistake (a value out of range, a wrong type, a misspelt name). The
test asserts both the exception type (``ValueError`` for a value, ``TypeError`` for a type) and that
the message names the argument, so a user can fix the call without reading the library.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sparsitylab import callbacks, data, methods, metrics, models, reparam, runner, timing, train
from sparsitylab.deploy import compaction, formats, matmul
from sparsitylab.gemm import from_gemm_view, gemm_view
from sparsitylab.methods.magnitude import MagnitudePruning
from sparsitylab.methods.ssl import SSL
from sparsitylab.sparsify import budgets, groups, masks, penalties, sensitivity
from sparsitylab.sparsify.schedules import CubicSchedule, OneShot

W = torch.randn(8, 8)
LENET_SHAPES = {
    "conv1": (20, 1, 5, 5),
    "conv2": (50, 20, 5, 5),
    "fc1": (500, 800),
    "fc2": (10, 500),
}
TINY = data.ImageSplit(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))


def masked_mlp():
    net = models.mlp((4, 3, 2))
    reparam.apply_masks(net, {"fc1": torch.ones(3, 4, dtype=torch.bool)})
    return net


def loader():
    return data.make_loader(TINY, 2)


CASES = {
    # sparsify.masks
    "sparsity above 1": (lambda: masks.topk_mask(W, 1.5), ValueError, "sparsity=1.5"),
    "sparsity as a string": (lambda: masks.topk_mask(W, "0.5"), TypeError, "sparsity='0.5'"),
    "weights not a tensor": (lambda: masks.topk_mask([1.0, 2.0], 0.5), TypeError, "w must be"),
    "integer weights": (lambda: masks.topk_mask(torch.arange(4), 0.5), TypeError, "w has dtype"),
    "NaN weights": (
        lambda: masks.topk_mask(torch.tensor([1.0, math.nan]), 0.5),
        ValueError,
        "w contains NaN",
    ),
    "boolean scores": (
        lambda: masks.mask_from_scores(torch.ones(3, dtype=torch.bool), 0.5),
        TypeError,
        "scores",
    ),
    "no tensors to rank": (
        lambda: masks.global_topk_masks([], 0.5),
        ValueError,
        "tensors is empty",
    ),
    "block of zero rows": (lambda: masks.block_mask(W, (0, 2), 0.5), ValueError, "block_shape"),
    "block as a string": (lambda: masks.block_mask(W, "22", 0.5), TypeError, "block_shape"),
    "block mask of a vector": (
        lambda: masks.block_mask(torch.ones(8), 2, 0.5),
        ValueError,
        "w has shape",
    ),
    "n larger than m": (lambda: masks.nm_mask(W, 3, 2), ValueError, "n=3, m=2"),
    "n as a float": (lambda: masks.nm_mask(W, 2.0, 4), TypeError, "n=2.0"),
    "unknown N:M order": (lambda: masks.nm_mask(W, 2, 4, order="nhwc"), ValueError, "order='nhwc'"),
    "negative count": (lambda: masks.pruned_count(-1, 0.5), ValueError, "numel=-1"),
    "mask of another shape": (
        lambda: masks.zero_pruned(W, torch.ones(4, 16, dtype=torch.bool)),
        ValueError,
        "keep",
    ),
    # gemm
    "GEMM view of a vector": (lambda: gemm_view(torch.ones(3)), ValueError, "weight has shape"),
    "unknown GEMM order": (lambda: gemm_view(W, "cwh"), ValueError, "order='cwh'"),
    "wrong inverse shape": (lambda: from_gemm_view(W, (8, 3, 2, 2)), ValueError, "matrix of shape"),
    # sparsify.budgets
    "dense layer that does not exist": (
        lambda: budgets.uniform_sparsities(LENET_SHAPES, 0.9, dense=["fc9"]),
        ValueError,
        "dense=['fc9']",
    ),
    "ERK power NaN": (
        lambda: budgets.erk_sparsities(LENET_SHAPES, 0.5, power_scale=math.nan),
        ValueError,
        "power_scale",
    ),
    "unknown budget": (
        lambda: budgets.budget_masks(models.mlp(), 0.5, "random"),
        ValueError,
        "budget='random'",
    ),
    "unreachable budget": (
        lambda: budgets.uniform_sparsities(LENET_SHAPES, 0.99, dense=["fc1"]),
        ValueError,
        "sparsity=0.99 is unreachable",
    ),
    # sparsify.schedules
    "no pruning events": (lambda: CubicSchedule(0.0, 0.9, 0, 10, 0), ValueError, "n=0"),
    "fractional interval": (lambda: CubicSchedule(0.0, 0.9, 0, 1.5, 5), TypeError, "delta=1.5"),
    "one-shot to sparsity 1": (lambda: OneShot(1.0), ValueError, "sparsity=1.0"),
    "schedule ending before it starts": (
        lambda: CubicSchedule.spanning(100, 0.9, start_fraction=0.8, end_fraction=0.5),
        ValueError,
        "start_fraction=0.8",
    ),
    "negative step": (lambda: OneShot(0.5).sparsity_at(-1), ValueError, "step=-1"),
    # sparsify.groups and penalties
    "unknown group kind": (
        lambda: groups.group_norms(models.lenet5(), "rows"),
        ValueError,
        "group kind='rows'",
    ),
    "filters on an MLP": (
        lambda: groups.group_norms(models.mlp(), "filter"),
        ValueError,
        "no 'filter' groups",
    ),
    "layer without groups": (
        lambda: groups.group_norms(models.lenet5(), "filter", layers=["conv9"]),
        ValueError,
        "layers=['conv9']",
    ),
    "negative strength": (
        lambda: penalties.StructuredPenalty({"filter": -1.0}),
        ValueError,
        "strengths['filter']",
    ),
    "misspelt layers key": (
        lambda: penalties.StructuredPenalty({"filter": 0.1}, layers={"filters": ["conv1"]}),
        ValueError,
        "layers has a key 'filters'",
    ),
    "negative prox step": (
        lambda: penalties.prox_group_(models.lenet5(), "filter", -1.0),
        ValueError,
        "step",
    ),
    "negative zeroing threshold": (
        lambda: penalties.zero_small_(models.mlp(), -1.0),
        ValueError,
        "threshold",
    ),
    "scan of an unknown layer": (
        lambda: sensitivity.sensitivity_scan(models.mlp((64, 8, 10)), loader(), layers=["fc9"]),
        ValueError,
        "layers ['fc9']",
    ),
    "negative tolerance": (
        lambda: sensitivity.sensitivity_budget(None, -0.1),
        ValueError,
        "max_drop",
    ),
    # reparam
    "mask for a missing layer": (
        lambda: reparam.apply_masks(models.mlp(), {"nope": torch.ones(1)}),
        ValueError,
        "'nope'",
    ),
    "mask as a list": (
        lambda: reparam.apply_masks(models.mlp(), {"fc1": [[1]]}),
        TypeError,
        "masks['fc1']",
    ),
    "a plain module as reparametrisation": (
        lambda: reparam.attach(nn.Linear(2, 2), "weight", nn.Identity()),
        TypeError,
        "reparametrization",
    ),
    # train, callbacks, metrics, timing
    "zero epochs": (
        lambda: train.fit(models.mlp((64, 8, 10)), loader(), epochs=0),
        ValueError,
        "epochs=0",
    ),
    "negative max_steps": (
        lambda: train.fit(models.mlp((64, 8, 10)), loader(), 1, max_steps=-1),
        ValueError,
        "max_steps=-1",
    ),
    "unknown non-finite policy": (
        lambda: train.fit(models.mlp((64, 8, 10)), loader(), 1, nonfinite="warn"),
        ValueError,
        "nonfinite='warn'",
    ),
    "negative learning rate": (lambda: train.SGD(lr=-1.0), ValueError, "lr=-1.0"),
    "momentum of one": (lambda: train.SGD(momentum=1.0), ValueError, "momentum=1.0"),
    "unknown device": (lambda: train.resolve_device("tpu"), (ValueError, RuntimeError), "tpu"),
    "empty evaluation loader": (
        lambda: train.evaluate(models.mlp(), []),
        ValueError,
        "loader is empty",
    ),
    "curve every zero steps": (
        lambda: callbacks.EvaluateEvery(loader(), every=0),
        ValueError,
        "every=0",
    ),
    "unknown sparsity set": (
        lambda: metrics.sparsity(models.mlp(), of="filters"),
        ValueError,
        "of='filters'",
    ),
    "no repeats": (
        lambda: timing.interleaved({"f": lambda: None}, repeats=0),
        ValueError,
        "repeats=0",
    ),
    "zero threads": (lambda: timing.threads(0).__enter__(), ValueError, "threads=0"),
    # deploy
    "integer dense matrix": (
        lambda: formats.CSR.from_dense(torch.ones(2, 2, dtype=torch.long)),
        TypeError,
        "dense has dtype",
    ),
    "empty dense matrix": (
        lambda: formats.CSR.from_dense(torch.ones(0, 4)),
        ValueError,
        "dense has shape",
    ),
    "block that does not divide": (
        lambda: formats.BSR.from_dense(W, (3, 4)),
        ValueError,
        "block=(3, 4)",
    ),
    "N:M group beyond uint8": (
        lambda: formats.NM.from_dense(torch.zeros(2, 512), 2, 512),
        ValueError,
        "m=512",
    ),
    "duplicated kept rows": (
        lambda: formats.Compacted.from_dense(torch.eye(3), rows=torch.tensor([0, 0, 1])),
        ValueError,
        "rows holds duplicated",
    ),
    "zero columns of B": (
        lambda: matmul.plan(formats.CSR.from_dense(torch.eye(4)), 0),
        ValueError,
        "n=0",
    ),
    "backend misspelt": (
        lambda: matmul.plan(formats.CSR.from_dense(torch.eye(4)), 2, backend="cuda"),
        ValueError,
        "backend='cuda'",
    ),
    "B with the wrong rows": (
        lambda: matmul.spmm(formats.CSR.from_dense(torch.eye(4)), torch.ones(3, 2)),
        ValueError,
        "b has 3 rows",
    ),
    "compacting a masked model": (
        lambda: compaction.compact(masked_mlp()),
        TypeError,
        "fc1.weight",
    ),
    # methods, runner, models, data
    "unknown method": (lambda: methods.build("nope"), ValueError, "name='nope'"),
    "schedule as a number": (lambda: MagnitudePruning(0.5), TypeError, "schedule"),
    "unknown exactness rule": (
        lambda: SSL({"filter": 0.1}, exact="round"),
        ValueError,
        "exact='round'",
    ),
    "negative epochs to run": (
        lambda: runner.run("dense", models.mlp(), None, epochs=-1),
        ValueError,
        "epochs=-1",
    ),
    "a scope naming no weight matrix": (
        lambda: methods.build("magnitude", sparsity=0.5, scope=["fc9"]).prepare(models.mlp()),
        ValueError,
        "scope names ['fc9']",
    ),
    "a scope given as one string": (
        lambda: methods.build("magnitude", sparsity=0.5, scope="fc1"),
        TypeError,
        "scope='fc1'",
    ),
    "STR-BN on a model without BatchNorm": (
        lambda: methods.build("str-bn").prepare(models.lenet5()),
        ValueError,
        "no BatchNorm γ in the group",
    ),
    "an example input of the wrong shape": (
        lambda: compaction.compact(models.mlp((6, 4, 3)), example_input=torch.randn(2, 5)),
        ValueError,
        "example_input of shape (2, 5)",
    ),
    "unknown model": (lambda: models.build("vgg"), ValueError, "name='vgg'"),
    "zero batch size": (lambda: data.make_loader(TINY, batch_size=0), ValueError, "batch_size=0"),
    "empty subset": (lambda: data.subset(TINY, 0), ValueError, "n=0"),
    "split fraction above 1": (lambda: data.split_indices(10, 1.5), ValueError, "fraction=1.5"),
}


@pytest.mark.parametrize("call,error,names", CASES.values(), ids=CASES.keys())
def test_bad_input_gets_a_clear_error_naming_the_argument(call, error, names):
    with pytest.raises(error) as info:
        call()
    assert names in str(info.value), f"the message does not name {names!r}: {info.value}"


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40


SETTINGS = settings(max_examples=40, deadline=None)
outside = st.one_of(
    st.floats(max_value=-1e-9), st.floats(min_value=1.0), st.just(math.nan), st.just(math.inf)
)


@SETTINGS
@given(value=outside)
def test_any_sparsity_outside_zero_one_is_a_value_error_naming_it(value):
    for call in (
        lambda: masks.topk_mask(W, value),
        lambda: OneShot(value),
        lambda: budgets.uniform_sparsities(LENET_SHAPES, value),
    ):
        with pytest.raises(ValueError, match="sparsity"):
            call()


@SETTINGS
@given(
    value=st.one_of(
        st.text(max_size=3), st.none(), st.lists(st.floats(), max_size=2), st.booleans()
    )
)
def test_any_sparsity_that_is_not_a_number_is_a_type_error_naming_it(value):
    with pytest.raises(TypeError, match="sparsity"):
        masks.topk_mask(W, value)


@SETTINGS
@given(value=st.one_of(st.floats(allow_nan=True), st.text(max_size=2), st.booleans()))
def test_any_non_int_count_is_a_type_error_naming_it(value):
    with pytest.raises(TypeError, match="n="):
        masks.nm_mask(W, value, 4)
