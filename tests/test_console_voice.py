"""The voice panel's schema and saves: one definition of the settings, YAML patched in place."""

from __future__ import annotations

import yaml

from agents.loader import parse_agent
from agents.spec import AgentSpec
from gateway.console.voice import Saved, apply_tts, patch_tts, tts_block, voice_schema
from tests.helpers import AGENTS_DIR
from tts.registry import TTSConfig

DEMO_TEXT = (AGENTS_DIR / "demo.yaml").read_text()


def demo() -> AgentSpec:
    agent, problems = parse_agent(DEMO_TEXT, "demo.yaml")
    assert agent is not None, problems
    return agent


def test_schema_is_the_agent_schemas_tts_section() -> None:
    schema = voice_schema()["tts"]
    assert schema == TTSConfig.model_json_schema()
    speed = schema["$defs"]["ChatTTSVoice"]["properties"]["speed"]
    assert (speed["minimum"], speed["maximum"], speed["default"]) == (0.5, 2.0, 1.0)
    assert len(schema["$defs"]["ChatTTSVoice"]["properties"]["voice"]["enum"]) == 8
    for provider in ("ChatTTSVoice", "CartesiaVoice", "PiperVoice"):  # each provider describes itself
        assert schema["$defs"][provider]["description"]


def test_save_patches_only_the_tts_block_and_keeps_comments() -> None:
    agent = demo()
    tts = {**agent.tts.model_dump(mode="json"), "piper": {"voice": "joe", "speed": 1.5}}
    saved = apply_tts(agent, tts, "demo.yaml", DEMO_TEXT)
    assert isinstance(saved, Saved) and saved.from_file
    assert saved.agent.tts.piper.speed == 1.5
    assert saved.agent.model_dump(exclude={"tts"}) == agent.model_dump(exclude={"tts"})
    assert saved.yaml.startswith("# The demo agent")  # the operator's comment survives
    assert parse_agent(saved.yaml, "demo.yaml")[0] == saved.agent
    before, after = DEMO_TEXT.split("tts:")[0], saved.yaml.split("tts:")[0]
    assert before == after
    assert DEMO_TEXT.split("limits:")[1] == saved.yaml.split("limits:")[1]  # what follows tts is untouched
    block = yaml.safe_load(saved.yaml)["tts"]
    assert block == {"provider": "piper", "fallback": [], "piper": {"voice": "joe", "speed": 1.5}}


def test_bad_values_are_reported_as_validate_words_them() -> None:
    agent = demo()
    tts = {**agent.tts.model_dump(mode="json"), "piper": {"voice": "joe", "speed": 5.0}, "provider": "espeak"}
    problems = apply_tts(agent, tts, "demo.yaml", DEMO_TEXT)
    assert isinstance(problems, list)
    text = [str(p) for p in problems]
    assert "demo.yaml: tts.piper.speed: 5.0 is not within 0.5–2.0" in text
    assert any(p.path == "tts.provider" and "espeak" in p.message for p in problems)
    assert isinstance(apply_tts(agent, "fast", "demo.yaml", DEMO_TEXT), list)


def test_a_file_that_no_longer_matches_is_not_patched() -> None:
    agent = demo()
    edited = DEMO_TEXT.replace("Demo front desk", "Another desk")
    saved = apply_tts(agent, agent.tts.model_dump(mode="json"), "demo.yaml", edited)
    assert isinstance(saved, Saved) and not saved.from_file and "no longer matches" in saved.note
    assert parse_agent(saved.yaml, "demo.yaml")[0] == agent  # the running agent, whole
    missing = apply_tts(agent, agent.tts.model_dump(mode="json"), "demo.yaml", None)
    assert isinstance(missing, Saved) and not missing.from_file


def test_patch_tts_edge_cases() -> None:
    assert patch_tts("id: a\n", {"provider": "piper"}) == "id: a\ntts:\n  provider: piper\n"
    assert patch_tts("id: a", {"provider": "piper"}) == "id: a\ntts:\n  provider: piper\n"
    flow = "id: a\ntts: {provider: chattts}\nname: x\n"
    assert patch_tts(flow, {"provider": "piper"}) == "id: a\ntts:\n  provider: piper\nname: x\n"
    trailing = "tts:\n  provider: chattts\n\n# about limits\nlimits: {}\n"
    assert patch_tts(trailing, {"provider": "piper"}) == "tts:\n  provider: piper\n\n# about limits\nlimits: {}\n"


def test_tts_block_keeps_written_keys_and_changed_values_only() -> None:
    tts = TTSConfig(provider="piper", fallback=[])
    assert tts_block(tts) == {"provider": "piper", "fallback": []}
    assert tts_block(tts, {"piper": {"voice": "joe"}}) == {"provider": "piper", "fallback": [],
                                                           "piper": {"voice": "joe"}}
