"""Benchmarks, run from the repository root as modules (``python -m perf.bench_stream``) so that ``tests.support`` imports."""
