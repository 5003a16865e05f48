"""The engine registry: one table gives the agent's tts sections, provider names, builds and voice checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.ops.metrics import Metrics
from gateway.settings import Settings
from tts.registry import BY_NAME, ENGINES, NAMES, TTSConfig, build_engines, voice_problems
from tts.settings import CHATTTS_PRESETS, CartesiaVoice, ChatTTSVoice, EngineSettings, PiperVoice


def test_one_section_and_one_provider_name_per_engine() -> None:
    assert NAMES == ("chattts", "chattts_remote", "cartesia", "piper")
    config = TTSConfig()
    for spec in ENGINES:
        section = config.section(spec.name)
        assert type(section) is spec.settings and issubclass(spec.settings, EngineSettings)
    schema = TTSConfig.model_json_schema()
    assert schema["properties"]["provider"]["enum"] == list(NAMES)
    assert set(NAMES) <= set(schema["properties"])
    with pytest.raises(ValidationError,
                       match="'espeak' is not one of 'chattts', 'chattts_remote', 'cartesia', 'piper'"):
        TTSConfig.model_validate({"fallback": ["espeak"]})
    with pytest.raises(KeyError):
        config.section("provider")


def test_last_resort_is_config_and_counts_as_used() -> None:
    config = TTSConfig.model_validate({"provider": "chattts", "fallback": [], "last_resort": "cartesia"})
    assert config.chain() == ["chattts"] and config.engines_used() == ["chattts", "cartesia"]
    assert TTSConfig().last_resort == "piper"
    assert TTSConfig.model_validate({"last_resort": None}).engines_used() == ["chattts", "cartesia", "piper"]


def test_presets_written_once() -> None:
    from tts.chattts_voices import PRESETS

    assert PRESETS is CHATTTS_PRESETS and len(CHATTTS_PRESETS) == 8
    schema = ChatTTSVoice.model_json_schema()
    assert tuple(schema["properties"]["voice"]["enum"]) == CHATTTS_PRESETS


def test_voice_problems_name_the_key() -> None:
    good = TTSConfig.model_validate({"provider": "piper", "fallback": []})
    assert voice_problems(good, "en") == []
    amy = TTSConfig.model_validate({"provider": "piper", "fallback": [], "piper": {"voice": "amy"}})
    [(key, message)] = voice_problems(amy, "en")
    assert key == "tts.piper.voice" and "unknown Piper voice 'amy'" in message and "joe" in message
    missing = TTSConfig.model_validate({"piper": {"voice": "/nowhere/x.onnx"}, "provider": "piper"})
    assert voice_problems(missing, "en") == [("tts.piper.voice", "Piper voice model not found: /nowhere/x.onnx")]
    german = voice_problems(good, "de")
    assert german == [("tts.piper.voice", "Piper voice 'joe' speaks 'en', not the agent's language 'de'")]
    chattts = TTSConfig.model_validate({"provider": "chattts", "fallback": [], "last_resort": None,
                                        "chattts": {"speaker": "not a speaker"}})
    problems = dict(voice_problems(chattts, "de"))
    assert "chattts cannot speak language 'de'" in problems["tts.chattts"]
    if "tts.chattts.speaker" in problems:  # the [chattts] extra (pybase16384) is installed
        assert "not a ChatTTS speaker string" in problems["tts.chattts.speaker"]


def test_cartesia_voice_id_must_be_well_formed() -> None:
    with pytest.raises(ValidationError, match="'amy' is not a Cartesia voice id"):
        CartesiaVoice(voice_id="amy")
    assert CartesiaVoice().voice_id


def test_piper_voice_path_with_config(tmp_path: Path) -> None:
    model = tmp_path / "x.onnx"
    model.write_bytes(b"")
    config = TTSConfig.model_validate({"provider": "piper", "piper": PiperVoice(voice=str(model))})
    assert voice_problems(config, "en") == [("tts.piper.voice", f"Piper voice config not found: {model}.json")]
    (tmp_path / "x.onnx.json").write_text('{"language": {"code": "fr_FR"}}')
    assert voice_problems(config, "fr") == []
    assert "speaks 'fr'" in voice_problems(config, "en")[0][1]


async def test_build_engines_from_the_table() -> None:
    spawned: list[str] = []

    def spawn(coro: object, name: str) -> None:
        spawned.append(name)
        coro.close()  # type: ignore[attr-defined]

    engines = await build_engines(Settings(), Metrics(), {"piper"}, spawn=spawn)
    assert set(engines) == {"piper"}  # cartesia has no key; chattts is not used
    assert engines["piper"].ready
    keyed = await build_engines(Settings(cartesia_api_key="k", cartesia_base_url="http://127.0.0.1:9"),
                                Metrics(), set(), spawn=spawn)
    assert set(keyed) == {"cartesia", "piper"} and spawned == []  # `always` engines, none loading
    for e in [*engines.values(), *keyed.values()]:
        await e.aclose()
    assert BY_NAME["piper"].always and not BY_NAME["chattts"].always
