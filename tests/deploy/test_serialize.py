"""A compacted model saves as architecture-as-data plus tensors and reloads, weights_only, in a
fresh process with identical outputs."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from sparsitylab import models, reparam
from sparsitylab.deploy import compaction, serialize


def compacted(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    net = models.build(name).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.weight.shape[0] > 10:
                m.weight[: m.weight.shape[0] // 3] = 0
                if m.bias is not None:
                    m.bias[: m.weight.shape[0] // 3] = 0
                m.weight.flatten(1)[:, :2] = 0  # dead GEMM columns: convs become GemmConv2d
    return compaction.compact(net)


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_a_compacted_model_reloads_in_a_fresh_process_with_identical_outputs(tmp_path, name):
    small = compacted(name)
    x = torch.randn(3, 1, 28, 28)
    torch.save(x, tmp_path / "x.pt")
    torch.save(small(x), tmp_path / "y.pt")
    serialize.save_model(tmp_path / "m.pt", small)
    script = (
        "import sys, torch\n"
        "from sparsitylab.deploy import serialize\n"
        "model = serialize.load_model(sys.argv[1])\n"
        "x, y = torch.load(sys.argv[2], weights_only=True), torch.load(sys.argv[3], "
        "weights_only=True)\n"
        "assert torch.equal(model(x), y), 'outputs differ'\n"
        "print(sum(p.numel() for p in model.parameters()))\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(tmp_path / "m.pt"),
            str(tmp_path / "x.pt"),
            str(tmp_path / "y.pt"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(out.stdout) == sum(p.numel() for p in small.parameters())
    assert any(isinstance(m, compaction.GemmConv2d) for m in small.modules()) == (name != "mlp")


def test_a_foreign_model_is_saved_as_a_plan_and_reloaded_into_its_own_class(tmp_path):
    class Custom(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(x).relu()

    model = Custom()
    serialize.save_model(tmp_path / "m.pt", model)
    with pytest.raises(ValueError, match="pass a freshly built instance"):
        serialize.load_model(tmp_path / "m.pt")
    with pytest.raises(ValueError, match="was saved from a"):
        serialize.load_model(tmp_path / "m.pt", model=torch.nn.Linear(4, 3))
    loaded = serialize.load_model(tmp_path / "m.pt", model=Custom())
    x = torch.randn(2, 4)
    assert torch.equal(loaded(x), model(x))
    with pytest.raises(TypeError, match="cannot describe a Custom"):
        serialize.architecture(torch.nn.Sequential(Custom()))


def test_what_cannot_be_saved_is_refused(tmp_path):
    masked = models.mlp((4, 3, 2))
    reparam.apply_masks(masked, {"fc1": torch.ones(3, 4, dtype=torch.bool)})
    with pytest.raises(TypeError, match="still reparametrised"):
        serialize.save_model(tmp_path / "m.pt", masked)
    torch.save({"x": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not written by"):
        serialize.load_model(tmp_path / "other.pt")
