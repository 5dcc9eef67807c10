"""``facestream models fetch``: pretrained files into the cache, the serving variants, the int8 embedder (idempotent)."""

from __future__ import annotations

import argparse

from streams.config import Settings
from streams.models.fetch import ModelFetchError, fetch_pretrained
from streams.models.int8 import Int8Rejected, write_int8_embedder
from streams.models.variants import write_variants

CALIBRATION_PHOTOS = "photos"  # under the model cache: the real photos the int8 embedder is calibrated on


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="Fetch the pretrained models and generate their serving variants.")
    actions = parser.add_subparsers(dest="action", required=True)
    fetch = actions.add_parser("fetch", help="Download (or verify) the models and write the serving variants.")
    fetch.set_defaults(func=_fetch)


def _fetch(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    try:
        pretrained = fetch_pretrained(settings.model_path)
    except ModelFetchError as exc:
        print(f"error: {exc}")
        return 1
    for path in pretrained:
        print(f"verified {path}")
    for path in write_variants(settings):
        print(f"wrote {path}")
    try:
        print(f"wrote {write_int8_embedder(settings, settings.model_path / CALIBRATION_PHOTOS)}")
    except (ModelFetchError, Int8Rejected) as exc:
        print(f"error: {exc}")
        return 1
    return 0
