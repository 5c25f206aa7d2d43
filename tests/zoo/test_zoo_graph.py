"""The dependency graph on the zoo: the groups each model must have, what it keeps whole, and
masked ≡ compacted when random halves of every group are removed."""

from __future__ import annotations

import copy

import pytest
import torch
import zoo_models as zoo

from sparsitylab import graph
from sparsitylab.deploy import compaction, surgery


def _zeroed(model, g, removed):
    """``model`` with every parameter slice of the removed units zeroed (the masked model)."""
    masked = copy.deepcopy(model)
    with torch.no_grad():
        for name, flags in removed.items():
            group = g.group(name)
            for (tensor, axis), index in group.index.items():
                module_name, _, attr = tensor.rpartition(".")
                module = masked.get_submodule(module_name)
                if attr in module._parameters:
                    getattr(module, attr).index_fill_(axis, index[flags].reshape(-1), 0.0)
    return masked


@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_removing_random_halves_of_every_group_is_exact(name):
    entry = zoo.ZOO[name]
    model, x = entry.model(), entry.example()
    g = graph.trace(model, x)
    torch.manual_seed(0)
    removed = {}
    for group in g.groups:
        flags = torch.rand(group.size) < 0.5
        flags[0] = False  # a group keeps a unit
        flags[-1] |= group.heads and group.size > 1  # and heads always lose one
        removed[group.name] = flags
    masked = _zeroed(model, g, removed)
    if name in zoo.CODE_FIXES_HEADS:  # compaction finds the heads cannot go, and keeps them
        with pytest.warns(UserWarning, match="code assumes the sizes it was built with"):
            small = compaction.compact(masked, example_input=x)
        heads = {grp.name for grp in g.groups if grp.heads}
        assert heads and heads <= set(small.sparsitylab_kept_whole)
        assert surgery.relative_error(surgery.outputs(small, x), surgery.outputs(masked, x)) < 1e-5
    else:
        small = surgery.prune(model, surgery.plan_from(model, g, removed), x, reference=masked)
    assert sum(p.numel() for p in small.parameters()) <= sum(p.numel() for p in model.parameters())
    # from the zeros alone, compaction finds the same units dead
    dead = graph.trace(masked, x)
    found = {grp.name: grp.dead for grp in dead.groups}
    for group_name, flags in removed.items():
        assert bool(found[group_name][flags].all())


def _group(g, member):
    return next(grp for grp in g.groups if any(m.tensor == member for m in grp.members))


def test_residual_stages_are_one_group_and_heads_emerge():
    resnet = zoo.ZOO["resnet"]
    g = graph.trace(resnet.model(), resnet.example())
    stage = _group(g, "resnet.embedder.embedder.convolution.weight")
    producers = {m.tensor for m in stage.producers}
    assert "resnet.encoder.stages.0.layers.0.layer.1.convolution.weight" in producers
    vit = zoo.ZOO["vit"]
    g = graph.trace(vit.model(), vit.example())
    heads = [grp for grp in g.groups if grp.heads]
    assert [grp.size for grp in heads] == [4]
    assert {m.tensor.rsplit(".", 2)[-2] for m in heads[0].members} >= {"q_proj", "k_proj", "v_proj"}
    assert any("layernorm" in k.reasons[0] or "layer_norm" in k.reasons[0] for k in g.kept)


def test_grouped_query_attention_keeps_its_ratio():
    llama = zoo.ZOO["llama"]
    g = graph.trace(llama.model(), llama.example())
    heads = next(grp for grp in g.groups if grp.heads)
    assert heads.size == 2  # two kv heads, each with its two query heads
    rows = {
        m.tensor.split(".")[-2]: heads.index[(m.tensor, m.axis)].shape[1] for m in heads.members
    }
    assert rows["q_proj"] == 2 * rows["k_proj"] == 2 * rows["v_proj"]


def test_swin_relative_position_bias_joins_its_heads():
    swin = zoo.ZOO["swin"]
    g = graph.trace(swin.model(), swin.example())
    heads = next(grp for grp in g.groups if grp.heads)
    assert any(m.tensor.endswith("relative_position_bias_table") for m in heads.members)


def test_a_python_if_on_an_activation_is_a_reported_boundary():
    entry = zoo.ZOO["python-if"]
    g = graph.trace(entry.model(), entry.example())
    assert any(b.where == "gate" and "Python" in b.reason for b in g.boundaries)
    assert [grp.name for grp in g.groups] == ["head"]  # only what is outside the boundary
    text = g.explain()
    assert "gate" in text and "Boundaries" in text


def test_channel_shuffle_ties_the_same_slot_of_both_halves():
    entry = zoo.ZOO["channel-shuffle"]
    g = graph.trace(entry.model(), entry.example())
    stem = _group(g, "stem.weight")
    assert stem.size == 4 and stem.index[("stem.weight", 0)].tolist() == [
        [0, 4],
        [1, 5],
        [2, 6],
        [3, 7],
    ]


def test_recurrent_units_span_gates_layers_and_directions():
    entry = zoo.ZOO["gru"]
    g = graph.trace(entry.model(), entry.example())
    hidden = _group(g, "rnn.weight_hh_l0")
    assert hidden.size == 12
    assert hidden.index[("rnn.weight_ih_l0", 0)].shape[1] == 3  # r, z, n gates
    tensors = {m.tensor for m in hidden.members}
    assert {"rnn.weight_hh_l1_reverse", "fc.weight"} <= tensors
