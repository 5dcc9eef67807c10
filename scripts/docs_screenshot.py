"""Open ``/docs`` in headless Chromium with no network but this process, check it shows every route, screenshot it.

Proves the Swagger UI page works air-gapped: the API runs in-process on a free
loopback port (no broker needed for ``/docs`` and ``/openapi.json``), Chromium
(Debian's ``chromium``) renders the page with every other host unreachable
(``--host-resolver-rules``), the rendered DOM must name every path of
``/openapi.json``, and the screenshot is written for a person to look at.

    .venv/bin/python -m scripts.docs_screenshot [--out .cache/docs.png]

Exits 0 when every route is shown, 1 when one is missing, 2 without Chromium.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import uvicorn

from streams.api.app import create_app
from streams.config import Settings
from tests.support.ports import free_port

BROWSERS = ("chromium", "chromium-browser")
#: Time the page's scripts get to fetch /openapi.json and render, in virtual milliseconds.
RENDER_BUDGET_MS = 15000


def chromium() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def serve(port: int) -> uvicorn.Server:
    settings = Settings.from_env(kafka_bootstrap_servers="127.0.0.1:9", api_port=port)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 120
    while not server.started:
        if time.monotonic() > deadline:
            raise TimeoutError("the API did not start")
        time.sleep(0.1)
    return server


def render(browser: str, url: str, out: Path) -> str:
    """The DOM of ``url`` after its scripts ran; the screenshot goes to ``out``."""
    with tempfile.TemporaryDirectory(prefix="facestream-chromium-") as profile:
        common = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # any CDN would fail to load
            f"--virtual-time-budget={RENDER_BUDGET_MS}", "--window-size=1280,1600",
        ]
        subprocess.run([*common, f"--screenshot={out}", url], check=True, capture_output=True, timeout=180)
        dom = subprocess.run([*common, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=180)
    return dom.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".cache/docs.png"), help="where the screenshot goes")
    args = parser.parse_args(argv)
    browser = chromium()
    if browser is None:
        print("no chromium on PATH (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    port = free_port()
    server = serve(port)
    try:
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/openapi.json", timeout=10) as reply:
            paths = list(json.load(reply)["paths"])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        dom = render(browser, f"{base}/docs", args.out)
    finally:
        server.should_exit = True
    missing = [p for p in paths if p not in dom]
    print(f"{args.out}: {args.out.stat().st_size} bytes; /docs shows {len(paths) - len(missing)} of {len(paths)} routes")
    for path in missing:
        print(f"missing from /docs: {path}", file=sys.stderr)
    return 1 if missing or args.out.stat().st_size == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
