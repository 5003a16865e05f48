"""tts.chattts_voices: stored presets, custom speaker strings, reproducible generation."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tts.chattts_voices import PRESETS, VoiceError, load_presets, resolve_speaker, speaker_dim
from tts.settings import CHATTTS_PRESETS, ChatTTSVoice

ROOT = Path(__file__).resolve().parent.parent


def test_eight_presets_for_the_real_model() -> None:
    presets = load_presets()
    assert tuple(presets) == PRESETS == CHATTTS_PRESETS
    assert {speaker_dim(v) for v in presets.values()} == {768}
    assert len(set(presets.values())) == 8


def test_presets_are_exactly_what_the_committed_script_generates() -> None:
    """Stored data, not run-time sampling: the generator reproduces the file (CPU generator, fixed seeds)."""
    spec = importlib.util.spec_from_file_location("make_voices", ROOT / "scripts" / "make_chattts_voices.py")
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    from ChatTTS.config.config import Config

    from tts.chattts_voices import make_voice

    stored = json.loads((ROOT / "tts" / "data" / "chattts_voices.json").read_text())
    assert stored["generator"]["seeds"] == script.SEEDS
    for name, seed in script.SEEDS.items():
        assert make_voice(Config().spk_stat, seed) == stored["voices"][name]


def test_resolve_speaker_custom_wins_and_errors_are_clear() -> None:
    presets = load_presets()
    assert resolve_speaker(ChatTTSVoice(voice="male_2"), presets, 768) == presets["male_2"]
    assert resolve_speaker(ChatTTSVoice(), presets, 768) == presets["female_1"]
    custom = presets["neutral_2"]
    assert resolve_speaker(ChatTTSVoice(voice="male_2", speaker=custom), presets, 768) == custom
    with pytest.raises(VoiceError, match="not a ChatTTS speaker string"):
        resolve_speaker(ChatTTSVoice(speaker="hello"), presets, 768)
    with pytest.raises(VoiceError, match="needs 64"):
        resolve_speaker(ChatTTSVoice(voice="female_1"), presets, 64)
