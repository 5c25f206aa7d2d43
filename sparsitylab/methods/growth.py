"""Growth: sparse from the first step to the last — SET, RigL, SNFS and the static-sparse control.

Recipe (Chapter 10, ``book/10_growth``)::

    method = RigL(0.9, total_steps=epochs * len(loaders.train))   # random ERK mask at step 0
    run = runner.run(method, models.lenet5(), loaders, epochs=epochs)
    method.updates    # one record per mask update: step, drop fraction, flips, layer densities

Every method starts from a random mask with exactly the budget's non-zeros per layer ("erk" or
"uniform", :mod:`sparsitylab.sparsify.budgets`) and keeps it on the fixed-mask reparametrisation
(:mod:`sparsitylab.reparam.fixed_mask`). Every ``update_every`` optimizer steps, until
``end_fraction`` of training, each layer drops its smallest-|w| active weights and regrows as many
(:func:`sparsitylab.sparsify.growth.drop_grow`), so the number of active weights never changes:

- :class:`SET` (Mocanu et al., Nature Communications 2018): drop fraction ζ = 0.3, constant;
  regrow at uniformly random inactive positions (the RNG is in the checkpoint).
- :class:`RigL` (Evci et al., ICML 2020): drop fraction α = 0.3 cosine-annealed to 0 at 75 % of
  training; regrow where the *dense* gradient |∂L/∂W| of the current batch is largest.
- :class:`SNFS` (Dettmers & Zettlemoyer 2019, "sparse momentum"): prune rate 0.5 cosine-decayed to
  0.005 over training; the pruned total is redistributed across layers in proportion to each
  layer's mean |momentum| over its active weights; each layer regrows where |momentum| is largest.
- :class:`StaticSparse`: the random start, never updated (the control at equal FLOPs).

Choices, stated (the papers and their code differ in places):

- the dense gradient is ∂L/∂W_eff, the gradient of the masked weight the layer multiplies by,
  read by a hook on the mask's output during the ordinary backward pass (PyTorch computes it in
  full anyway; RigL's FLOP accounting counts it at update steps only, as :meth:`step_flops` does);
- the update follows the optimizer step of the same batch (RigL's ``apply_gradients`` applies the
  step, then updates the mask); under torchrun the dense gradients are averaged over ranks first;
- grown weights start at exactly 0 (RigL's ``grow_init='zeros'``; SET's original code draws small
  random values); a weight dropped and regrown in the same update keeps its value (RigL's code);
- the optimizer state (momentum) of every position whose mask changed is reset to 0: RigL's code
  resets the grown ones; resetting the dropped ones too keeps their hidden stored value at 0;
- counts: ⌊fraction·active⌋ per layer (RigL's ``int()``); SNFS's redistribution is made exact
  (:func:`sparsitylab.sparsify.growth.apportion`) where its code corrects the total on average;
- SNFS's momentum is an exponential sum of dense gradients, m ← μ·m + g with the optimizer's μ
  (its code reads SGD's buffer, which sees dense gradients because it masks weights, not grads).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from .. import distributed, reparam
from .._checks import check_choice, check_int, check_real, check_sparsity
from ..coverage import Scope, check_scope, weight_matrices
from ..reparam.tap import GradientTap
from ..sparsify.budgets import budget_sparsities
from ..sparsify.growth import cosine_fraction, drop_grow, random_masks
from ..sparsify.masks import pruned_count
from . import register
from .base import Method

GROWTH_BUDGETS = ("erk", "uniform")


def _trainable(matrix: Any) -> bool:
    """Whether the stored tensor behind a covered matrix receives gradients."""
    return bool(getattr(matrix.module, matrix.attr).requires_grad)


class DynamicSparse(Method):
    """The shared life cycle (module docstring); subclasses choose :meth:`grow_scores`,
    :meth:`fraction_at` and, for SNFS, the per-layer counts (:meth:`counts`).

    sparsity: over the covered weights (``scope``) at every step; total_steps: the optimizer steps
    of training; update_every: ΔT; drop_fraction: the fraction of each layer's active weights
    dropped at the first update (α, ζ or the prune rate); end_fraction: no update from this
    fraction of total_steps on; budget: "erk" or "uniform" layer densities; first_dense /
    last_dense: leave the first / last matrix dense (the others compensate); seed: the random
    initial mask (and SET's regrowth).
    """

    name: ClassVar[str] = ""
    uses_gradient: ClassVar[bool] = False  # whether updates read the dense gradient
    defaults: ClassVar[dict[str, float]] = {"drop_fraction": 0.3, "end_fraction": 0.75}

    def __init__(
        self,
        sparsity: float,
        total_steps: int,
        update_every: int = 100,
        drop_fraction: float | None = None,
        end_fraction: float | None = None,
        budget: str = "erk",
        first_dense: bool = False,
        last_dense: bool = False,
        scope: Scope = None,
        seed: int = 0,
    ):
        self.sparsity = check_sparsity(sparsity)
        self.total_steps = check_int(total_steps, "total_steps", minimum=1)
        self.update_every = check_int(update_every, "update_every", minimum=1)
        if drop_fraction is None:
            drop_fraction = self.defaults["drop_fraction"]
        if end_fraction is None:
            end_fraction = self.defaults["end_fraction"]
        self.drop_fraction = check_real(drop_fraction, "drop_fraction", 0.0, 1.0, open_max=True)
        if self.drop_fraction == 0.0:
            raise ValueError(f"drop_fraction={drop_fraction!r} must be in (0, 1)")
        self.end_fraction = check_real(end_fraction, "end_fraction", 0.0, 1.0)
        if self.end_fraction == 0.0:
            raise ValueError(f"end_fraction={end_fraction!r} must be in (0, 1]")
        self.budget = check_choice(budget, "budget", GROWTH_BUDGETS)
        self.first_dense, self.last_dense = first_dense, last_dense
        self.scope = check_scope(scope)
        self.seed = check_int(seed, "seed")
        self.generator = torch.Generator().manual_seed(self.seed)
        self.names: list[str] = []
        self.updates: list[dict[str, Any]] = []
        self.optimizer: torch.optim.Optimizer | None = None
        self.tap: GradientTap | None = None

    # -- schedule ---------------------------------------------------------------------------------

    @property
    def end_step(self) -> int:
        """The first step with no update: ⌊end_fraction · total_steps⌋."""
        return math.floor(self.end_fraction * self.total_steps)

    def is_update_step(self, step: int) -> bool:
        return step % self.update_every == 0 and 0 < step < self.end_step

    def fraction_at(self, step: int) -> float:
        """The drop fraction at ``step`` (RigL's cosine by default)."""
        return cosine_fraction(step, self.drop_fraction, self.end_step)

    def update_steps(self) -> list[int]:
        """Every step at which the mask is updated."""
        return list(range(self.update_every, self.end_step, self.update_every))

    @property
    def last_update_step(self) -> int:
        """The last update step (0 when there is none)."""
        return max(0, (self.end_step - 1) // self.update_every * self.update_every)

    # -- life cycle -------------------------------------------------------------------------------

    def prepare(self, model: nn.Module, example_input: Any = None) -> nn.Module:
        """A random mask per covered matrix at the budget's density (exact counts)."""
        layers = budget_sparsities(
            model, self.sparsity, self.budget, self.first_dense, self.last_dense, scope=self.scope
        )
        matrices = weight_matrices(model, self.scope)
        for name, s in layers.items():
            n = matrices[name].tensor.numel()
            if pruned_count(n, s) >= n:
                raise ValueError(
                    f"sparsity={self.sparsity} would empty layer {name!r} ({n} weights at its "
                    f"{self.budget} sparsity {s:.4f}); request less or use budget='erk'"
                )
        sparse = {n: s for n, s in layers.items() if s > 0}
        frozen = [n for n in sparse if self.uses_gradient and not _trainable(matrices[n])]
        if frozen:
            raise ValueError(
                f"{type(self).__name__} grows by the gradient, but layers {frozen} have no "
                "gradient (requires_grad=False); unfreeze them or leave them out with scope="
            )
        shapes = {n: tuple(matrices[n].tensor.shape) for n in sparse}
        device = next(model.parameters()).device
        reparam.apply_masks(model, random_masks(shapes, sparse, self.generator, device))
        self.names, self.updates = list(sparse), []
        return model

    def on_fit_start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        if self.tap is None and self.uses_gradient and self.update_steps():
            self.tap = GradientTap(model, self.names)

    def after_step(self, model: nn.Module, step: int) -> None:
        grads = self.tap.take() if self.tap is not None else {}
        for grad in grads.values():
            distributed.mean_tensor_(grad)
        self.observe(grads)
        if self.is_update_step(step):
            self.update(model, step, grads)
        if step >= self.last_update_step:
            self.release()

    def observe(self, grads: dict[str, torch.Tensor]) -> None:
        """Called after every step with the dense gradients (SNFS keeps their momentum)."""

    def release(self) -> None:
        """Remove the gradient hooks (after the last update, and before finalize/freeze)."""
        if self.tap is not None:
            self.tap.close()
            self.tap = None

    def freeze(self, model: nn.Module) -> None:
        """Nothing to fix: the mask is fixed after the last update."""
        self.release()

    def finalize(self, model: nn.Module) -> nn.Module:
        self.release()
        return super().finalize(model)

    # -- one update -------------------------------------------------------------------------------

    def counts(self, model: nn.Module, masks: dict[str, torch.Tensor], fraction: float):
        """Per layer (drop, grow): ⌊fraction · active⌋ each."""
        out = {}
        for name, mask in masks.items():
            k = math.floor(fraction * int(mask.sum()))
            out[name] = (k, k)
        return out

    def grow_scores(self, name: str, weight: torch.Tensor, grads: dict) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def update(self, model: nn.Module, step: int, grads: dict[str, torch.Tensor]) -> None:
        """Drop and regrow every layer (in place); record the update."""
        fraction = self.fraction_at(step)
        matrices = weight_matrices(model, self.scope)
        old = {n: m.clone() for n, m in reparam.get_masks(model).items() if n in self.names}
        new, flips = {}, {}
        for name, (drop, grow) in self.counts(model, old, fraction).items():
            weight = matrices[name].tensor
            scores = self.grow_scores(name, weight, grads)
            new[name] = drop_grow(old[name], weight.abs(), scores, drop, grow)
            flips[name] = int((new[name] ^ old[name]).sum())
        reparam.apply_masks(model, new)  # zeroes the stored value of every regrown weight
        self._reset_optimizer_state(matrices, {n: new[n] ^ old[n] for n in new})
        self.updates.append(
            {
                "step": step,
                "fraction": fraction,
                "flips": sum(flips.values()),
                "layer_flips": flips,
                "density": {n: float(m.float().mean()) for n, m in new.items()},
            }
        )

    def _reset_optimizer_state(self, matrices: dict, changed: dict[str, torch.Tensor]) -> None:
        if self.optimizer is None:
            return
        for name, where in changed.items():
            matrix = matrices[name]
            original = getattr(matrix.module.parametrizations, matrix.attr).original
            for value in self.optimizer.state.get(original, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == where.shape:
                    value.masked_fill_(where, 0.0)

    # -- FLOPs and state --------------------------------------------------------------------------

    def step_flops(self, sparse_forward: float, dense_forward: float) -> float:
        """Average training FLOPs per step in the RigL paper's accounting: forward f_S, backward
        2 f_S; an update step also needs the dense gradient (f_D instead of f_S for one of the
        two backward products): (3 f_S ΔT + 2 f_S + f_D) / (ΔT + 1) while updates run."""
        sparse = 3 * sparse_forward
        if not self.uses_gradient or not self.update_steps():
            return sparse
        updating = len(self.update_steps()) / self.total_steps
        dense_step = 2 * sparse_forward + dense_forward
        return (1 - updating) * sparse + updating * dense_step

    def state_dict(self) -> dict:
        return {
            "names": list(self.names),
            "updates": [dict(u) for u in self.updates],
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.names = list(state["names"])
        self.updates = [dict(u) for u in state["updates"]]
        self.generator.set_state(state["generator"])


@register
class StaticSparse(DynamicSparse):
    """The random ERK (or uniform) mask of the growth methods, never updated: a fixed sparse
    network trained from scratch (the control every dynamic method is compared with)."""

    name = "static-sparse"

    def is_update_step(self, step: int) -> bool:
        return False

    def update_steps(self) -> list[int]:
        return []


@register
class SET(DynamicSparse):
    """Sparse Evolutionary Training: drop the ζ smallest-|w| active weights, regrow as many at
    uniformly random inactive positions; ζ = 0.3 constant, updates until the end of training (the
    paper updates after each epoch: pass ``update_every=len(train_loader)``)."""

    name = "set"
    defaults = {"drop_fraction": 0.3, "end_fraction": 1.0}

    def fraction_at(self, step: int) -> float:
        return self.drop_fraction if step < self.end_step else 0.0

    def grow_scores(self, name: str, weight: torch.Tensor, grads: dict) -> torch.Tensor:
        return torch.rand(weight.numel(), generator=self.generator).reshape(weight.shape)


@register
class RigL(DynamicSparse):
    """Rigged Lottery: drop the smallest-|w| active weights, regrow where the dense gradient of the
    current batch is largest; drop fraction α·½(1 + cos(π t / T_end)), T_end = 75 % of training."""

    name = "rigl"
    uses_gradient = True

    def grow_scores(self, name: str, weight: torch.Tensor, grads: dict) -> torch.Tensor:
        if name not in grads:
            raise ValueError(
                f"RigL needs the dense gradient of layer {name!r} at step updates, but none was "
                "recorded: the layer took no part in the last backward pass (train it, or leave "
                "it out with scope=)"
            )
        return grads[name].abs()


__all__ = ["SET", "DynamicSparse", "RigL", "StaticSparse"]
