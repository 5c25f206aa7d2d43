"""sparsitylab: the library behind the SparsityLab book on sparsity in deep neural networks.

Layout (see README.md, "How the code is organised", for the import layers):

- ``modes``, ``timing``  quick/full budgets (``SPARSITYLAB_QUICK``); timing helpers
- ``data``     Fashion-MNIST and digits loaders, deterministic splits
- ``models``   MLP 784-500-300-10, LeNet-5 (SSL), ConvNet-BN, ResNet-20
- ``train``    ``fit``/``evaluate`` with callbacks for penalties and post-step actions
- ``metrics``  sparsity, counts, FLOPs/MACs, latency
- ``widgets``  ``explore``: live knobs, a static default figure, kernel-free frame sliders
  (``frames``)
- ``sparsify``  which weights: masks, groups, budgets, schedules, sensitivity, penalties
- ``reparam``   how the effective weight is formed (fixed masks via ``torch.nn.utils.parametrize``)
- ``methods``   one module per paper's method (``Method``: prepare → train callbacks → finalize)
- ``deploy``    from zeros to speed: compaction, formats, sparse matmul (GPU kernels / CPU), kernel
  emulation
- ``runner``, ``checkpoints``  one driver for every method; crash-safe checkpoints (``files``)
- ``benchmarks``, ``cli``  ``sparsitylab bench NAME`` and the command line

See README.md, "How the code is organised".
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sparsitylab")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from . import data, metrics, models, modes, train  # noqa: E402  (light modules, imported eagerly)

__all__ = ["__version__", "data", "metrics", "models", "modes", "train"]
