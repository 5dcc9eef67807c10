"""The README documents every setting with its default, and names the test command CI runs."""

from __future__ import annotations

from streams.config import documented
from tests.support import REPO

README = (REPO / "README.md").read_text()
CI = (REPO / ".ci" / "run").read_text()


def test_every_setting_is_in_the_configuration_table():
    for env, default, _ in documented():
        shown = f"`{default}`" if default != "" else "(empty)"
        assert f"| `{env}` | {shown} |" in README, f"{env} missing or stale in README.md"


def test_ci_runs_the_readme_test_command():
    assert "make test" in README and "make test" in CI
