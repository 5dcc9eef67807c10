"""The real serving models for unit tests: fetched and generated once per run (idempotent, like `make setup`)."""

from __future__ import annotations

import functools

from streams.config import Settings
from streams.models.fetch import fetch_pretrained
from streams.models.int8 import write_int8_embedder
from streams.models.variants import write_variants
from tests.support.photos import CACHE


@functools.cache
def serving_settings() -> Settings:
    """Default settings whose model cache and model repository hold the real files."""
    settings = Settings()
    fetch_pretrained(settings.model_path)
    write_variants(settings)
    write_int8_embedder(settings, CACHE)
    return settings
