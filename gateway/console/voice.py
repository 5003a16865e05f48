"""The console's voice panel: the settings schema it renders, and saving a new ``tts`` section.

Rules of this file: pure, no I/O (text in, text out). The panel's ranges, defaults, presets and
descriptions are :data:`tts.registry.TTSConfig`'s JSON Schema, served as is: nothing about a
setting is typed twice. A save is validated by the same loader as ``voicegw agents validate``
(same messages), on the running agent with its ``tts`` section replaced. The operator's YAML stays
their source: :func:`patch_tts` rewrites only the file's top-level ``tts:`` block, so comments and
everything else in the file are kept.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import yaml

from agents.loader import Problem, parse_agent
from agents.spec import AgentSpec
from tts.registry import TTSConfig

_TOP_KEY = re.compile(r"^[^\s#]")
_TTS_LINE = re.compile(r"^tts\s*:(\s|$)")


def voice_schema() -> dict[str, Any]:
    """What the panel renders: the JSON Schema of an agent's ``tts`` section."""
    return {"tts": TTSConfig.model_json_schema()}


def _explicit(new: Any, default: Any, written: Any) -> Any:
    """``new`` keeping only keys the operator wrote before or whose value differs from the default."""
    if not isinstance(new, dict):
        return new
    out: dict[str, Any] = {}
    for key, value in new.items():
        dflt = default.get(key) if isinstance(default, dict) else None
        before = written.get(key) if isinstance(written, dict) else None
        was_written = isinstance(written, dict) and key in written
        if isinstance(value, dict):
            sub = _explicit(value, dflt, before)
            if sub or was_written:
                out[key] = sub
        elif was_written or value != dflt:
            out[key] = value
    return out


def tts_block(tts: TTSConfig, written: object = None) -> dict[str, Any]:
    """The ``tts`` mapping to write: the operator's keys, plus every value that is not a default."""
    result = _explicit(tts.model_dump(mode="json"), TTSConfig().model_dump(mode="json"), written)
    assert isinstance(result, dict)
    return result


def patch_tts(text: str, block: dict[str, Any]) -> str:
    """``text`` with its top-level ``tts:`` block replaced by ``block`` (appended when there is none)."""
    lines = text.splitlines(keepends=True)
    new = yaml.safe_dump({"tts": block}, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)
    start = next((i for i, ln in enumerate(lines) if _TTS_LINE.match(ln)), None)
    if start is None:
        joined = "".join(lines)
        return joined + ("" if not joined or joined.endswith("\n") else "\n") + new
    end = start + 1
    last = start
    while end < len(lines) and not _TOP_KEY.match(lines[end]):
        if lines[end].strip() and not lines[end].lstrip().startswith("#"):
            last = end
        end += 1
    return "".join(lines[:start]) + new + "".join(lines[last + 1:])


@dataclass(frozen=True, slots=True)
class Saved:
    """A validated change: the new agent, and the YAML to offer (the file patched, or the agent dumped)."""

    agent: AgentSpec
    yaml: str
    #: True when ``yaml`` is the operator's file with only its ``tts`` block changed.
    from_file: bool
    #: Why the file could not be patched (it no longer describes the running agent), when it could not.
    note: str = ""


def _without_tts(agent: AgentSpec) -> dict[str, Any]:
    data = agent.model_dump(mode="json")
    data.pop("tts")
    return data


def apply_tts(current: AgentSpec, tts: object, file_name: str, file_text: str | None) -> Saved | list[Problem]:
    """``current`` with its voice replaced by ``tts``, or every problem found (as ``agents validate`` words them).

    ``file_text`` is the agent's YAML file as it is on disk (None when there is none): it is patched when
    it still describes ``current`` apart from its voice; otherwise the new agent is offered as a whole.
    """
    if not isinstance(tts, dict):
        return [Problem(file_name, "tts", "expected a mapping of voice settings")]
    candidate = {**current.model_dump(mode="json", exclude={"tts"}), "tts": tts}
    agent, problems = parse_agent(yaml.safe_dump(candidate, sort_keys=False), file_name)
    if agent is None:  # lines would point into that synthetic document: the key path says where
        return [dataclasses.replace(p, line=None) for p in problems]
    if file_text is not None:
        on_disk, _ = parse_agent(file_text, file_name)
        if on_disk is not None and _without_tts(on_disk) == _without_tts(current):
            written = (yaml.safe_load(file_text) or {}).get("tts")
            patched = patch_tts(file_text, tts_block(agent.tts, written))
            check, _ = parse_agent(patched, file_name)
            if check == agent:
                return Saved(agent, patched, True)
        note = f"{file_name} on disk no longer matches the running agent; offering the running agent's YAML"
    else:
        note = "no YAML file for this agent on disk; offering the running agent's YAML"
    whole = agent.model_dump(mode="json", exclude_defaults=True)
    whole["tts"] = tts_block(agent.tts)
    return Saved(agent, yaml.safe_dump(whole, sort_keys=False, allow_unicode=True, width=100), False, note)
