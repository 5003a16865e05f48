from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agents.loader import load_agents, parse_agent
from agents.spec import AgentSpec
from tests.helpers import AGENTS_DIR, ROOT

GOOD = (AGENTS_DIR / "support.yaml").read_text()


def problems_for(text: str, name: str = "support.yaml") -> list[str]:
    spec, problems = parse_agent(text, name)
    assert spec is None
    return [str(p) for p in problems]


def test_shipped_agents_are_valid() -> None:
    agents, problems = load_agents(AGENTS_DIR)
    assert problems == []
    assert {"demo", "support"} <= set(agents)
    demo = agents["demo"]
    assert demo.tts.provider == "piper" and demo.logic.kind == "scripted"
    support = agents["support"]
    assert support.tts.chain() == ["chattts", "cartesia", "piper"]
    assert support.tts.chattts.voice == "female_2"


def test_defaults_match_the_promise() -> None:
    spec = AgentSpec.model_validate({"id": "a", "name": "A", "greeting": "Hi", "logic": {"kind": "scripted"}})
    c = spec.tts.chattts
    assert (c.voice, c.speed, c.temperature, c.top_p, c.top_k, c.use_refine) == ("female_1", 1.0, 0.3, 0.7, 20, False)


def test_out_of_range_names_file_key_and_range() -> None:
    bad = GOOD.replace("    speed: 1.0\n    temperature: 0.3", "    speed: 5.0\n    temperature: 0.3")
    assert problems_for(bad) == ["support.yaml:23: tts.chattts.speed: 5.0 is not within 0.5–2.0"]


def test_bad_voice_unknown_key_and_bad_number() -> None:
    bad = GOOD.replace("voice: female_2", "voice: robot_9").replace("sticky_fallback: true", "stickyy: true")
    bad = bad.replace('"+15005550007"', '"5550007"')
    got = problems_for(bad)
    assert any(p.startswith("support.yaml:22: tts.chattts.voice: 'robot_9' is not one of") for p in got), got
    assert "support.yaml:20: tts.stickyy: unknown key (typo?)" in got
    assert any(p.startswith("support.yaml:4: phone_numbers[0]: '5550007' is not an E.164") for p in got), got


def test_logic_errors_point_inside_logic() -> None:
    bad = GOOD.replace("kind: llm", "kind: magic")
    assert any(p.startswith("support.yaml:8: logic:") and "'magic'" in p for p in problems_for(bad))  # kind: line
    bad = GOOD.replace('  model: "gpt-4o-mini"\n', "")
    assert problems_for(bad) == ["support.yaml:7: logic.model: required key is missing"]  # the mapping lacking it


def test_lines_inside_lists_and_scripted_logic() -> None:
    text = (AGENTS_DIR / "demo.yaml").read_text().replace('    - dtmf: "0"', '    - dtmf: "00"')
    got = problems_for(text, "demo.yaml")
    assert len(got) == 1 and got[0].startswith("demo.yaml:14: logic.rules[2].dtmf: '00' does not match"), got


def test_yaml_syntax_error_gives_line() -> None:
    got = problems_for("id: x\nname: [unclosed\n", "broken.yaml")
    assert len(got) == 1 and got[0].startswith("broken.yaml:3: invalid YAML (column 1):"), got
    got = problems_for("id: x\n---\nid: y\n", "two.yaml")
    assert got == ["two.yaml:2: invalid YAML (column 1): expected a single document in the stream, "
                   "but found another document"]


def test_duplicate_keys_are_refused_with_both_lines() -> None:
    got = problems_for(GOOD + "name: Someone else\n")
    assert got == ["support.yaml:38: name: duplicate key (first at line 3)"]
    nested = GOOD.replace("    speed: 1.0\n", "    speed: 1.0\n    speed: 1.5\n", 1)
    assert problems_for(nested) == ["support.yaml:24: tts.chattts.speed: duplicate key (first at line 23)"]


def test_top_level_must_be_a_mapping() -> None:
    assert problems_for("- a\n", "list.yaml") == ["list.yaml:1: expected a mapping of agent settings at the top level"]
    assert problems_for("", "empty.yaml") == ["empty.yaml: expected a mapping of agent settings at the top level"]


def test_duplicate_ids_and_numbers_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD.replace("id: support", "id: other"))
    (tmp_path / "c.yaml").write_text(GOOD)
    agents, problems = load_agents(tmp_path)
    assert set(agents) == {"support"}
    text = [str(p) for p in problems]
    assert "b.yaml:4: phone_numbers[0]: +15005550007 is already routed to agent 'support' (a.yaml)" in text
    assert "c.yaml:2: id: 'support' is already used by a.yaml" in text


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_cli_validate_exit_codes(tmp_path: Path) -> None:
    ok = run_cli("agents", "validate", str(AGENTS_DIR))
    assert ok.returncode == 0 and "valid" in ok.stdout
    (tmp_path / "support.yaml").write_text(GOOD.replace("top_k: 20", "top_k: 500"))
    bad = run_cli("agents", "validate", str(tmp_path))
    assert bad.returncode == 1
    assert bad.stdout.strip() == "support.yaml:26: tts.chattts.top_k: 500 is not within 1–100"


def test_cli_schema_is_json_schema_with_ranges() -> None:
    out = run_cli("agents", "schema")
    assert out.returncode == 0
    schema = json.loads(out.stdout)
    speed = schema["$defs"]["ChatTTSVoice"]["properties"]["speed"]
    assert (speed["minimum"], speed["maximum"], speed["default"]) == (0.5, 2.0, 1.0)
    assert "female_1" in json.dumps(schema["$defs"]["ChatTTSVoice"]["properties"]["voice"])
    assert set(schema["required"]) >= {"id", "name", "greeting", "logic"}


DEMO = (AGENTS_DIR / "demo.yaml").read_text()


def test_unknown_voice_fails_validation_startup_and_push(tmp_path: Path) -> None:
    amy = DEMO.replace("    voice: joe", "    voice: amy")
    assert amy != DEMO
    (tmp_path / "demo.yaml").write_text(amy)
    agents, problems = load_agents(tmp_path)
    assert agents == {}
    assert [p.path for p in problems] == ["tts.piper.voice"]
    assert "unknown Piper voice 'amy'" in problems[0].message
    validate = run_cli("agents", "validate", str(tmp_path))
    assert validate.returncode == 1 and "demo.yaml:22: tts.piper.voice: unknown Piper voice 'amy'" in validate.stdout
    push = run_cli("agents", "push", str(tmp_path))  # refused before any Redis connection
    assert push.returncode != 0 and "tts.piper.voice" in push.stdout + push.stderr
    serve = subprocess.run([sys.executable, "-m", "gateway", "serve", "--port", "1"], cwd=ROOT, capture_output=True,
                           text=True, timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                                       "VOICEGW_AGENTS_DIR": str(tmp_path)})
    assert serve.returncode != 0 and "tts.piper.voice" in serve.stdout + serve.stderr


def test_malformed_cartesia_voice_id_fails_validation() -> None:
    bad = GOOD.replace('voice_id: "694f9389-aac1-45b6-b726-9d9369183238"', "voice_id: amy")
    got = problems_for(bad)
    want = "support.yaml:29: tts.cartesia.voice_id: 'amy' is not a Cartesia voice id"
    assert any(p.startswith(want) for p in got), got
