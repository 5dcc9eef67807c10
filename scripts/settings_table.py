"""Print the README's configuration table from streams/config.py (the one source of settings)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.config import documented  # noqa: E402

print("| variable | default | meaning |")
print("|---|---|---|")
for env, default, help_text in documented():
    shown = f"`{default}`" if default != "" else "(empty)"
    print(f"| `{env}` | {shown} | {help_text} |")
