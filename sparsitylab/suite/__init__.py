"""``sparsitylab bench methods``: every method of the book at one matched budget, side by side.

The large-scale comparison the STR-BN document asks for ("similar to Gale et al., 2019"), at the
scale two CPU cores allow. Each (model, seed) pair gets one JSON file in ``--out``
(``data/results/methods-<model>-seed<k>.json``), rewritten atomically after every run, so an
interrupted benchmark keeps what it finished.

**The budget** (:class:`Settings`): every method trains ``pre + post`` epochs in all, on the same
``train_size`` Fashion-MNIST images (one fixed subset; the seed changes the initialisation and the
shuffling), SGD with momentum 0.9, cosine LR per stage, tested on the same ``test_size`` images.

- methods that start from a trained model (one-shot magnitude, ASP, HBS, SSL, STR-BN, Network
  Slimming) start from the **shared dense model after ``pre`` epochs** and get the other ``post``;
- from-scratch methods (gradual magnitude, ERK, STR, SR-STE) train ``pre + post`` epochs from the
  same initialisation under one cosine;
- two **dense controls**, each the identical-budget control of its rows: the shared model trained
  ``post`` more epochs (a warm restart: the control of the rows that start from it), and a model
  trained ``pre + post`` epochs from scratch under one cosine (the control of the from-scratch
  rows) — :func:`control_key`;
- post-training methods (SIS, Wanda, SparseGPT, layer-wise magnitude) calibrate the dense
  baseline on ``sis_images`` images and are not retrained;
- ASP's full recipe ("asp-2x") prunes the single-cosine dense model and re-trains ``pre + post``
  epochs: twice SR-STE's budget, as the ASP paper prescribes.

**Targets**: the unstructured family (and HBS) at 80 % and 90 % weight sparsity; N:M at 2:4 and 1:4;
the channel methods at 70 % and 50 % of the dense MACs (STR-BN and Slimming, on the model with
BatchNorm); SSL and SIS have no target knob, so each runs at two strengths and reports what it
reaches: SSL at two proximal thresholds per step η·λ/(1 − μ) (λ scaled by each model's learning rate
η), SIS at two relative tolerances ρ; the post-training methods at 50 % and 80 % (and 2:4, 1:4). The
choices follow the method chapters (which say where they come from).

**Measured per run**: test accuracy, which test images it gets right (packed bits, for the paired
statistics of :func:`compare`), the fingerprint of the model it started from, weight sparsity,
non-zeros, dense / sparse / compacted MACs, wall time, and the mean seconds per training epoch (its
ratio to the dense baseline's epochs is the training overhead). For seed 0 also the inference
latency of every deployable form — ``masked`` (zeros in dense tensors), ``CSR``, ``HBS``, ``2:4``
(its CSR view on the CPU), ``compacted`` — at batch 1 and 256, timed round-robin with the dense
model (:func:`sparsitylab.timing.interleaved`, wall clock, ``latency_threads`` torch threads).
"""

from .bench import count_runs, main, record, run_model
from .forms import check_forms, deployable_forms, latency
from .recipes import (
    BATCHES,
    GROWTH_RECIPES,
    MODELS,
    QUICK,
    RECIPE,
    RECIPES,
    Context,
    Recipe,
    Settings,
    build_loaders,
    build_model,
    hbs_levels,
)
from .results import (
    compare,
    control_key,
    deployed_macs,
    latency_table,
    load_results,
    mean_and_spread,
    pareto_front,
    summarise,
)

__all__ = [
    "compare",
    "control_key",
    "latency_table",
    "BATCHES",
    "MODELS",
    "QUICK",
    "GROWTH_RECIPES",
    "RECIPE",
    "RECIPES",
    "Context",
    "Recipe",
    "Settings",
    "build_loaders",
    "build_model",
    "check_forms",
    "count_runs",
    "deployed_macs",
    "mean_and_spread",
    "pareto_front",
    "summarise",
    "deployable_forms",
    "hbs_levels",
    "latency",
    "load_results",
    "main",
    "record",
    "run_model",
]
