"""The conversation's turns: digits waiting for a turn join it, and closing never waits on queued or running work.

A real :class:`gateway.conversation.Conversation` (no recognizer, no VAD: digits and time only) on a recording
fake of the call; the agent logic is scripted, or one whose reply never finishes (an LLM still streaming).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from agents.logic import Dtmf, LogicEvent, Output, ScriptedLogic
from agents.spec import AgentSpec
from gateway.carrier import Digit
from gateway.conversation import Conversation
from gateway.ops.logs import TurnLatency
from gateway.playout import Ledger
from tests.helpers import wait_until

AGENT = AgentSpec.model_validate({
    "id": "t", "name": "T", "greeting": "Hello.",
    "logic": {"kind": "scripted", "rules": [{"dtmf": "1", "say": "One."}, {"dtmf": "2", "say": "Two."}],
              "fallback": "Sorry?"},
    "tts": {"provider": "piper", "fallback": []},
})


class FakeCall:
    """The call side (:class:`gateway.conversation.CallPort`): records sentences; nothing is ever played."""

    def __init__(self) -> None:
        self.turns = 0
        self.mouth_to_ear_s: list[float] = []
        self.turn_latency: list[TurnLatency] = []
        self.first_frame_at: dict[str, float] = {}
        self.ledger = Ledger()
        self.said: list[str] = []
        self.interrupts = 0

    def say(self, text: str, kind: str = "sentence", *, start_mark: str | None = None, phrase: bool = False,
            first: bool | None = None, turn: int | None = None) -> str:
        name = f"{kind}-{len(self.said) + 1}"
        self.ledger.queue(name, text, turn or 0)
        self.said.append(text)
        return name

    async def interrupt(self) -> list[str]:
        self.interrupts += 1
        self.ledger.cleared()
        return []

    async def hold(self) -> None: ...

    def hold_new(self) -> None: ...

    def release(self) -> None: ...

    def discard(self) -> None: ...

    def hangup(self, outcome: str = "agent_hangup") -> None: ...

    def transfer(self, number: str) -> None: ...


class GatedLogic(ScriptedLogic):
    """Scripted, but its first answer to a digit streams until ``gate`` opens (a model still streaming)."""

    def __init__(self, agent: AgentSpec) -> None:
        super().__init__(agent)
        self.gate = asyncio.Event()
        self.streaming = asyncio.Event()
        self.events: list[LogicEvent] = []

    async def respond(self, event: LogicEvent) -> AsyncIterator[Output]:
        self.events.append(event)
        if isinstance(event, Dtmf) and not self.streaming.is_set():
            yield "Let me see. "
            self.streaming.set()
            await self.gate.wait()
            return
        async for out in super().respond(event):
            yield out


async def test_digits_waiting_for_the_agent_join_one_turn_and_the_latest_decides() -> None:
    agent = AGENT.model_copy(update={"turn_taking": AGENT.turn_taking.model_copy(update={"dtmf_interrupts": False})})
    call = FakeCall()
    logic = GatedLogic(agent)
    conversation = Conversation(call, agent, logic, None, None)
    await conversation.start()
    try:
        await conversation.on_call_event(Digit("9"))
        await asyncio.wait_for(logic.streaming.wait(), 10)
        for digit in "1212":  # the agent side is busy (and digits do not interrupt it): they wait, joined
            await conversation.on_call_event(Digit(digit))
        logic.gate.set()
        await wait_until(lambda: len(call.said) == 3)
        assert call.said == ["Hello.", "Let me see.", "Two."] and call.interrupts == 0
        assert [type(e).__name__ for e in logic.events] == ["CallStarted", "Dtmf", "Dtmf"]
        assert logic.events[2] == Dtmf("2", earlier="121") and ("caller", "<dtmf 1212>") in logic.heard_log
        assert conversation.turn == 3 and not conversation._pending
    finally:
        await asyncio.wait_for(conversation.aclose(), 10)


async def test_closing_with_a_reply_streaming_and_turns_queued_ends_at_once() -> None:
    """The brain waits on the running reply; its cancellation (the call ending) used to be swallowed there, so it
    went on through every queued turn and then waited forever: the call never ended after the caller hung up."""
    agent = AGENT.model_copy(update={"turn_taking": AGENT.turn_taking.model_copy(update={"dtmf_interrupts": False})})
    call = FakeCall()
    logic = GatedLogic(agent)  # the gate never opens
    conversation = Conversation(call, agent, logic, None, None)
    await conversation.start()
    await conversation.on_call_event(Digit("5"))
    await asyncio.wait_for(logic.streaming.wait(), 10)
    await conversation.on_call_event(Digit("1"))  # queued behind the streaming reply
    assert len(conversation._pending) == 1
    closing = asyncio.create_task(conversation.aclose())
    done, _ = await asyncio.wait([closing], timeout=10)  # not wait_for: closing finishes what it started
    assert closing in done
    assert conversation._tasks.live == 0
    assert [type(e).__name__ for e in logic.events] == ["CallStarted", "Dtmf", "CallEnding"]
