"""FROM ZEROS TO SPEED: what turns a sparse model into a faster one.

- ``compaction``  structural zeros → a smaller dense model with the same outputs
- ``formats``     sparse storage formats (CSR, BSR, HBS, N:M, 2:4, compacted) with exact round
  trips; the N:M ones are written in ``nm_formats``, the shared base in ``format_base``
- ``matmul``      sparse × dense products: the CUDA kernels through CuPy on a GPU (``cuda``
  loads and compiles them), CPU paths otherwise
- ``speed``       a layer's GEMM timed dense, as CSR and compacted, next to its ideal FLOP ratio
- ``serialize``   any model (compacted ones too) saved as data, reloaded with ``weights_only=True``
- ``emulation``   the same CUDA kernels compiled with g++ and run on the CPU (tests, and readers
  without a GPU)
"""

from . import compaction, formats, matmul, serialize, speed

__all__ = ["compaction", "formats", "matmul", "serialize", "speed"]
