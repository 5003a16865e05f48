"""Build the logic an agent's spec asks for (one instance per call: it holds the call's history)."""

from __future__ import annotations

from agents.llm import LLMLogic
from agents.logic import AgentLogic, ScriptedLogic
from agents.spec import AgentSpec
from agents.spec import ScriptedLogic as ScriptedSpec


def make_logic(agent: AgentSpec, env: dict[str, str] | None = None) -> AgentLogic:
    """The logic for ``agent``'s ``logic.kind``."""
    if isinstance(agent.logic, ScriptedSpec):
        return ScriptedLogic(agent)
    return LLMLogic(agent, env=env)
