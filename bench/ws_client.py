"""Minimal sans-I/O WebSocket client (RFC 6455) for the load bench's emulated Twilio legs.

Rules of this file: no I/O and no clock; bytes in (``receive_data``), events out (``events_received``),
bytes to write come from the frame builders. Only what a Twilio media stream uses: the HTTP Upgrade
handshake, text frames (client → server, masked), text/binary messages possibly fragmented and split across
reads (server → client, unmasked), ping/pong and close. No extensions (no permessage-deflate: Twilio does not
negotiate it), no subprotocol.

**Load generation only, to loopback**: every client frame is masked with the key ``00 00 00 00``. That is
valid framing (the mask bit is set and the server unmasks as usual, doing the same work), and a zero key makes
the masked payload equal to the payload, so nothing is XORed here. RFC 6455 §5.3 wants the key unpredictable
(it protects intermediaries from cache poisoning by a hostile page); that does not apply to a benchmark talking
to 127.0.0.1, but never use this client across a network.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import os
import struct
from dataclasses import dataclass

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
MAX_MESSAGE = 2**20

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_ZERO_KEY = b"\0\0\0\0"
_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


class ProtocolError(Exception):
    """The server broke the handshake or the framing (the connection is unusable)."""


class State(enum.Enum):
    CONNECTING = "connecting"  # handshake sent, waiting for 101
    OPEN = "open"
    CLOSED = "closed"  # a close frame was received (or the peer broke the protocol)


@dataclass(frozen=True, slots=True)
class Message:
    """A complete data message: ``text`` True for opcode 1 (the payload is UTF-8 JSON for Twilio)."""

    data: bytes
    text: bool


@dataclass(frozen=True, slots=True)
class Ping:
    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    code: int  # 1005 when the frame had no status code
    reason: str


Event = Message | Ping | Close


def handshake_request(host: str, path: str, key: str | None = None) -> tuple[bytes, str]:
    """The HTTP/1.1 Upgrade request and the ``Sec-WebSocket-Accept`` the server must answer with."""
    key = key or base64.b64encode(os.urandom(16)).decode()
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: voicegw-bench\r\n\r\n")
    return request.encode(), accept_for(key)


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame, masked with the zero key (see the module docstring)."""
    n = len(payload)
    if n < 126:
        head = _SHORT.pack(0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = _MEDIUM.pack(0x80 | opcode, 0x80 | 126, n)
    else:
        head = _LONG.pack(0x80 | opcode, 0x80 | 127, n)
    return head + _ZERO_KEY + payload


def text_frame(text: str) -> bytes:
    return frame(OP_TEXT, text.encode())


def close_frame(code: int = 1000, reason: str = "") -> bytes:
    return frame(OP_CLOSE, struct.pack("!H", code) + reason.encode())


def pong_frame(data: bytes) -> bytes:
    return frame(OP_PONG, data)


class ClientConnection:
    """Parses what the server sends: the 101 response, then frames, into events."""

    def __init__(self, expected_accept: str, max_message: int = MAX_MESSAGE) -> None:
        self.state = State.CONNECTING
        self.expected_accept = expected_accept
        self.max_message = max_message
        self._buf = bytearray()  # bytes received and not parsed yet
        self._parts: list[bytes] = []  # fragments of the data message being assembled
        self._part_text = False
        self._events: list[Event] = []

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the socket; raises ProtocolError (and becomes CLOSED) on a broken handshake or frame."""
        if self.state is State.CLOSED:
            return
        self._buf += data
        try:
            if self.state is State.CONNECTING:
                self._parse_response()
            if self.state is State.OPEN:
                self._parse_frames()
        except ProtocolError:
            self.state = State.CLOSED
            self._buf.clear()
            raise

    def events_received(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def _parse_response(self) -> None:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > 16384:
                raise ProtocolError("handshake response headers too large")
            return
        head = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
        del self._buf[: end + 4]
        status = head[0].split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            raise ProtocolError(f"handshake answered {head[0]!r}")
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("upgrade", "").lower() != "websocket":
            raise ProtocolError("handshake response without Upgrade: websocket")
        if headers.get("sec-websocket-accept") != self.expected_accept:
            raise ProtocolError("wrong Sec-WebSocket-Accept")
        if "sec-websocket-extensions" in headers:
            raise ProtocolError(f"extension not offered: {headers['sec-websocket-extensions']}")
        self.state = State.OPEN

    def _parse_frames(self) -> None:
        buf = self._buf
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            n = b1 & 0x7F
            at = pos + 2
            if n == 126:
                if size - at < 2:
                    break
                n = (buf[at] << 8) | buf[at + 1]
                at += 2
            elif n == 127:
                if size - at < 8:
                    break
                n = int.from_bytes(buf[at : at + 8], "big")
                at += 8
            if b1 & 0x80:
                raise ProtocolError("masked frame from the server")  # RFC 6455 §5.1
            if b0 & 0x70:
                raise ProtocolError("reserved bits set (no extension was negotiated)")
            if n > self.max_message:
                raise ProtocolError(f"frame of {n} bytes")
            if size - at < n:
                break
            payload = bytes(buf[at : at + n])
            pos = at + n
            self._frame(b0 & 0x80 != 0, b0 & 0x0F, payload)
            if self.state is State.CLOSED:
                break
        del buf[:pos]

    def _frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        if opcode == OP_TEXT or opcode == OP_BINARY:
            if self._parts:
                raise ProtocolError("new data frame inside a fragmented message")
            if fin:
                self._events.append(Message(payload, opcode == OP_TEXT))
            else:
                self._parts, self._part_text = [payload], opcode == OP_TEXT
        elif opcode == OP_CONT:
            if not self._parts:
                raise ProtocolError("continuation frame outside a fragmented message")
            self._parts.append(payload)
            if sum(len(p) for p in self._parts) > self.max_message:
                raise ProtocolError("message too large")
            if fin:
                self._events.append(Message(b"".join(self._parts), self._part_text))
                self._parts = []
        elif opcode >= 0x8:
            if not fin or len(payload) > 125:
                raise ProtocolError("fragmented or oversized control frame")  # RFC 6455 §5.5
            if opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                self._events.append(Close(code, payload[2:].decode("utf-8", "replace")))
                self.state = State.CLOSED
            elif opcode == OP_PING:
                self._events.append(Ping(payload))
            elif opcode != OP_PONG:
                raise ProtocolError(f"unknown control opcode {opcode:#x}")
        else:
            raise ProtocolError(f"unknown opcode {opcode:#x}")
