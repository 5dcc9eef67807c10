"""The suite's fixtures, one plugin per real service or input (see :mod:`tests.support.fixtures`)."""

pytest_plugins = [
    "tests.support.fixtures.broker",
    "tests.support.fixtures.photos",
    "tests.support.fixtures.registry",
    "tests.support.fixtures.triton",
]
