"""CUDA C sources (``*.cu``, ``*.cuh``) shipped as package data ``sparsitylab.kernels_src``."""
