"""The browser carrier's wire protocol, sans-I/O: what the console page and the gateway say on ``/console/call``.

Rules of this file: pure, no I/O, no clock. Feed what the socket received (``receive_text`` /
``receive_bytes`` / ``receive_eof``), collect ``events_received()``; queue what to send
(``send_*``), collect ``data_to_send()`` (text frames as ``str``, audio as ``bytes``). The
lifecycle is ``AWAITING_START → STREAMING → STOPPED``; a malformed message raises
:class:`ConsoleProtocolError` and changes nothing (fatal before ``start``, ignorable after).

Wire format (docs/console.md):

* page → gateway, text: ``{"type": "start", "agent": id}`` (first), ``{"type": "mark", "name": n,
  "played_ms": t}`` when the audio queued before mark ``n`` has played (also for marks a ``clear``
  dropped, with ``"cleared": true``), ``{"type": "dtmf", "digit": d}``, ``{"type": "hangup"}``.
* page → gateway, binary: microphone audio in the ``in`` format of ``ready``, 20 ms per message.
* gateway → page, text: ``ready`` (call id, agent, audio formats), ``mark``, ``clear``, and call
  events for the page to show (``sentence``, ``spoken``, ``caller``, ``dtmf``, ``barge_in``, ``turn``,
  ``transfer``, ``end``).
* gateway → page, binary: agent audio in the ``out`` format of ``ready``.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import Any

MAX_NAME_CHARS = 256
_DIGIT = re.compile(r"^[0-9*#]$")
_AGENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class State(enum.Enum):
    AWAITING_START = "awaiting_start"
    STREAMING = "streaming"
    STOPPED = "stopped"


class ConsoleProtocolError(Exception):
    """The page sent something malformed; ``fatal`` when the call cannot go on (before ``start``)."""

    def __init__(self, kind: str, reason: str, fatal: bool) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind, self.reason, self.fatal = kind, reason, fatal


@dataclass(frozen=True, slots=True)
class Start:
    agent: str
    sample_rate: int | None = None


@dataclass(frozen=True, slots=True)
class Audio:
    data: bytes


@dataclass(frozen=True, slots=True)
class Played:
    """The page played everything queued before mark ``name`` (or dropped it on ``clear``)."""

    name: str
    played_ms: int | None = None
    cleared: bool = False


@dataclass(frozen=True, slots=True)
class Digit:
    digit: str


@dataclass(frozen=True, slots=True)
class Hangup:
    pass


Event = Start | Audio | Played | Digit | Hangup


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """One direction's audio on the wire: ``pcm_s16le`` or ``mulaw``, mono, at ``rate`` Hz."""

    encoding: str
    rate: int
    frame_ms: int = 20

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.encoding == "pcm_s16le" else 1

    def as_json(self) -> dict[str, Any]:
        return {"encoding": self.encoding, "rate": self.rate, "frame_ms": self.frame_ms}


class ConsoleProtocol:
    def __init__(self, audio_in: AudioFormat, max_audio_bytes: int = 65536) -> None:
        self.state = State.AWAITING_START
        self.audio_in = audio_in
        self.max_audio_bytes = max_audio_bytes
        self._events: list[Event] = []
        self._out: list[str | bytes] = []

    # ---- receiving ---------------------------------------------------------------------------------------------
    def _fail(self, kind: str, reason: str) -> ConsoleProtocolError:
        return ConsoleProtocolError(kind, reason, fatal=self.state is State.AWAITING_START)

    def receive_bytes(self, data: bytes) -> None:
        if self.state is State.STOPPED:
            return
        if self.state is State.AWAITING_START:
            raise self._fail("out_of_order", "audio before start")
        if len(data) > self.max_audio_bytes:
            raise self._fail("oversized", f"{len(data)} bytes of audio in one message (at most {self.max_audio_bytes})")
        if len(data) % self.audio_in.bytes_per_sample:
            raise self._fail("bad_audio",
                             f"{len(data)} bytes is not a whole number of {self.audio_in.encoding} samples")
        self._events.append(Audio(bytes(data)))

    def receive_text(self, text: str) -> None:
        if self.state is State.STOPPED:
            return
        try:
            msg = json.loads(text)
        except ValueError:
            raise self._fail("bad_json", "not valid JSON") from None
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            raise self._fail("bad_message", "expected a JSON object with a string `type`")
        kind = msg["type"]
        if self.state is State.AWAITING_START and kind != "start":
            raise self._fail("out_of_order", f"{kind!r} before start")
        if kind == "start":
            self._start(msg)
        elif kind == "mark":
            name = msg.get("name")
            if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
                raise self._fail("bad_mark", "mark needs a non-empty string `name`")
            played = msg.get("played_ms")
            if played is not None and (not isinstance(played, int) or isinstance(played, bool) or played < 0):
                raise self._fail("bad_mark", "`played_ms` must be a non-negative integer")
            self._events.append(Played(name, played, msg.get("cleared") is True))
        elif kind == "dtmf":
            digit = msg.get("digit")
            if not isinstance(digit, str) or not _DIGIT.match(digit):
                raise self._fail("bad_dtmf", f"digit {digit!r} is not one of 0-9, * and #")
            self._events.append(Digit(digit))
        elif kind == "hangup":
            self.state = State.STOPPED
            self._events.append(Hangup())
        else:
            raise self._fail("unknown_type", f"unknown message type {kind!r}")

    def _start(self, msg: dict[str, Any]) -> None:
        if self.state is not State.AWAITING_START:
            raise self._fail("out_of_order", "a second start")
        agent = msg.get("agent")
        if not isinstance(agent, str) or not _AGENT.match(agent):
            raise self._fail("bad_start", f"agent {agent!r} is not an agent id")
        rate = msg.get("sample_rate")
        self.state = State.STREAMING
        self._events.append(Start(agent, rate if isinstance(rate, int) and not isinstance(rate, bool) else None))

    def receive_eof(self) -> None:
        self.state = State.STOPPED

    def events_received(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    # ---- sending -----------------------------------------------------------------------------------------------
    def send_event(self, message_type: str, **fields: Any) -> None:
        """A control or display message (``ready``, ``mark``, ``clear``, ``sentence``, …)."""
        if self.state is State.STOPPED and message_type != "end":
            return
        self._out.append(json.dumps({"type": message_type, **fields}, separators=(",", ":")))

    def send_audio(self, data: bytes) -> None:
        if self.state is State.STREAMING:
            self._out.append(bytes(data))

    def send_mark(self, name: str) -> None:
        self.send_event("mark", name=name)

    def send_clear(self) -> None:
        self.send_event("clear")

    def data_to_send(self) -> list[str | bytes]:
        out, self._out = self._out, []
        return out
