"""Developer scripts, run from the repository root as modules (``python -m scripts.chaos``) so that ``tests.support`` imports."""
