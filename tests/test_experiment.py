"""``sparsitylab run`` (sparsitylab.experiment): flags, config files, outputs, errors and resuming
to exactly the state of an uninterrupted run."""

from __future__ import annotations

import json
import tomllib

import pytest
import torch

from sparsitylab import cli, experiment, train
from sparsitylab.deploy.serialize import load_model

TINY = ["--data", "digits", "--model", "mlp", "--model-option", "sizes=64,32,10"]


def run_cli(*argv: str) -> int:
    return cli.main(["run", *argv])


def fails(capsys, *argv: str) -> str:
    """Run the CLI expecting a user error: exit code 2 and one line on stderr; return it."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(*argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err, err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1, err
    return err


def test_parse_values_and_assignments():
    assert [experiment.parse_value(v) for v in ("3", "0.5", "True", "erk")] == [3, 0.5, True, "erk"]
    assert experiment.parse_assignments(["a=1", "b = x"]) == {"a": 1, "b": "x"}
    assert experiment.parse_assignments(["s=64,32"], lists=True) == {"s": [64, 32]}
    with pytest.raises(ValueError, match="key=value"):
        experiment.parse_assignments(["novalue"])


def test_toml_round_trip_and_override(tmp_path):
    base = {"method": "magnitude", "model": "mlp", "data": "digits", "sparsity": 0.5}
    config = experiment.resolve(base, {"options": {"budget": "erk", "first_dense": True}})
    (tmp_path / "c.toml").write_text(experiment.to_toml(config))
    assert experiment.load_config(tmp_path / "c.toml") == config
    over = experiment.resolve(config, {"epochs": 4, "options": {"budget": "uniform"}})
    assert over["epochs"] == 4 and over["options"] == {"budget": "uniform", "first_dense": True}


def test_outputs_present_and_well_formed(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("--method", "magnitude", "--sparsity", "0.75", "--epochs", "2", *TINY,
                   "--option", "budget=uniform", "--out", str(out)) == 0  # fmt: skip
    assert "magnitude: test accuracy" in capsys.readouterr().out
    names = {"config.toml", "metrics.json", "history.jsonl", "checkpoint.pt", "model.pt"}
    assert names <= {p.name for p in out.iterdir()}
    config = tomllib.loads((out / "config.toml").read_text())
    assert config["sparsity"] == 0.75 and config["options"] == {"budget": "uniform"}
    assert config["model_options"] == {"sizes": [64, 32, 10]}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["sparsity"] == pytest.approx(0.75, abs=0.01)
    assert set(metrics["layer_sparsity"]) == {"fc1", "fc2"} and metrics["params"] == 2410
    assert {"test_acc", "macs", "compacted_params", "seconds", "torch", "cpu", "date"} <= set(
        metrics
    )
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2] and history[0]["stage"] == "train"
    model = load_model(out / "model.pt")
    assert model(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


def test_config_file_with_flag_override(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text('method = "dense"\nmodel = "mlp"\ndata = "digits"\nepochs = 3\n'
                    '[model_options]\nsizes = [64, 16, 10]\n')  # fmt: skip
    assert run_cli("--config", str(path), "--epochs", "1", "--out", str(tmp_path / "o")) == 0
    written = tomllib.loads((tmp_path / "o" / "config.toml").read_text())
    assert written["epochs"] == 1 and written["method"] == "dense"
    assert len((tmp_path / "o" / "history.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method", "nope", *TINY], "method='nope' is not known"),
        (["--method", "dense", "--data", "digits", "--model", "nope"], "model='nope' is not known"),
        (["--method", "dense", "--model", "mlp", "--data", "mnist"], "data='mnist' is not known"),
        (["--method", "dense", *TINY, "--epochs", "two"], "argument --epochs"),
        (["--method", "dense", *TINY, "--epochs", "-1"], "epochs"),
        (["--method", "dense", *TINY, "--sparsity", "0.5"], "takes no sparsity"),
        (["--method", "magnitude", *TINY, "--sparsity", "1.5"], "sparsity"),
        (["--method", "magnitude", *TINY, "--sparsity", "0.5", "--option", "bogus=1"], "bogus"),
        (["--method", "dense", *TINY, "--option", "x"], "key=value"),
        (["--model", "mlp", "--data", "digits"], "names no method"),
    ],
)
def test_user_errors_are_one_line(tmp_path, capsys, argv, message):
    assert message in fails(capsys, *argv, "--out", str(tmp_path / "o"))


def test_folder_config_and_data_errors(tmp_path, capsys, no_data_anywhere):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("")
    assert "not an empty folder" in fails(capsys, "--method", "dense", *TINY, "--out", str(busy))
    empty = tmp_path / "empty"
    assert "does not exist" in fails(capsys, "--method", "dense", *TINY, "--out", str(empty),
                                     "--resume")  # fmt: skip
    bad = tmp_path / "bad.toml"
    bad.write_text("method = \n")
    assert "not valid TOML" in fails(capsys, "--config", str(bad), "--out", str(empty))
    bad.write_text('method = "dense"\nmodel = "mlp"\ndata = "digits"\nepoch = 1\n')
    assert "unknown key 'epoch'" in fails(capsys, "--config", str(bad), "--out", str(empty))
    err = fails(capsys, "--method", "dense", "--model", "mlp", "--data", "fashion-mnist",
                "--out", str(empty))  # fmt: skip
    assert "Fashion-MNIST was not found" in err


class Interrupt(Exception):
    """Stands for a kill: raised at the end of an epoch, before that epoch's checkpoint."""


class StopAt(train.Callback):
    def __init__(self, stage: str, epoch: int):
        self.stage, self.epoch = stage, epoch

    def on_epoch_end(self, model, epoch, record):
        if record["stage"] == self.stage and epoch == self.epoch:
            raise Interrupt


def _final(out) -> tuple[dict, dict]:
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("seconds", "date"):
        metrics.pop(key)
    return load_model(out / "model.pt").state_dict(), metrics


@pytest.mark.parametrize(
    "settings, stop",
    [
        ({"method": "dense"}, ("train", 2)),
        ({"method": "dense"}, ("finetune", 2)),
        (
            {"method": "magnitude", "sparsity": 0.8, "options": {"schedule": "gradual"}},
            ("train", 2),
        ),
        (
            {"method": "magnitude", "sparsity": 0.8, "options": {"schedule": "gradual"}},
            ("finetune", 2),
        ),
    ],
)
def test_resume_ends_exactly_like_an_uninterrupted_run(tmp_path, settings, stop):
    config = experiment.resolve(
        {"model": "mlp", "data": "digits", "epochs": 3, "finetune_epochs": 2, "batch_size": 64},
        {"model_options": {"sizes": [64, 32, 10]}, **settings},
    )
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    experiment.run_experiment(config, whole, progress=False)
    with pytest.raises(Interrupt):
        experiment.run_experiment(config, cut, progress=False, callbacks=(StopAt(*stop),))
    assert not (cut / "metrics.json").exists()
    experiment.run_experiment(config, cut, resume=True, progress=False)
    (state_a, metrics_a), (state_b, metrics_b) = _final(whole), _final(cut)
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert metrics_a == metrics_b
    lines = [(cut / "history.jsonl").read_text(), (whole / "history.jsonl").read_text()]
    epochs = [[(r["stage"], r["epoch"]) for r in map(json.loads, t.splitlines())] for t in lines]
    assert (
        epochs[0]
        == epochs[1]
        == [
            ("train", 1),
            ("train", 2),
            ("train", 3),
            ("finetune", 1),
            ("finetune", 2),
        ]
    )


def test_resume_through_the_cli(tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["--method", "dense", *TINY, "--epochs", "2", "--out", str(out)]
    assert run_cli(*argv) == 0
    assert run_cli(*argv, "--resume") == 0  # finished already: nothing left but to re-measure
    assert "differs" in fails(capsys, *argv, "--resume", "--lr", "0.1")


def test_recalibrate_bn_flag_reaches_the_runner(tmp_path, monkeypatch, capsys):
    seen = {}
    real_run = experiment.runner.run

    def spy(*args, **kwargs):
        seen["recalibrate_bn"] = kwargs["recalibrate_bn"]
        return real_run(*args, **kwargs)

    monkeypatch.setattr(experiment.runner, "run", spy)
    out = tmp_path / "out"
    assert run_cli("--method", "dense", *TINY, "--recalibrate-bn", "--out", str(out)) == 0
    assert seen["recalibrate_bn"] is True
    assert tomllib.loads((out / "config.toml").read_text())["recalibrate_bn"] is True
    assert run_cli("--method", "dense", *TINY, "--out", str(tmp_path / "plain")) == 0
    assert seen["recalibrate_bn"] is False


def test_a_killed_process_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGKILL mid-run (after the first checkpoint, while training goes on), then --resume."""
    import os
    import signal
    import subprocess
    import sys
    import time

    argv = [sys.executable, "-m", "sparsitylab", "run", "--method", "magnitude",
            "--sparsity", "0.8", "--option", "schedule=gradual", *TINY, "--epochs", "40",
            "--batch-size", "16"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    subprocess.run([*argv, "--out", str(whole)], check=True, env=env, capture_output=True)
    process = subprocess.Popen(
        [*argv, "--out", str(cut)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while not (cut / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (cut / "metrics.json").exists()  # killed before the end: a real interruption
    subprocess.run([*argv, "--out", str(cut), "--resume"], check=True, env=env, capture_output=True)
    (state_a, metrics_a), (state_b, metrics_b) = _final(whole), _final(cut)
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert metrics_a == metrics_b
