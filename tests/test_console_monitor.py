"""What the console page is told of a call: notes and events in, page messages (and the turn table) out."""

from __future__ import annotations

import json
from typing import Any

from gateway.carrier import Digit, MarkHeard
from gateway.console.monitor import PageMonitor
from gateway.console.protocol import AudioFormat, ConsoleProtocol
from gateway.notes import AgentTurn, BargedIn, CallerSaid, SentenceQueued, SentenceSpoken, TurnHeard
from gateway.ops.logs import TurnLatency


async def _nothing() -> None:
    return None


def monitor() -> tuple[PageMonitor, ConsoleProtocol]:
    protocol = ConsoleProtocol(AudioFormat("pcm_s16le", 8000))
    protocol.receive_text('{"type": "start", "agent": "demo"}')
    return PageMonitor(protocol, _nothing), protocol


def sent(protocol: ConsoleProtocol) -> list[dict[str, Any]]:
    return [json.loads(m) for m in protocol.data_to_send() if isinstance(m, str)]


def test_a_turn_assembles_its_latency_breakdown() -> None:
    page, protocol = monitor()
    page.on_note(CallerSaid("what are your hours", stopped_at=10.0, endpointed_at=10.35, recognized_at=10.6))
    page.on_note(AgentTurn(2, "speech", origin=10.0))
    page.on_note(SentenceQueued("t2-3", "We are open from nine to five.", "t2", 2))
    page.on_note(TurnHeard(2, at=11.2))
    page.on_note(SentenceSpoken("t2-3", "piper", False, 0.25))
    messages = sent(protocol)
    assert [m["type"] for m in messages] == ["caller", "turn", "sentence", "turn", "spoken", "turn"]
    assert messages[0] == {"type": "caller", "text": "what are your hours"}
    assert messages[2] == {"type": "sentence", "mark": "t2-3", "text": "We are open from nine to five.",
                           "kind": "t2", "turn": 2}
    assert messages[-1] == {"type": "turn", "turn": 2, "cause": "speech", "endpoint_wait_ms": 350.0,
                            "recognition_ms": 250.0, "logic_first_ms": None, "first_audio_ms": 250.0,
                            "first_heard_ms": 1200.0, "providers": ["piper"], "why": None, "speculative": False}
    # the conversation's own breakdown, when it comes, is what the row shows
    page.on_note(TurnLatency(turn=2, why="complete", speculative=True, endpoint_wait_ms=400.0, recognition_ms=120.0,
                             logic_first_ms=180.0, first_audio_ms=420.0, first_heard_ms=530.0))
    row = sent(protocol)[-1]
    assert row == {"type": "turn", "turn": 2, "cause": "speech", "endpoint_wait_ms": 400.0, "recognition_ms": 120.0,
                   "logic_first_ms": 180.0, "first_audio_ms": 420.0, "first_heard_ms": 530.0,
                   "providers": ["piper"], "why": "complete", "speculative": True}
    page.on_note(TurnLatency(turn=9, why="complete", speculative=False, endpoint_wait_ms=1.0, recognition_ms=1.0))
    assert sent(protocol) == []  # a turn the page never saw start: nothing to update


def test_the_greeting_and_keys_have_no_recognition_figures() -> None:
    page, protocol = monitor()
    page.on_note(AgentTurn(1, "greeting", origin=None))
    page.on_note(SentenceQueued("greeting-1", "Hello.", "greeting", 1))
    page.on_note(SentenceSpoken("greeting-1", "cartesia", True, None))  # a fallback, from the phrase cache
    page.on_event(Digit("5"))
    page.on_event(MarkHeard("greeting-1"))  # marks are the carrier's business, not the page's display
    page.on_note(BargedIn(1, "dtmf"))
    messages = sent(protocol)
    turn = [m for m in messages if m["type"] == "turn"][-1]
    assert turn["endpoint_wait_ms"] is None and turn["recognition_ms"] is None and turn["first_heard_ms"] is None
    assert turn["providers"] == ["cartesia"]
    assert {"type": "spoken", "mark": "greeting-1", "provider": "cartesia", "fallback": True,
            "first_audio_ms": None} in messages
    assert {"type": "dtmf", "digit": "5"} in messages and {"type": "barge_in", "turn": 1, "cause": "dtmf"} in messages
    assert not [m for m in messages if m["type"] == "mark"]
