"""Where a benchmark's JSON report goes: ``perf/results/<name>.json`` by default, said on stdout."""

from __future__ import annotations

import json
from pathlib import Path


def write_report(out: Path, report: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
