"""CUDA C sources (``*.cu``, ``*.cuh``) shipped as package data ``sparsitylab.kernels``; ``cuda_shim.h`` runs them on
the CPU (:mod:`sparsitylab.deploy.emulation`)."""
