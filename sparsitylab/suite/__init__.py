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
  same initialisation;
- the **dense baseline** is the shared model trained ``post`` more epochs: the identical-budget
  control every row is compared with;
- SIS is post-training: it calibrates the dense baseline and is not retrained (its claim).

**Targets**: the unstructured family (and HBS) at 80 % and 90 % weight sparsity; N:M at 2:4 and
1:4; the channel methods at 70 % and 50 % of the dense MACs (STR-BN and Slimming, on the model with
BatchNorm); SSL and SIS have no target knob, so each runs at two strengths and reports what it
reaches: SSL at two proximal thresholds per step η·λ/(1 − μ) (λ scaled by each model's learning
rate η), SIS at two relative tolerances ρ. The choices follow the method chapters (which say where
they come from).

**Measured per run**: test accuracy, weight sparsity, non-zeros, dense / sparse / compacted MACs,
wall time, and the mean seconds per training epoch (its ratio to the dense baseline's epochs is the
training overhead). For seed 0 also the inference latency of every deployable form — ``masked``
(zeros in dense tensors), ``CSR``, ``HBS``, ``2:4`` (its CSR view on the CPU), ``compacted`` —
at batch 1 and 256, timed round-robin with the dense model (:func:`sparsitylab.timing.interleaved`,
wall clock, ``latency_threads`` torch threads).
"""

from .bench import count_runs, main, record, run_model
from .forms import check_forms, deployable_forms, latency
from .recipes import (
    BATCHES,
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
from .results import deployed_macs, load_results, mean_and_spread, pareto_front, summarise

__all__ = [
    "BATCHES",
    "MODELS",
    "QUICK",
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
