"""HOW the effective weight is formed: reparametrisations built on ``torch.nn.utils.parametrize``.

- ``base``        the :class:`Reparametrization` base class; find, attach, remove, save and load by
  class
- ``fixed_mask``  W_eff = W ⊙ M with a fixed boolean mask (pruned weights exactly zero in every
  forward)
- ``soft_threshold`` W_eff = sign(W)·ReLU(|W| − sigmoid(s)), STR's learnable threshold
- ``str_batchnorm`` STR-BN: BatchNorm with γ̂ = sign(γ)·ReLU(|γ| − sigmoid(s)), bias γ̂ ⊙ β̂
- ``nm``          W_eff = W ⊙ E(W), an N:M mask recomputed every forward, with the STE / SR-STE
  backward
- ``tap``         :class:`GradientTap`: the dense gradient ∂L/∂W_eff of masked weights (growth)
"""

from . import nm, soft_threshold, str_batchnorm
from .base import (
    Found,
    Reparametrization,
    attach,
    clone,
    find,
    load_state_dict,
    remove,
    saved_stacks,
    stack,
)
from .fixed_mask import FixedMask, apply_masks, get_masks, is_masked, remove_masks
from .nm import NMMask
from .soft_threshold import SoftThreshold
from .tap import GradientTap

__all__ = [
    "FixedMask",
    "Found",
    "GradientTap",
    "NMMask",
    "Reparametrization",
    "SoftThreshold",
    "apply_masks",
    "attach",
    "clone",
    "find",
    "get_masks",
    "is_masked",
    "load_state_dict",
    "nm",
    "remove",
    "remove_masks",
    "saved_stacks",
    "soft_threshold",
    "str_batchnorm",
    "stack",
]
