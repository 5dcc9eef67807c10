"""``facestream embed PATH...``: faces and embeddings of image files, one result per image.

A file that cannot be read or is rejected yields an ``error`` object with the
same stable code the dead-letter topic would carry, and the run goes on; the
exit status is non-zero only for usage errors (argparse's own).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from ..config import Settings
from ._common import embed_files


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("embed", help="Detect faces in image files and print their embeddings.")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files (JPEG, PNG, WebP, BMP)")
    parser.add_argument("--backend", choices=["onnx", "triton"], help="inference backend (default: FACESTREAM_BACKEND)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a summary")
    parser.set_defaults(func=_embed)


def _embed(args: argparse.Namespace) -> int:
    overrides = {"backend": args.backend} if args.backend else {}
    settings = Settings.from_env(**overrides)
    show = _print_json if args.json else _print_summary
    for result in asyncio.run(embed_files(args.paths, settings)):
        show(result)
    return 0


def _print_json(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def _print_summary(result: dict[str, Any]) -> None:
    if "error" in result:
        print(f"{result['image']}: {result['error']['code']}: {result['error']['message']}")
        return
    faces = result["faces"]
    boxes = ", ".join(f"{[round(v) for v in f['bbox']]} score {f['score']:.3f}" for f in faces)
    print(f"{result['image']}: {len(faces)} face(s){': ' + boxes if faces else ''}")
