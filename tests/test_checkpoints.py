"""Checkpoints: a full round trip resumes training to the same numbers; a kill mid-write loses
nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from sparsitylab import checkpoints, models, reparam, train
from sparsitylab.methods.magnitude import one_shot


def _steps(model, optimizer, batches):
    for x, y in batches:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def _batches(generator, n=3):
    return [
        (torch.randn(8, 64, generator=generator), torch.randint(0, 10, (8,), generator=generator))
        for _ in range(n)
    ]


def test_resuming_from_a_checkpoint_gives_the_same_model_as_never_stopping(tmp_path):
    torch.manual_seed(0)
    net = models.mlp((64, 32, 10))
    method = one_shot(0.5)
    method.prepare(net)
    opt = train.sgd(net, lr=0.1)
    data = torch.Generator().manual_seed(1)
    _steps(net, opt, _batches(data))
    checkpoints.save_checkpoint(
        tmp_path / "c.pt", net, opt, method=method, generators={"data": data}, extra={"step": 3}
    )
    _steps(net, opt, _batches(data))  # the uninterrupted run goes on
    expected = [p.detach().clone() for p in net.parameters()]

    fresh = models.mlp((64, 32, 10))  # a new process would start like this
    fresh_method = one_shot(0.5)
    resumed_data = torch.Generator()
    extra = checkpoints.load_checkpoint(
        tmp_path / "c.pt", fresh, method=fresh_method, generators={"data": resumed_data}
    )
    fresh_opt = train.sgd(fresh, lr=0.1)  # the optimizer is built after the model …
    checkpoints.load_checkpoint(tmp_path / "c.pt", fresh, optimizer=fresh_opt, restore_rng=False)
    _steps(fresh, fresh_opt, _batches(resumed_data))
    assert extra == {"step": 3} and fresh_method.events == method.events
    assert reparam.get_masks(fresh).keys() == reparam.get_masks(net).keys()
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), expected))


def test_a_checkpoint_loads_with_weights_only_and_refuses_other_files(tmp_path):
    net = models.lenet5()
    path = checkpoints.save_checkpoint(tmp_path / "c.pt", net)
    assert torch.load(path, weights_only=True)["format"] == checkpoints.FORMAT
    torch.save({"model": net.state_dict()}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a sparsitylab checkpoint"):
        checkpoints.load_checkpoint(tmp_path / "plain.pt", models.lenet5())
    with pytest.raises(ValueError, match="holds no optimizer state"):
        checkpoints.load_checkpoint(path, models.lenet5(), optimizer=train.sgd(models.lenet5()))


CHILD = textwrap.dedent(
    """
    import sys, time
    import torch
    from sparsitylab import checkpoints, files, models

    path = sys.argv[1]
    checkpoints.save_checkpoint(path, models.mlp((64, 32, 10)), extra={"version": 1})
    real_save = torch.save

    def slow_save(obj, f):           # write half of the bytes, then hang: the parent kills us here
        import io
        buffer = io.BytesIO()
        real_save(obj, buffer)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        print("writing", flush=True)
        time.sleep(60)
        f.write(data[len(data) // 2 :])

    files.torch.save = slow_save
    checkpoints.save_checkpoint(path, models.mlp((64, 32, 10)), extra={"version": 2})
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_process_killed_while_writing_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "run.pt"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "writing"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    extra = checkpoints.load_checkpoint(path, models.mlp((64, 32, 10)))
    assert extra == {"version": 1}  # the old file, whole
    leftovers = list(tmp_path.glob(".run.pt.*.tmp"))
    assert len(leftovers) == 1  # the half-written temporary file …
    time.sleep(0.01)
    checkpoints.save_checkpoint(path, models.mlp((64, 32, 10)), extra={"version": 3})
    assert not list(tmp_path.glob(".run.pt.*.tmp"))  # … is cleaned up by the next save
