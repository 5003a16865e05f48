from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.settings import ENV_VARS, Settings, SettingsError
from tests.helpers import ROOT


def test_defaults_from_empty_environment() -> None:
    s = Settings.from_env({})
    assert s.port == 8080 and s.host == "127.0.0.1"
    assert s.agents_dir == Path("config/agents")
    assert s.redis_url is None and s.twilio_auth_token is None and not s.signatures_enforced
    assert s.chattts_device == "auto" and s.playout_lead_s == pytest.approx(0.1)


def test_empty_values_mean_unset() -> None:
    s = Settings.from_env({"REDIS_URL": "", "VOICEGW_PORT": "  ", "TWILIO_AUTH_TOKEN": ""})
    assert s.redis_url is None and s.port == 8080 and s.twilio_auth_token is None


def test_values_are_parsed() -> None:
    s = Settings.from_env({
        "VOICEGW_HOST": "0.0.0.0", "VOICEGW_PORT": "9000", "PUBLIC_URL": "https://gw.example.com/",
        "REDIS_URL": "redis://r:6379/0", "TWILIO_AUTH_TOKEN": "tok", "CHATTTS_DEVICE": "CUDA",
        "CHATTTS_MODEL_DIR": "/models/chattts", "VOICEGW_API_KEY": "k", "CARTESIA_BASE_URL": "http://127.0.0.1:1",
    })
    assert (s.host, s.port, s.public_url) == ("0.0.0.0", 9000, "https://gw.example.com")
    assert s.signatures_enforced and s.chattts_device == "cuda"
    assert s.chattts_model_dir == Path("/models/chattts")


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"VOICEGW_PORT": "eighty"}, "VOICEGW_PORT='eighty' is not an integer"),
        ({"VOICEGW_PORT": "70000"}, "VOICEGW_PORT=70000 is not within 0–65535"),
        ({"VOICEGW_MAX_WS_MESSAGE_BYTES": "5"}, "VOICEGW_MAX_WS_MESSAGE_BYTES=5 is not within 1024–16777216"),
        ({"VOICEGW_DRAIN_TIMEOUT_S": "soon"}, "VOICEGW_DRAIN_TIMEOUT_S='soon' is not a number"),
        ({"VOICEGW_PLAYOUT_LEAD_MS": "5"}, "VOICEGW_PLAYOUT_LEAD_MS=5.0 is not within 20–2000"),
        ({"VOICEGW_PLAYOUT_FRAMES_PER_WRITE": "0"}, "VOICEGW_PLAYOUT_FRAMES_PER_WRITE=0 is not within 1–10"),
        ({"PUBLIC_URL": "gw.example.com"}, "PUBLIC_URL"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"CHATTTS_DEVICE": "tpu"}, "CHATTTS_DEVICE='tpu' is not one of auto, cuda, cpu"),
        ({"VOICEGW_REQUIRE_SIGNATURE": "maybe"}, "VOICEGW_REQUIRE_SIGNATURE"),
        ({"VOICEGW_REQUIRE_SIGNATURE": "1"}, "TWILIO_AUTH_TOKEN is not set"),
        # the value is echoed as given, not as a normalised "1"
        ({"VOICEGW_REQUIRE_SIGNATURE": "yes"}, "VOICEGW_REQUIRE_SIGNATURE=yes but TWILIO_AUTH_TOKEN is not set"),
        # Media Streams connect only to wss://: an http PUBLIC_URL would put ws:// in every TwiML
        ({"PUBLIC_URL": "http://gw.example.com"}, "PUBLIC_URL='http://gw.example.com' must be an https:// URL"),
        ({"PUBLIC_URL": "https://gw.example.com/?x=1"}, "without ?query"),
    ],
)
def test_malformed_values_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert needle in str(info.value)


class _Recording(dict[str, str]):
    """An environment that remembers every variable asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def get(self, key: str, default: object = None) -> Any:
        self.asked.append(key)
        return super().get(key, default)


def _example_env() -> list[tuple[str, str]]:
    text = (ROOT / "config" / "gateway.example.env").read_text()
    return [(m[1], m[2]) for m in re.finditer(r"^([A-Z][A-Z0-9_]*)=(.*)$", text, re.MULTILINE)]


def test_env_vars_lists_exactly_what_from_env_reads() -> None:
    env = _Recording()
    Settings.from_env(env)
    assert sorted(set(env.asked)) == sorted(ENV_VARS)
    assert len(set(ENV_VARS)) == len(ENV_VARS)


def test_example_env_documents_every_setting_once_each() -> None:
    documented = [key for key, _ in _example_env()]
    assert documented == list(ENV_VARS)


def test_example_env_values_are_the_defaults() -> None:
    assert Settings.from_env(dict(_example_env())) == Settings.from_env({})


def _serve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "serve"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", **env})


def test_serve_refuses_malformed_settings() -> None:
    proc = _serve({"VOICEGW_PORT": "abc"})
    assert proc.returncode == 2
    assert "configuration error: VOICEGW_PORT='abc' is not an integer" in proc.stderr


def test_serve_refuses_invalid_agents(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "id: bad\nname: B\ngreeting: hi\nlogic: {kind: scripted}\nlimits: {max_call_seconds: 1}\n"
    )
    proc = _serve({"VOICEGW_AGENTS_DIR": str(tmp_path), "VOICEGW_PORT": "0"})
    assert proc.returncode == 2
    assert "bad.yaml:5: limits.max_call_seconds: 1 is not within 10–14400" in proc.stderr
