"""HOW the effective weight is formed: reparametrisations built on ``torch.nn.utils.parametrize``.

- ``fixed_mask``  W_eff = W ⊙ M with a fixed boolean mask (pruned weights exactly zero in every
  forward)
"""

from .fixed_mask import (
    FixedMask,
    apply_masks,
    get_masks,
    is_masked,
    load_masked_state_dict,
    masked_layer_names,
    remove_masks,
)

__all__ = [
    "FixedMask",
    "apply_masks",
    "get_masks",
    "is_masked",
    "load_masked_state_dict",
    "masked_layer_names",
    "remove_masks",
]
