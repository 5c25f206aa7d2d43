"""sparsitylab: the library behind the SparsityLab book on sparsity in deep neural networks.

Modules (chapters → methods → primitives; nothing below imports anything above):

- ``modes``    quick/full budgets (``SPARSITYLAB_QUICK``)
- ``data``     Fashion-MNIST and digits loaders, deterministic splits
- ``models``   MLP 784-500-300-10, LeNet-5 (SSL), ConvNet-BN, ResNet-20
- ``train``    ``fit``/``evaluate`` with callbacks for penalties and post-step actions
- ``metrics``  sparsity, counts, FLOPs/MACs, latency
- ``widgets``  one helper for live knobs, static defaults and kernel-free frame sliders
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sparsitylab")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from . import data, metrics, models, modes, train  # noqa: E402  (light modules, imported eagerly)

__all__ = ["__version__", "data", "metrics", "models", "modes", "train"]
