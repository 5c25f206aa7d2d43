"""bench methods (sparsitylab.suite): recipes, the results schema, deployable forms, reproducibility
and the command line. Tiny budgets (Settings QUICK); no timing is asserted."""

from __future__ import annotations

import json
import math
import statistics

import pytest
import torch

from sparsitylab import cli, suite
from sparsitylab.significance import pack_correct, unpack_correct
from sparsitylab.sparsify.hierarchical import hierarchical_masks, parse_config, union

TINY = suite.QUICK


@pytest.mark.parametrize("target", [0.6, 0.8, 0.9])
def test_hbs_levels_reach_the_target_sparsity(target):
    masks = hierarchical_masks(torch.randn(400, 160), parse_config(suite.hbs_levels(target)))
    assert abs(1 - union(masks).float().mean().item() - target) < 1e-3
    assert suite.hbs_levels(0.9) == "4x1/93+1x1/97"


def test_every_recipe_is_named_once_and_applies_to_a_model():
    keys = [r.key for r in suite.RECIPES + suite.GROWTH_RECIPES]
    assert len(keys) == len(set(keys)) and set(suite.RECIPE) == set(keys)
    for recipe in suite.RECIPES + suite.GROWTH_RECIPES:
        assert set(recipe.models) <= set(suite.MODELS) and recipe.targets
        assert recipe.family in ("unstructured", "N:M", "structured")
    assert suite.count_runs(["lenet5"], suite.RECIPES) == 2 + sum(
        len(r.targets) for r in suite.RECIPES if "lenet5" in r.models
    )


@pytest.fixture(scope="module")
def lenet_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    recipes = [suite.RECIPE[k] for k in ("magnitude", "sr-ste", "hbs", "ssl")]
    result = suite.run_model("lenet5", 0, TINY, recipes, out, report=lambda line: None)
    return out, result


def test_results_file_holds_every_run_with_its_machine(lenet_result):
    out, result = lenet_result
    (saved,) = suite.load_results(out)
    assert saved == json.loads(json.dumps(result))  # what is on disk is what was returned
    assert saved["model"] == "lenet5" and saved["seed"] == 0 and saved["cpu"]
    assert (
        saved["settings"]["train_size"] == TINY.train_size and saved["torch"] == torch.__version__
    )
    keys = [(r["key"], r["target"]) for r in saved["runs"]]
    assert keys == [("dense", None), ("dense-scratch", None)] + [
        (k, t) for k in ("magnitude", "sr-ste", "hbs", "ssl") for t in suite.RECIPE[k].targets
    ]
    for run in saved["runs"]:
        assert 0 <= run["test_acc"] <= 1 and 0 <= run["sparsity"] < 1
        assert run["nonzeros"] <= run["params"] and run["sparse_macs"] <= run["macs"]
        assert run["seconds"] > 0 and math.isfinite(run["epoch_seconds"])
        correct = unpack_correct(run["correct"], TINY.test_size)
        assert float(correct.float().mean()) == pytest.approx(run["test_acc"])
    magnitude = [r for r in saved["runs"] if r["key"] == "magnitude"]
    assert [round(r["sparsity"], 3) for r in magnitude] == [0.8, 0.9]  # exact global budgets
    nm = [r for r in saved["runs"] if r["key"] == "sr-ste"]
    assert all(
        r["layer_sparsity"]["fc1"] == pytest.approx(t, abs=1e-3) for r, t in zip(nm, (0.5, 0.75))
    )


def test_every_run_started_from_the_model_its_recipe_names(lenet_result):
    """Fingerprints of what each run really started from: one shared pretrained model per file,
    one initialisation for the from-scratch runs (the check chapter 8 repeats on its data)."""
    _, result = lenet_result
    start_of = {
        "pretrained": result["pretrained_fingerprint"],
        "scratch": result["init_fingerprint"],
        "dense": result["dense_fingerprint"],
        "dense-scratch": result["scratch_fingerprint"],
    }
    assert len(set(start_of.values())) == 4
    for run in result["runs"]:
        assert run["start_fingerprint"] == start_of[run["start"]], run["key"]


def test_every_run_of_a_file_sees_the_batches_in_a_fresh_loaders_order():
    ctx = suite.Context("lenet5", 3, TINY, suite.build_loaders(TINY, 3))
    first = ctx.run("dense", ctx.fresh(), 1)
    second = ctx.run("dense", ctx.fresh(), 1)  # the same run again, after the first consumed
    assert first.test_acc == second.test_acc  # batches from the loader's generator
    a, b = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_growth_recipes_train_from_the_initialisation_at_their_exact_sparsity():
    recipes = [suite.RECIPE[k] for k in ("static-sparse", "rigl")]
    result = suite.run_model("lenet5", 2, TINY, recipes, None, report=lambda line: None)
    runs = {(r["key"], r["target"]): r for r in result["runs"]}
    for key in ("static-sparse", "rigl"):
        for target in (0.9, 0.95):
            assert runs[key, target]["start_fingerprint"] == result["init_fingerprint"]
            assert runs[key, target]["sparsity"] == pytest.approx(target, abs=0.005)
    assert suite.recipes.update_interval(316) == 10 and suite.recipes.update_interval(8) == 1


def test_post_training_recipes_start_from_the_dense_baseline_and_are_not_retrained(tmp_path):
    recipes = [suite.RECIPE[k] for k in ("wanda", "sparsegpt-nm", "asp-2x")]
    result = suite.run_model("lenet5", 1, TINY, recipes, None, report=lambda line: None)
    runs = {(r["key"], r["target"]): r for r in result["runs"]}
    assert runs["wanda", 0.8]["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert runs["wanda", 0.8]["start_fingerprint"] == result["dense_fingerprint"]
    assert runs["sparsegpt-nm", 0.5]["layer_sparsity"]["fc1"] == pytest.approx(0.5)
    assert runs["asp-2x", 0.75]["start_fingerprint"] == result["scratch_fingerprint"]
    assert runs["asp-2x", 0.75]["layer_sparsity"]["fc1"] == pytest.approx(0.75)


def test_seed_zero_times_each_form_that_applies(lenet_result):
    _, result = lenet_result
    latency = result["latency"]
    assert set(latency["dense"]) == {"1", "256"}
    assert set(latency["magnitude@0.8"]) == {"dense", "masked", "CSR"}
    assert set(latency["sr-ste@0.5"]) == {"dense", "masked", "CSR", "2:4"}
    assert "2:4" not in latency["sr-ste@0.75"]  # 1:4 has no 2:4 form
    assert set(latency["hbs@0.9"]) == {"dense", "masked", "CSR", "HBS"}
    assert set(latency["ssl@0.02"]) == {"dense", "masked", "compacted"}
    timing = latency["hbs@0.9"]["HBS"]["256"]
    assert timing["clock"] == "wall" and timing["threads"] == 1 and timing["median"] > 0


def test_a_rerun_gives_the_same_numbers(lenet_result):
    """The chapter's live check: the same seed and settings reproduce a stored run."""
    _, result = lenet_result
    again = suite.run_model(
        "lenet5", 0, TINY, [suite.RECIPE["magnitude"]], None, latency_seeds=(), report=print
    )
    first = {(r["key"], r["target"]): r for r in result["runs"]}
    for run in again["runs"]:
        stored = first[(run["key"], run["target"])]
        assert run["test_acc"] == stored["test_acc"] and run["nonzeros"] == stored["nonzeros"]
    assert again["latency"] == {}


def test_check_forms_refuses_a_form_that_computes_something_else():
    torch.manual_seed(0)
    model = suite.build_model("lenet5", 0).eval()
    other = suite.build_model("lenet5", 1).eval()
    x = torch.randn(2, 1, 28, 28)
    suite.check_forms({"same": model}, model, x)
    with pytest.raises(AssertionError, match="form 'other' differs"):
        suite.check_forms({"other": other}, model, x)


def test_unknown_names_are_usage_errors(capsys):
    for flags in (["--models", "resnet50"], ["--methods", "magnitude,bogus"], ["--seeds", "0"]):
        with pytest.raises(SystemExit) as err:
            suite.main(flags)
        assert err.value.code == 2
    assert "choose from" in capsys.readouterr().err
    with pytest.raises(ValueError, match="model='vgg'"):
        suite.build_model("vgg", 0)


def test_the_command_line_lists_and_runs_it(capsys):
    assert cli.main(["bench", "--list"]) == 0
    assert "methods" in capsys.readouterr().out


def test_rerunning_some_methods_keeps_the_others_and_refuses_other_settings(lenet_result):
    out, first = lenet_result
    again = suite.run_model(
        "lenet5", 0, TINY, [suite.RECIPE["magnitude"]], out, latency_seeds=(), report=print
    )
    (saved,) = suite.load_results(out)
    assert saved == json.loads(json.dumps(again))
    assert sorted((r["key"], r["target"]) for r in saved["runs"]) == sorted(
        (r["key"], r["target"]) for r in first["runs"]
    )
    assert "sr-ste@0.5" in saved["latency"] and "magnitude@0.8" not in saved["latency"]
    other = suite.Settings(**{**vars(TINY), "post": 2})
    with pytest.raises(ValueError, match="other settings"):
        suite.run_model("lenet5", 0, other, [suite.RECIPE["magnitude"]], out, report=print)
    path = out / "methods-lenet5-seed0.json"
    for key, value in [("train_threads", 99), ("code", "0" * 16), ("torch", "1.0")]:
        changed = {**json.loads(path.read_text()), key: value}
        path.write_text(json.dumps(changed))
        with pytest.raises(ValueError, match=f"another environment \\({key}: file"):
            suite.run_model("lenet5", 0, TINY, [suite.RECIPE["magnitude"]], out, report=print)
        path.write_text(json.dumps(saved))


def _file(seed, dense_acc, acc, timed, epoch_seconds):
    base = {"compacted_macs": None, "sparse_macs": 100, "macs": 100, "seconds": 1.0}
    dense = {**base, "key": "dense", "label": "dense", "family": "dense", "target": None}
    dense |= {"start": "pretrained"}
    dense |= {"target_kind": None, "test_acc": dense_acc, "sparsity": 0.0, "epoch_seconds": 2.0}
    run = {**base, "key": "ssl", "label": "SSL", "family": "structured", "target": 0.1}
    run |= {"start": "pretrained"}
    run |= {"target_kind": "λ", "test_acc": acc, "sparsity": 0.05, "compacted_macs": 40}
    run |= {"epoch_seconds": epoch_seconds}
    latency = {"dense": {}} if timed else {}
    return {"model": "lenet5", "seed": seed, "runs": [dense, run], "latency": latency}


def test_summarise_averages_seeds_against_their_own_dense_runs():
    rows = suite.summarise([_file(0, 0.80, 0.78, True, 3.0), _file(1, 0.82, 0.79, False, 9.0)])
    (ssl,) = [r for r in rows if r["key"] == "ssl"]
    assert ssl["accuracy"] == pytest.approx(0.785) and ssl["seeds"] == 2
    assert ssl["spread"] == pytest.approx(statistics.stdev([0.78, 0.79]))
    assert ssl["vs dense"] == pytest.approx(-0.025)  # (−0.02 − 0.03) / 2, seed by seed
    assert ssl["MACs / dense"] == pytest.approx(0.4)  # the compacted model's MACs
    assert ssl["overhead"] == pytest.approx(1.5)  # the timed (quiet) seed only: 3.0 / 2.0
    assert suite.pareto_front([1, 2, 3], [0.5, 0.4, 0.6]) == [0, 2]


def test_main_runs_a_seed_range_with_a_thread_count(tmp_path):
    threads = torch.get_num_threads()
    try:
        flags = ["--quick", "--models", "lenet5", "--methods", "magnitude", "--first-seed", "1"]
        assert suite.main([*flags, "--seeds", "2", "--threads", "1", "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    (saved,) = suite.load_results(tmp_path)
    assert saved["seed"] == 1 and saved["latency"] == {}  # only seed 0 is timed
    assert {r["train_threads"] for r in saved["runs"]} == {1}


def _paired_file(seed, dense_hits, run_hits):
    """A results file whose two runs get ``*_hits`` of 100 test images right (the first ones)."""

    def run(key, start, hits, target):
        correct = torch.arange(100) < hits
        return {
            "key": key, "target": target, "start": start, "test_acc": hits / 100,
            "correct": pack_correct(correct),
        }  # fmt: skip

    runs = [run("dense", "pretrained", dense_hits, None), run("gradual", "scratch", 0, 0.8)]
    runs.append(run("dense-scratch", "scratch", dense_hits, None))
    runs[1] = run("gradual", "scratch", run_hits, 0.8)
    return {"model": "lenet5", "seed": seed, "settings": {"test_size": 100}, "runs": runs}


def test_compare_pairs_by_seed_and_by_image_and_resolves_only_a_consistent_gap():
    clear = [_paired_file(s, 70, 70 + g) for s, g in enumerate((20, 22, 21))]
    found = suite.compare(clear, "lenet5", ("gradual", 0.8), ("dense-scratch", None))
    assert found["difference"] == pytest.approx(0.21)
    assert found["seeds"].low > 0 and found["images"].low > 0 and found["resolved"]
    assert all(p < 1e-4 for p in found["mcnemar_p"])  # 20+ images one way, none the other
    noisy = [_paired_file(s, 70, 70 + g) for s, g in enumerate((9, -8, 2))]
    found = suite.compare(noisy, "lenet5", ("gradual", 0.8), ("dense-scratch", None))
    assert found["seeds"].low < 0 < found["seeds"].high and not found["resolved"]
    assert suite.control_key({"start": "scratch"}) == "dense-scratch"
    assert suite.control_key({"start": "pretrained"}) == "dense"
    with pytest.raises(ValueError, match="holds both"):
        suite.compare(clear, "lenet5", ("gradual", 0.9), ("dense", None))
