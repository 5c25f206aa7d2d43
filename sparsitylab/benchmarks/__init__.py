"""Benchmarks run by ``sparsitylab bench NAME``: one module per benchmark, each with ``main(argv)``.

Benchmarks print ratios measured side by side in one run and may write JSON to ``data/``.
"""
