"""What the console page shows of a call: the call's notes and events, turned into page messages.

I/O shell around :mod:`gateway.notes`: callbacks queue JSON messages on the call's
:class:`gateway.console.protocol.ConsoleProtocol` (never blocking the call) and one task sends them.
Each agent turn gets one row in the page's table, sent again as its figures arrive: for an answered
caller turn, the conversation's :class:`gateway.ops.logs.TurnLatency` (milliseconds after the caller
stopped speaking: turn declared over, logic's first output, first frame ready, first frame heard; and
the recognizer's compute time); for other turns (greeting, keypad, silence) what the call reports:
the first sentence's first audio and, for a key press, the first frame heard after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.carrier import CallEvent, Digit
from gateway.console.protocol import ConsoleProtocol
from gateway.notes import AgentTurn, BargedIn, CallerSaid, CallNote, SentenceQueued, SentenceSpoken, TurnHeard
from gateway.ops.logs import TurnLatency

log = logging.getLogger("voicegw.console")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 1)


@dataclass
class _Turn:
    turn: int
    cause: str
    origin: float | None
    endpoint_wait_s: float | None = None
    recognition_s: float | None = None
    first_audio_s: float | None = None
    first_heard_s: float | None = None
    providers: list[str] = field(default_factory=list)
    latency: TurnLatency | None = None  # the conversation's own breakdown of an answered caller turn

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "turn": self.turn, "cause": self.cause, "endpoint_wait_ms": _ms(self.endpoint_wait_s),
            "recognition_ms": _ms(self.recognition_s), "logic_first_ms": None,
            "first_audio_ms": _ms(self.first_audio_s), "first_heard_ms": _ms(self.first_heard_s),
            "providers": self.providers, "why": None, "speculative": False,
        }
        if self.latency is not None:
            t = self.latency
            out.update(endpoint_wait_ms=t.endpoint_wait_ms, recognition_ms=t.recognition_ms,
                       logic_first_ms=t.logic_first_ms, first_audio_ms=t.first_audio_ms,
                       first_heard_ms=t.first_heard_ms, why=t.why, speculative=t.speculative)
        return out


class PageMonitor:
    def __init__(self, protocol: ConsoleProtocol, flush: Callable[[], Awaitable[None]]) -> None:
        self.protocol = protocol
        self._flush = flush
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._turns: dict[int, _Turn] = {}
        self._mark_turn: dict[str, int] = {}
        self._said: CallerSaid | None = None

    def attach(self, session: Any) -> None:
        """Watch ``session`` (a :class:`gateway.call.CallSession`) and its conversation, when it has one."""
        session.observers.append(self.on_event)
        session.notes.append(self.on_note)
        listener_notes = getattr(session.listener, "notes", None)
        if isinstance(listener_notes, list):
            listener_notes.append(self.on_note)
        self._task = asyncio.create_task(self._sender(), name="console-monitor")

    def _send(self, message_type: str, **fields: Any) -> None:
        self.protocol.send_event(message_type, **fields)
        self._wake.set()

    async def _sender(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush()
            except Exception as exc:  # the page went away: the call notices on its own
                log.debug("console monitor: %r", exc)
                return

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # ---- callbacks (from the call's tasks: queue and return) --------------------------------------------------
    def on_event(self, event: CallEvent) -> None:
        if isinstance(event, Digit):
            self._send("dtmf", digit=event.digit)

    def on_note(self, note: CallNote) -> None:
        if isinstance(note, SentenceQueued):
            self._mark_turn[note.mark] = note.turn
            self._send("sentence", mark=note.mark, text=note.text, kind=note.kind, turn=note.turn)
        elif isinstance(note, SentenceSpoken):
            self._send("spoken", mark=note.mark, provider=note.provider, fallback=note.fallback,
                       first_audio_ms=_ms(note.first_audio_s))
            turn = self._turns.get(self._mark_turn.get(note.mark, -1))
            if turn is not None:
                if turn.first_audio_s is None and not turn.providers:
                    turn.first_audio_s = note.first_audio_s
                if note.provider not in turn.providers:
                    turn.providers.append(note.provider)
                self._send("turn", **turn.as_json())
        elif isinstance(note, CallerSaid):
            self._said = note
            self._send("caller", text=note.text)
        elif isinstance(note, AgentTurn):
            record = _Turn(note.turn, note.cause, note.origin)
            said = self._said
            if note.cause == "speech" and said is not None:
                record.endpoint_wait_s = said.endpointed_at - said.stopped_at
                record.recognition_s = said.recognized_at - said.endpointed_at
                self._said = None
            self._turns[note.turn] = record
            self._send("turn", **record.as_json())
        elif isinstance(note, TurnHeard):
            turn = self._turns.get(note.turn)
            if turn is not None and turn.origin is not None:
                turn.first_heard_s = note.at - turn.origin
                self._send("turn", **turn.as_json())
        elif isinstance(note, BargedIn):
            self._send("barge_in", turn=note.turn, cause=note.cause)
        elif isinstance(note, TurnLatency):
            turn = self._turns.get(note.turn)
            if turn is not None:
                turn.latency = note
                self._send("turn", **turn.as_json())
        elif isinstance(note, TurnLatency):  # the conversation's own breakdown (issue 13), when the turn is heard
            turn = self._turns.get(note.turn)
            if turn is not None:
                turn.endpoint_wait_s = note.endpoint_wait_ms / 1000.0
                turn.recognition_s = note.recognition_ms / 1000.0  # compute; done before the turn end if speculative
                self._send("turn", **turn.as_json())
