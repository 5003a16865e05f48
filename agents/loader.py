"""Load and validate agent YAML files.

Every problem is reported as ``<file>: <key.path>: <what is wrong / allowed>``,
one per line, so an operator can fix a file without reading a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agents.spec import AgentSpec
from tts.registry import voice_problems


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.message}" if self.path else f"{self.file}: {self.message}"


class AgentConfigError(Exception):
    """Raised when agent files are invalid; ``problems`` lists every issue found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _loc(loc: Iterable[int | str]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("scripted", "llm") and parts and parts[-1] == "logic":
            continue  # the discriminated union's tag, not a key the operator wrote
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _message(err: Any) -> str:
    typ = err["type"]
    msg: str = err["msg"]
    value = err.get("input")
    if typ == "value_error":
        return msg.removeprefix("Value error, ")
    if typ == "extra_forbidden":
        return "unknown key (typo?)"
    if typ == "missing":
        return "required key is missing"
    if typ == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{value!r} is not one of {expected}"
    if typ == "union_tag_invalid":
        return f"{err['ctx']['tag']!r} is not one of {err['ctx']['expected_tags']}"
    if typ == "string_pattern_mismatch":
        return f"{value!r} does not match {err['ctx']['pattern']}"
    return f"{msg} (got {value!r})" if not isinstance(value, dict | list) else msg


def parse_agent(text: str, file: str) -> tuple[AgentSpec | None, list[Problem]]:
    """Parse one YAML document; returns the agent or the problems found."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [Problem(file, "", f"invalid YAML at {where}: {problem}".replace(" at :", ":"))]
    if not isinstance(data, dict):
        return None, [Problem(file, "", "expected a mapping of agent settings at the top level")]
    try:
        return AgentSpec.model_validate(data), []
    except ValidationError as exc:
        return None, [Problem(file, _loc(e["loc"]), _message(e)) for e in exc.errors()]


def load_agents(directory: Path) -> tuple[dict[str, AgentSpec], list[Problem]]:
    """Load every ``*.yaml``/``*.yml`` in ``directory``; cross-file checks included."""
    agents: dict[str, AgentSpec] = {}
    problems: list[Problem] = []
    if not directory.is_dir():
        return {}, [Problem(str(directory), "", "agents directory does not exist")]
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    numbers: dict[str, str] = {}
    for path in files:
        spec, probs = parse_agent(path.read_text(encoding="utf-8"), path.name)
        problems.extend(probs)
        if spec is None:
            continue
        if spec.id in agents:
            problems.append(Problem(path.name, "id", f"{spec.id!r} is already used by another file"))
            continue
        clash = False
        for i, num in enumerate(spec.phone_numbers):
            if num in numbers:
                problems.append(
                    Problem(path.name, f"phone_numbers[{i}]", f"{num} is already routed to agent {numbers[num]!r}")
                )
                clash = True
        if clash:
            continue
        voices = [Problem(path.name, key, message) for key, message in voice_problems(spec.tts, spec.language)]
        if voices:  # a voice that cannot speak fails every call: refuse the agent like a schema error
            problems.extend(voices)
            continue
        for num in spec.phone_numbers:
            numbers[num] = spec.id
        agents[spec.id] = spec
    if not files:
        problems.append(Problem(str(directory), "", "no agent files (*.yaml) found"))
    return agents, problems


def load_agents_strict(directory: Path) -> dict[str, AgentSpec]:
    agents, problems = load_agents(directory)
    if problems:
        raise AgentConfigError(problems)
    return agents
