"""HOW the effective weight is formed: reparametrisations built on ``torch.nn.utils.parametrize``.

- ``base``        the :class:`Reparametrization` base class; find, attach, remove, save and load by
  class
- ``fixed_mask``  W_eff = W ⊙ M with a fixed boolean mask (pruned weights exactly zero in every
  forward)
- ``nm``          W_eff = W ⊙ E(W), an N:M mask recomputed every forward, with the STE / SR-STE
  backward
"""

from . import nm
from .base import (
    Found,
    Reparametrization,
    attach,
    find,
    load_state_dict,
    remove,
    saved_stacks,
    stack,
)
from .fixed_mask import FixedMask, apply_masks, get_masks, is_masked, remove_masks
from .nm import NMMask

__all__ = [
    "FixedMask",
    "Found",
    "NMMask",
    "Reparametrization",
    "apply_masks",
    "attach",
    "find",
    "get_masks",
    "is_masked",
    "load_state_dict",
    "nm",
    "remove",
    "remove_masks",
    "saved_stacks",
    "stack",
]
