"""Load and validate agent YAML files.

Every problem is reported as ``<file>:<line>: <key.path>: <what is wrong / allowed>``, one per
line, so an operator (or an editor's "go to error") can fix a file without reading a traceback.
The line comes from the YAML node marks: the file is composed into a node tree first, the tree
is checked for duplicate keys (which YAML loaders otherwise resolve silently, last one wins),
then constructed and validated; a validation error's key path is walked back through the tree
to the line that holds that key (for a missing key: the line of the mapping that lacks it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
    line: int | None = None  # 1-based line in ``file``, when known

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


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


Lines = Callable[[Iterable[int | str]], int | None]


def _key_line(node: yaml.Node, loc: Iterable[int | str]) -> int | None:
    """The 1-based line of the key at ``loc`` (a pydantic error location) in the node tree.

    Walks as far as the tree goes: a key that is missing gives the line of the mapping that lacks it.
    The discriminated union's tag (``logic.scripted``) is skipped: it is the value of ``kind``, not a key.
    """
    line: int | None = node.start_mark.line + 1
    for item in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(item, str):
            found = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == item), None)
            if found is None:
                kind = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == "kind"), None)
                if isinstance(kind, yaml.ScalarNode) and kind.value == item:
                    continue
                break
            key = next(k for k, v in node.value if v is found)
            node, line = found, key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(item, int) and 0 <= item < len(node.value):
            node = node.value[item]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _duplicates(file: str, node: yaml.Node, path: str = "") -> list[Problem]:
    """Every key written twice in one mapping, anywhere in the tree (YAML loaders keep the last silently)."""
    problems: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name is not None and key.tag != "tag:yaml.org,2002:merge":
                line = key.start_mark.line + 1
                where = f"{path}.{name}" if path else name
                if name in seen:
                    problems.append(Problem(file, where, f"duplicate key (first at line {seen[name]})", line))
                else:
                    seen[name] = line
            problems += _duplicates(file, value, f"{path}.{name}" if path and name else name or path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += _duplicates(file, item, f"{path}[{i}]")
    return problems


def _tag_key(err: Any) -> tuple[int | str, ...]:
    """Where an error is in the file: a bad union tag is on the ``kind:`` line, not the ``logic:`` one."""
    loc: tuple[int | str, ...] = tuple(err["loc"])
    return (*loc, "kind") if err["type"] == "union_tag_invalid" else loc


def _parse(text: str, file: str) -> tuple[AgentSpec | None, list[Problem], Lines]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, [Problem(file, "", "expected a mapping of agent settings at the top level")], lambda _: None
        duplicates = _duplicates(file, node)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        if context and problem.startswith("but "):  # "expected a single document in the stream, but found ..."
            problem = f"{context}, {problem}"
        if mark is None:
            return None, [Problem(file, "", f"invalid YAML: {problem}")], lambda _: None
        return None, [Problem(file, "", f"invalid YAML (column {mark.column + 1}): {problem}", mark.line + 1)], \
            lambda _: None
    finally:
        loader.dispose()

    def lines(loc: Iterable[int | str]) -> int | None:
        return _key_line(node, loc)

    if not isinstance(data, dict):
        return None, [Problem(file, "", "expected a mapping of agent settings at the top level", lines(()))], lines
    try:
        spec = AgentSpec.model_validate(data)
    except ValidationError as exc:
        found = [Problem(file, _loc(e["loc"]), _message(e), lines(_tag_key(e))) for e in exc.errors()]
        return None, duplicates + found, lines
    return (None if duplicates else spec), duplicates, lines


def parse_agent(text: str, file: str) -> tuple[AgentSpec | None, list[Problem]]:
    """Parse one YAML document; returns the agent or the problems found (each with its line)."""
    spec, problems, _ = _parse(text, file)
    return spec, problems


def load_agents(directory: Path) -> tuple[dict[str, AgentSpec], list[Problem]]:
    """Load every ``*.yaml``/``*.yml`` in ``directory``; cross-file checks included."""
    agents: dict[str, AgentSpec] = {}
    problems: list[Problem] = []
    if not directory.is_dir():
        return {}, [Problem(str(directory), "", "agents directory does not exist")]
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    numbers: dict[str, str] = {}
    files_of: dict[str, str] = {}  # agent id -> the file that defined it
    for path in files:
        spec, probs, lines = _parse(path.read_text(encoding="utf-8"), path.name)
        problems.extend(probs)
        if spec is None:
            continue
        if spec.id in agents:
            problems.append(Problem(path.name, "id", f"{spec.id!r} is already used by {files_of[spec.id]}",
                                    lines(["id"])))
            continue
        clash = False
        for i, num in enumerate(spec.phone_numbers):
            if num in numbers:
                other = numbers[num]
                problems.append(Problem(path.name, f"phone_numbers[{i}]",
                                        f"{num} is already routed to agent {other!r} ({files_of[other]})",
                                        lines(["phone_numbers", i])))
                clash = True
        if clash:
            continue
        voices = [Problem(path.name, key, message, lines(key.split(".")))
                  for key, message in voice_problems(spec.tts, spec.language)]
        if voices:  # a voice that cannot speak fails every call: refuse the agent like a schema error
            problems.extend(voices)
            continue
        for num in spec.phone_numbers:
            numbers[num] = spec.id
        agents[spec.id] = spec
        files_of[spec.id] = path.name
    if not files:
        problems.append(Problem(str(directory), "", "no agent files (*.yaml) found"))
    return agents, problems


def load_agents_strict(directory: Path) -> dict[str, AgentSpec]:
    agents, problems = load_agents(directory)
    if problems:
        raise AgentConfigError(problems)
    return agents
