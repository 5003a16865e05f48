"""tts.chattts_assets: integrity check, model dir resolution, the download command offline."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tts.chattts_assets import ASSET_FILES, AssetError, download_main, resolve_model_dir, stock_sha256, verify_assets


def _fake_dir(root: Path) -> dict[str, str]:
    import hashlib

    sha = {}
    for rel, key in ASSET_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rel.encode())
        sha[key] = hashlib.sha256(rel.encode()).hexdigest()
    return sha


def test_stock_map_covers_every_asset() -> None:
    assert set(stock_sha256()) == set(ASSET_FILES.values())


def test_verify_names_missing_and_corrupt_files(tmp_path: Path) -> None:
    sha = _fake_dir(tmp_path)
    assert verify_assets(tmp_path, sha) == []
    (tmp_path / "asset/gpt/config.json").unlink()
    (tmp_path / "asset/Embed.safetensors").write_bytes(b"garbage")
    assert verify_assets(tmp_path, sha) == [
        "asset/Embed.safetensors is corrupt or a different version (sha256 mismatch)",
        "asset/gpt/config.json is missing",
    ]
    assert verify_assets(tmp_path / "nope", sha) == [f"{tmp_path / 'nope'} is not a directory"]


def test_resolve_uses_hf_cache_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snap = tmp_path / "hub" / "models--2Noise--ChatTTS" / "snapshots" / "abc"
    sha = _fake_dir(snap)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    src = resolve_model_dir(None, sha)
    assert src.path == snap and src.geometry is None
    with pytest.raises(AssetError, match=r"Hugging Face cache .*sha256 mismatch"):
        resolve_model_dir(None)  # the stock hashes reject the fake files


def test_offline_without_weights_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AssetError, match="set CHATTTS_MODEL_DIR"):
        resolve_model_dir(None)


def test_download_offline_fails_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert download_main([str(tmp_path / "w")]) == 1
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err


def test_download_with_unreachable_hub_fails_without_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    assert download_main([str(tmp_path / "w"), "--endpoint", f"http://127.0.0.1:{port}"]) == 1
    assert time.monotonic() - t0 < 60
    assert "download of 2Noise/ChatTTS failed" in capsys.readouterr().err
