"""Print the README's configuration table from streams/config.py (the one source of settings).

    .venv/bin/python -m scripts.settings_table
"""

from streams.config import documented

print("| variable | default | meaning |")
print("|---|---|---|")
for env, default, help_text in documented():
    shown = f"`{default}`" if default != "" else "(empty)"
    print(f"| `{env}` | {shown} | {help_text} |")
