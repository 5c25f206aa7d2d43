"""``sparsitylab run`` under torchrun (two CPU processes, gloo): outputs written once, masks and STR
thresholds identical on every rank, the same result as one process with the same global batch, and
a clean error when the processes do not split the batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

TINY = ["--data", "digits", "--model", "mlp", "--model-option", "sizes=64,32,10"]
TIMEOUT = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(dump=None) -> dict[str, str]:
    out = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SPARSITYLAB_TEST_DUMP"):
        out.pop(key, None)
    if dump is not None:
        dump.mkdir(exist_ok=True)
        out["SPARSITYLAB_TEST_DUMP"] = str(dump)
    return out


def torchrun(nproc: int, *argv: str, dump=None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_port", str(free_port()), "-m", "sparsitylab", "run", *argv]  # fmt: skip
    return subprocess.run(
        command, env=env(dump), capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def dumps(folder, nproc):
    return [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(nproc)]


MAGNITUDE = ["--method", "magnitude", "--sparsity", "0.8", "--option", "schedule=gradual"]
STR = ["--method", "str", "--option", "s_init=-5.0", "--option", "threshold_decay=0.01"]


@pytest.mark.parametrize("method", [MAGNITUDE, STR], ids=["magnitude", "str"])
def test_two_ranks_agree_and_match_one_process(tmp_path, method):
    common = [*method, "--epochs", "2", "--batch-size", "64", "--lr", "0.1", *TINY]
    two = torchrun(2, *common, "--out", str(tmp_path / "two"), dump=tmp_path / "d2")
    assert two.returncode == 0, two.stdout + two.stderr
    assert two.stdout.count("test accuracy") == 1  # rank 0 alone prints
    names = {"config.toml", "metrics.json", "history.jsonl", "checkpoint.pt", "model.pt"}
    assert names <= {p.name for p in (tmp_path / "two").iterdir()}
    history = (tmp_path / "two" / "history.jsonl").read_text().splitlines()
    assert len(history) == 2  # one line per epoch, written once

    rank0, rank1 = dumps(tmp_path / "d2", 2)
    assert rank0.keys() == rank1.keys()
    assert not any(k.startswith("module.") for k in rank0)
    masks = [k for k in rank0 if k.endswith(("mask", ".s", "original0", "original"))]
    assert masks, sorted(rank0)
    for key in rank0:  # masks, thresholds and weights: bit for bit the same on both ranks
        assert torch.equal(rank0[key], rank1[key]), key

    one = torchrun(1, *common, "--out", str(tmp_path / "one"), dump=tmp_path / "d1")
    assert one.returncode == 0, one.stdout + one.stderr
    (single,) = dumps(tmp_path / "d1", 1)
    for key in rank0:
        if rank0[key].is_floating_point():
            torch.testing.assert_close(rank0[key], single[key], rtol=0, atol=1e-5, msg=key)
        else:
            assert torch.equal(rank0[key], single[key]), key
    two_m = json.loads((tmp_path / "two" / "metrics.json").read_text())
    one_m = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert two_m["test_acc"] == one_m["test_acc"] and two_m["nonzeros"] == one_m["nonzeros"]


def test_world_size_must_split_the_batch(tmp_path):
    argv = [*MAGNITUDE, *TINY, "--batch-size", "63", "--out", str(tmp_path / "x")]
    # as a torchrun worker sees it, without a rendezvous (the check comes before it)
    worker = {**env(), "RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}
    done = subprocess.run([sys.executable, "-m", "sparsitylab", "run", *argv], env=worker,
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "does not split over 2 processes" in errors[0], done.stderr
    # under torchrun: every worker exits 2 (torchrun itself reports the failure with code 1)
    run = torchrun(2, *argv)
    assert run.returncode != 0 and "does not split over 2 processes" in run.stderr
    assert "exitcode  : 2" in run.stderr, run.stderr
    assert not (tmp_path / "x").exists()


def test_resume_under_torchrun_after_killing_every_process(tmp_path):
    """SIGKILL the whole torchrun process group after the first checkpoint, resume under torchrun,
    end exactly where an uninterrupted two-process run ends."""
    import signal
    import time

    from sparsitylab.deploy.serialize import load_model

    common = [*MAGNITUDE, "--epochs", "12", "--batch-size", "16", *TINY]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    done = torchrun(2, *common, "--out", str(whole))
    assert done.returncode == 0, done.stdout + done.stderr
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_port", str(free_port()), "-m", "sparsitylab", "run", *common,
               "--out", str(cut)]  # fmt: skip
    process = subprocess.Popen(
        command, env=env(), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + TIMEOUT
    while not (cut / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)  # torchrun and both workers
    process.wait(timeout=TIMEOUT)
    assert not (cut / "metrics.json").exists()  # killed before the end: a real interruption
    resumed = torchrun(2, *common, "--out", str(cut), "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    a, b = load_model(whole / "model.pt").state_dict(), load_model(cut / "model.pt").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (whole, cut)]
    for m in metrics:
        m.pop("seconds"), m.pop("date")
    assert metrics[0] == metrics[1]
