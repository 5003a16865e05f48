"""Agent logic: what the agent says and does, given what happened on the call.

Rules of this file: no audio, no clocks, no knowledge of Twilio. Events in
(frozen dataclasses), an async iterator of outputs back: reply text deltas
(``str``), fixed phrases (:class:`Phrase`, cacheable audio: greeting, rule
answers, fallback, reprompt, goodbye, apology) and actions (:class:`Hangup`,
:class:`Transfer`). Iteration may be abandoned at any point (barge-in): an
implementation must then keep its state consistent, and the conversation tells
it what the caller actually heard with :meth:`AgentLogic.truncate_to_heard`.
A logic that is also :class:`Rewindable` can answer speculatively (the
conversation starts the reply before the caller's turn is confirmed): a
reply abandoned because the caller went on is undone with
:meth:`Rewindable.rollback` to the state :meth:`Rewindable.checkpoint` took.

:class:`ScriptedLogic` implements the YAML ``kind: scripted`` agents; the LLM
agents live in :mod:`agents.llm`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from agents.spec import AgentSpec, Rule
from agents.spec import ScriptedLogic as ScriptedSpec


# ---- events in -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CallStarted:
    call_sid: str = ""


@dataclass(frozen=True, slots=True)
class Utterance:
    text: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    """A key the caller pressed; ``earlier``: keys pressed before it that no turn answered yet (coalesced)."""

    digit: str
    earlier: str = ""

    @property
    def digits(self) -> str:
        """Every key this turn answers, oldest first."""
        return self.earlier + self.digit


@dataclass(frozen=True, slots=True)
class SilenceTimeout:
    final: bool  # False: reprompt; True: say goodbye and hang up


@dataclass(frozen=True, slots=True)
class CallEnding:
    reason: str = ""


LogicEvent = CallStarted | Utterance | Dtmf | SilenceTimeout | CallEnding


# ---- outputs ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Phrase:
    """A fixed text from the agent's YAML: its audio may be cached per voice."""

    text: str


@dataclass(frozen=True, slots=True)
class Hangup:
    pass


@dataclass(frozen=True, slots=True)
class Transfer:
    number: str


Action = Hangup | Transfer
Output = str | Phrase | Action


class AgentLogic(Protocol):
    def respond(self, event: LogicEvent) -> AsyncIterator[Output]:
        """The agent's reaction to one event (may be empty)."""
        ...

    def truncate_to_heard(self, heard: str) -> None:
        """The last reply was interrupted: only ``heard`` reached the caller."""
        ...

    async def aclose(self) -> None: ...


FAREWELLS = frozenset({"goodbye", "bye", "byebye"})


@runtime_checkable
class Rewindable(Protocol):
    def checkpoint(self) -> object:
        """The state to return to if the next reply is abandoned without a trace."""
        ...

    def rollback(self, state: object) -> None: ...


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower().replace("-", " "))


def _contains(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return n > 0 and any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def match_rule(rules: list[Rule], text: str) -> Rule | None:
    """First rule (YAML order) with any ``when`` entry present as whole words in ``text``."""
    heard = words(text)
    for rule in rules:
        if rule.when and any(_contains(heard, words(w)) for w in rule.when):
            return rule
    return None


def is_farewell(text: str) -> bool:
    return any(w in FAREWELLS for w in words(text))


class ScriptedLogic:
    """Word rules, a DTMF menu, a fallback and a goodbye, from the agent's YAML."""

    def __init__(self, agent: AgentSpec) -> None:
        if not isinstance(agent.logic, ScriptedSpec):
            raise TypeError(f"agent {agent.id} is not a scripted agent")
        self.agent = agent
        self.spec: ScriptedSpec = agent.logic
        self.heard_log: list[tuple[str, str]] = []  # (role, text) as the caller experienced it

    async def respond(self, event: LogicEvent) -> AsyncIterator[Output]:
        for out in self._decide(event):
            if isinstance(out, Phrase):
                self.heard_log.append(("agent", out.text))
            yield out

    def _decide(self, event: LogicEvent) -> list[Output]:
        if isinstance(event, CallStarted):
            return [Phrase(self.agent.greeting)]
        if isinstance(event, SilenceTimeout):
            if event.final:
                return [Phrase(self.spec.goodbye), Hangup()]
            return [Phrase(self.agent.turn_taking.reprompt)]
        if isinstance(event, Utterance):
            self.heard_log.append(("caller", event.text))
            rule = match_rule(self.spec.rules, event.text)
            if rule is None:
                if is_farewell(event.text):
                    return [Phrase(self.spec.goodbye), Hangup()]
                return [Phrase(self.spec.fallback)] if words(event.text) else []
            return self._answer(rule)
        if isinstance(event, Dtmf):
            self.heard_log.append(("caller", f"<dtmf {event.digits}>"))
            for rule in self.spec.rules:  # a menu answers the latest key (earlier ones were superseded)
                if rule.dtmf == event.digit:
                    return self._answer(rule)
            return [Phrase(self.spec.fallback)]
        return []

    @staticmethod
    def _answer(rule: Rule) -> list[Output]:
        out: list[Output] = [Phrase(rule.say)]
        if rule.action == "hangup":
            out.append(Hangup())
        elif rule.action == "transfer" and rule.transfer_to:
            out.append(Transfer(rule.transfer_to))
        return out

    def checkpoint(self) -> object:
        return list(self.heard_log)

    def rollback(self, state: object) -> None:
        assert isinstance(state, list)
        self.heard_log = copy.copy(state)

    def truncate_to_heard(self, heard: str) -> None:
        for i in range(len(self.heard_log) - 1, -1, -1):
            if self.heard_log[i][0] == "agent":
                if heard:
                    self.heard_log[i] = ("agent", heard)
                else:
                    del self.heard_log[i]
                return

    async def aclose(self) -> None:
        return None
