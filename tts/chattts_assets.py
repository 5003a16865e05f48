"""ChatTTS weights on disk: layout, integrity check, download.

A model directory holds ``asset/...`` exactly as the official Hugging Face
repo ``2Noise/ChatTTS`` lays it out (and as ``ChatTTS.Chat.load`` reads it):

    asset/{Vocos,DVAE,Decoder,Embed}.safetensors
    asset/gpt/{config.json,model.safetensors}
    asset/tokenizer/{tokenizer.json,tokenizer_config.json,special_tokens_map.json}

Every file is checked against a sha256 map: by default the one shipped inside
the ``chattts`` package (``ChatTTS/res/sha256_map.json``); a caller may
override it (tests do, with their tiny random checkpoint's hashes). Problems
name the file and what is wrong, so ``/readyz`` and the log say what to fix.

An optional ``voicegw_geometry.json`` next to ``asset/`` describes a
non-standard model geometry (only the test and bench checkpoints use it): its
sections replace the package's ``Config`` sections when loading.

Weights licence: CC BY-NC 4.0 (non-commercial), see docs/chattts.md.
No torch import here: this module runs in the CLI and at startup cheaply.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ASSET_FILES",
    "GEOMETRY_FILE",
    "HF_REPO",
    "AssetError",
    "ModelSource",
    "download_main",
    "hash_assets",
    "hf_cache_snapshot",
    "load_geometry",
    "resolve_model_dir",
    "stock_sha256",
    "verify_assets",
]

HF_REPO = "2Noise/ChatTTS"
GEOMETRY_FILE = "voicegw_geometry.json"
#: Relative path → key in ChatTTS's sha256 map.
ASSET_FILES: dict[str, str] = {
    "asset/Decoder.safetensors": "sha256_asset_Decoder_safetensors",
    "asset/DVAE.safetensors": "sha256_asset_DVAE_safetensors",
    "asset/Embed.safetensors": "sha256_asset_Embed_safetensors",
    "asset/Vocos.safetensors": "sha256_asset_Vocos_safetensors",
    "asset/gpt/config.json": "sha256_asset_gpt_config_json",
    "asset/gpt/model.safetensors": "sha256_asset_gpt_model_safetensors",
    "asset/tokenizer/special_tokens_map.json": "sha256_asset_tokenizer_special_tokens_map_json",
    "asset/tokenizer/tokenizer_config.json": "sha256_asset_tokenizer_tokenizer_config_json",
    "asset/tokenizer/tokenizer.json": "sha256_asset_tokenizer_tokenizer_json",
}
_DOWNLOAD_TIMEOUT_S = 10.0


class AssetError(Exception):
    """The weights are missing, incomplete or corrupt; the message says which files and why."""


@dataclass(frozen=True, slots=True)
class ModelSource:
    """A verified model directory and the hash map it was checked against."""

    path: Path
    sha256: Mapping[str, str]
    geometry: Mapping[str, object] | None


def stock_sha256() -> dict[str, str]:
    """The hash map shipped in the installed ``chattts`` package (read without importing it)."""
    spec = importlib.util.find_spec("ChatTTS")
    if spec is None or not spec.submodule_search_locations:
        raise AssetError("the chattts package is not installed (pip install 'voicegw[chattts]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "res" / "sha256_map.json"
    data: dict[str, str] = json.loads(path.read_text())
    return data


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hash_assets(model_dir: Path) -> dict[str, str]:
    """The sha256 map of the files under ``model_dir`` (for checkpoints built by tests/bench)."""
    return {key: _sha256(model_dir / rel) for rel, key in ASSET_FILES.items()}


def verify_assets(model_dir: Path, sha256: Mapping[str, str]) -> list[str]:
    """Problems with ``model_dir`` (empty when every file is present and matches its hash)."""
    if not model_dir.is_dir():
        return [f"{model_dir} is not a directory"]
    problems: list[str] = []
    for rel, key in ASSET_FILES.items():
        path = model_dir / rel
        if not path.is_file():
            problems.append(f"{rel} is missing")
        elif key not in sha256:
            problems.append(f"{rel}: no expected sha256 ({key})")
        elif _sha256(path) != sha256[key]:
            problems.append(f"{rel} is corrupt or a different version (sha256 mismatch)")
    return problems


def load_geometry(model_dir: Path) -> dict[str, object] | None:
    path = model_dir / GEOMETRY_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AssetError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(data, dict):
        raise AssetError(f"{path}: expected a JSON object")
    return data


def hf_cache_snapshot(hf_home: Path | None = None) -> Path | None:
    """Newest snapshot of the official repo in the Hugging Face cache, if any."""
    home = hf_home or Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    snaps = home / "hub" / f"models--{HF_REPO.replace('/', '--')}" / "snapshots"
    if not snaps.is_dir():
        return None
    candidates = [p for p in snaps.iterdir() if p.is_dir()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _download(target: Path | None, endpoint: str | None = None) -> Path:
    """Fetch the official weights (progress bars on stderr). Raises AssetError, never hangs."""
    if _offline():
        raise AssetError("HF_HUB_OFFLINE is set: cannot download the ChatTTS weights")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub comes with chattts
        raise AssetError("huggingface_hub is not installed") from exc
    try:
        path = snapshot_download(
            HF_REPO, allow_patterns=["asset/*", "asset/**"], local_dir=target, endpoint=endpoint,
            etag_timeout=_DOWNLOAD_TIMEOUT_S,
        )
    except Exception as exc:  # the hub raises many types (HTTP, OS, offline): all mean "no weights"
        raise AssetError(f"download of {HF_REPO} failed: {type(exc).__name__}: {exc}") from exc
    return Path(str(path))


def resolve_model_dir(
    model_dir: Path | None, sha256: Mapping[str, str] | None = None, *, allow_download: bool = True
) -> ModelSource:
    """Find and verify the weights: ``model_dir``, else the HF cache, else (online) download into it."""
    expected = dict(sha256) if sha256 is not None else stock_sha256()
    if model_dir is not None:
        where, label = model_dir, f"CHATTTS_MODEL_DIR={model_dir}"
    else:
        snap = hf_cache_snapshot()
        if snap is None:
            if not allow_download or _offline():
                raise AssetError(
                    "no ChatTTS weights: set CHATTTS_MODEL_DIR to a directory made by "
                    "`voicegw chattts download DIR`, or allow the gateway to download (unset HF_HUB_OFFLINE)"
                )
            snap = _download(None)
        where, label = snap, f"Hugging Face cache {snap}"
    problems = verify_assets(where, expected)
    if problems:
        raise AssetError(f"{label}: " + "; ".join(problems))
    return ModelSource(where, expected, load_geometry(where))


def download_main(argv: list[str]) -> int:
    """``voicegw chattts download [DIR]``: pre-fetch the weights for an offline deployment."""
    parser = argparse.ArgumentParser(
        prog="voicegw chattts download",
        description="Download the ChatTTS weights (CC BY-NC 4.0, non-commercial) from Hugging Face "
        f"({HF_REPO}) and verify them. Without DIR they go to the Hugging Face cache.",
    )
    parser.add_argument("dir", nargs="?", type=Path, help="target directory (then set CHATTTS_MODEL_DIR=DIR)")
    parser.add_argument("--endpoint", default=None, help="Hugging Face endpoint or mirror (default: HF_ENDPOINT)")
    args = parser.parse_args(argv)
    try:
        expected = stock_sha256()
        path = _download(args.dir, args.endpoint)
        problems = verify_assets(path, expected)
        if problems:
            raise AssetError(f"{path}: " + "; ".join(problems))
    except AssetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"ChatTTS weights verified in {path}")
    if args.dir is not None:
        print(f"set CHATTTS_MODEL_DIR={path}")
    return 0
