"""A direct lane for busy WebSocket streams: uvicorn's sans-I/O WebSocket protocol plus an ASGI extension.

uvicorn hands every received message to the ASGI app through a queue: the app's task wakes once per
message and reading is paused and resumed around each one (two event-loop registrations per message).
A media stream carries 50 messages a second per call, so at a few hundred calls that hand-off is a large
share of the gateway's core (docs/scaling.md). With :class:`DirectWebSocketProtocol` as uvicorn's ``ws``
protocol, a WebSocket's ASGI scope carries the extension ``voicegw.direct``: once the app has accepted the
connection it may call ``scope["extensions"]["voicegw.direct"]["attach"](sink)``. From then on

* every message is handed to ``sink.on_message(text_or_bytes)`` synchronously as it is parsed, in order
  (messages already queued for the app first), with no queue, no task switch and no read pause;
* the end of the connection (peer close, lost connection, server shutdown, the app's own close) is
  ``sink.on_closed(code)``, once;
* the returned :class:`DirectWriter` writes text frames at once (``send_text``: False once the
  connection is closing).

The app must not call ASGI ``receive`` after attaching (nothing would arrive there); it still ends the
connection by returning or closing as usual. A sink that raises closes its own connection with 1011 and
nothing else. Everything else (handshake, limits, UTF-8 checks, ping/pong, close handshake, keepalive) is
uvicorn's and websockets' own; an app that never attaches sees plain ASGI.

Written here rather than taken from a library because no ASGI server offers a synchronous message callback
(ASGI itself is queue-based); it leans on uvicorn's ``websockets-sansio`` protocol for the handshake and
everything but the one common frame. That frame (a whole, masked, unfragmented text frame: every media
message) it reads itself, because websockets' generator-based parser cost about a quarter of the loop at 150
calls; any other frame still goes to websockets whole (:class:`DirectWebSocketProtocol`), and
``tests/test_direct_ws.py`` holds the two readings equal on randomly split streams with every kind of bad frame.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import Protocol as WsProtocol
from websockets.protocol import State
from websockets.streams import StreamReader

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask

log = logging.getLogger("voicegw.ws")

EXTENSION = "voicegw.direct"
HANDOFF_BUDGET_S = 0.001  # inbound work per loop callback before the paced senders get their turn
_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")
_FIN_TEXT = 0x81


class DirectSink(Protocol):
    def on_message(self, data: str | bytes) -> None:
        """One complete message (str: a text frame's UTF-8, already checked; bytes: a binary message)."""
        ...

    def on_closed(self, code: int | None) -> None:
        """The connection ended (the close code as received or sent; None when unknown). Called once."""
        ...


def text_frame(text: str) -> bytes:
    """One unmasked, unfragmented server text frame (RFC 6455 §5.2)."""
    data = text.encode()
    n = len(data)
    if n < 126:
        return _SHORT.pack(_FIN_TEXT, n) + data
    if n < 65536:
        return _MEDIUM.pack(_FIN_TEXT, 126, n) + data
    return _LONG.pack(_FIN_TEXT, 127, n) + data


class DirectWriter:
    """Writes text frames straight to the connection's transport."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: DirectWebSocketProtocol) -> None:
        self._protocol = protocol

    @property
    def open(self) -> bool:
        p = self._protocol
        return not (p.close_sent or p.disconnected or p.transport.is_closing())

    def send_text(self, text: str) -> bool:
        """Write one text message now; False (nothing written) once the connection is closing or closed."""
        return self.send_texts([text])

    def send_texts(self, texts: list[str]) -> bool:
        """Write these text messages now, in order, with one write; False (nothing written) once closing."""
        if not self.open:
            return False
        if texts:
            self._protocol.transport.write(b"".join([text_frame(text) for text in texts]))
        return True


class _Handoff:
    """Messages of every attached connection, handed to their sinks from one loop callback, in arrival order.

    One callback per loop iteration serves every connection (no task per message). It stops after
    ``budget_s`` and goes on from the next callback, behind whatever the iteration already scheduled (the
    paced senders woken by their timers): on a loaded core, inbound work waits a little rather than delaying
    the audio going out. The queue holds the inbox of each waiting message (the message waits in its inbox):
    nothing is allocated per message, and a backlog does not fill the collector's young generation (a queue
    of ``(inbox, text)`` tuples did: 29,000 of them in a burst at 800 calls, walked by every young collection).
    """

    def __init__(self, budget_s: float = HANDOFF_BUDGET_S) -> None:
        self.budget_s = budget_s
        self.items: collections.deque[_Inbox] = collections.deque()  # one entry per waiting message
        self.scheduled = False

    def put(self, inbox: _Inbox) -> None:
        """``inbox`` has one more message waiting (already in ``inbox.waiting``)."""
        self.items.append(inbox)
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.run)

    def run(self) -> None:
        items = self.items
        deadline = time.perf_counter() + self.budget_s
        for _ in range(len(items)):
            items.popleft().deliver_next()
            if time.perf_counter() > deadline:
                break
        if items:
            asyncio.get_running_loop().call_soon(self.run)  # the rest after what is already scheduled
        else:
            self.scheduled = False


_handoffs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Handoff] = weakref.WeakKeyDictionary()


class _Inbox(asyncio.Queue[Any]):
    """uvicorn's receive queue; once a sink is attached, what would be queued goes to the sink instead."""

    sink: DirectSink | None = None
    closed = False
    handoff: _Handoff | None = None

    def __init__(self) -> None:
        super().__init__()
        self.waiting: collections.deque[dict[str, Any] | str] = collections.deque()  # for the handoff, in order

    def put_nowait(self, item: Any) -> None:
        handoff = self.handoff
        if handoff is None:
            super().put_nowait(item)
        else:
            self.waiting.append(item)
            handoff.put(self)

    def deliver_next(self) -> None:
        self.deliver(self.waiting.popleft())

    def deliver(self, item: dict[str, Any] | str) -> None:
        sink = self.sink
        assert sink is not None
        if type(item) is str:  # a text message the lane read itself
            if not self.closed:
                sink.on_message(item)
            return
        assert isinstance(item, dict)
        if item["type"] == "websocket.receive":
            if not self.closed:
                text = item.get("text")
                sink.on_message(text if text is not None else item["bytes"])
        elif item["type"] == "websocket.disconnect" and not self.closed:
            self.closed = True
            sink.on_closed(item.get("code"))


def _parser_idle(conn: Any) -> bool:
    """True when websockets' parser waits for the first byte of a frame with nothing buffered (its frame loop,
    ``Protocol.parse``, suspended in ``StreamReader.at_eof``): a whole frame may then be fed to it on its own.
    Anything unexpected (another websockets layout) reads as False: the lane leaves all framing to websockets."""
    chain: list[Any] = []
    gen = getattr(conn, "parser", None)
    while gen is not None and len(chain) < 8:
        chain.append(getattr(gen, "gi_code", None))
        gen = getattr(gen, "gi_yieldfrom", None)
    return chain[-2:] == [_FRAME_LOOP, _AT_EOF] and not conn.reader.buffer


_FRAME_LOOP = WsProtocol.parse.__code__
_AT_EOF = StreamReader.at_eof.__code__


class DirectWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` WebSocket protocol with the ``voicegw.direct`` extension.

    Once a sink is attached (and no extension such as permessage-deflate was negotiated), the protocol reads
    frame boundaries itself: a whole, unfragmented, masked text frame — every media message — is unmasked
    (websockets' C ``apply_mask``), decoded and handed over here; every other frame (control frames, binary,
    fragments, RSV bits, unmasked, oversized, invalid UTF-8) is fed whole to websockets and uvicorn, which
    answer it as before, and on anything that ends the open state the rest of the stream goes their way. A
    frame split across reads waits here until it is complete. websockets' generator parser cost about a
    quarter of the loop at 150 calls (docs/scaling.md); this read costs a few microseconds.
    """

    _own_frames = False  # this protocol splits the stream into frames (websockets' parser idle between frames)
    _partial = b""  # the start of a frame not yet complete

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()

    def data_received(self, data: bytes) -> None:
        if not self._own_frames:
            super().data_received(data)
            inbox = self.queue
            assert isinstance(inbox, _Inbox)
            if (inbox.handoff is not None and not self.conn.extensions and self._open()
                    and _parser_idle(self.conn)):
                self._own_frames = True
            return
        if self._partial:
            data, self._partial = self._partial + data, b""
        self._read_frames(data)

    def _open(self) -> bool:
        conn = self.conn
        return conn.state is State.OPEN and conn.parser_exc is None and not self.close_sent

    def _read_frames(self, data: bytes) -> None:
        n = len(data)
        at = 0
        max_size = self.conn.max_size
        inbox = self.queue
        assert isinstance(inbox, _Inbox) and inbox.handoff is not None  # (frames are read here once attached)
        while n - at >= 2:
            first, second = data[at], data[at + 1]
            length = second & 0x7F
            if length < 126:
                head = at + 6
            elif length == 126:
                if n - at < 4:
                    break
                length = (data[at + 2] << 8) | data[at + 3]
                head = at + 8
            else:
                if n - at < 10:
                    break
                length = int.from_bytes(data[at + 2:at + 10], "big")
                head = at + 14
            if not second & 0x80 or (max_size is not None and length > max_size):
                self._give_up(data[at:])  # unmasked or too big: websockets refuses it (1002 / 1009)
                return
            end = head + length
            if end > n:
                break
            text = None
            if first == _FIN_TEXT and self.conn.cur_size is None:  # (inside a fragmented message: an error)
                try:
                    text = apply_mask(data[head:end], data[head - 4:head]).decode()
                except UnicodeDecodeError:
                    pass  # websockets' way closes with 1007
            if text is not None:
                inbox.put_nowait(text)  # (a bare str: what deliver() hands to the sink as is)
            else:
                super().data_received(data[at:end])  # one whole frame, read and answered the standard way
                if not self._open():
                    self._give_up(data[end:])
                    return
            at = end
        if at < n:
            self._partial = data[at:]

    def _give_up(self, rest: bytes) -> None:
        """From here on websockets reads the stream (it was idle: ``rest`` starts at a frame boundary)."""
        self._own_frames = False
        if rest:
            super().data_received(rest)

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][EXTENSION] = {"attach": self.attach}

    def attach(self, sink: DirectSink) -> DirectWriter:
        """Hand every message from now on (and those already queued) to ``sink``; see the module doc."""
        inbox = self.queue
        assert isinstance(inbox, _Inbox)
        if inbox.sink is not None:
            raise RuntimeError("a sink is already attached to this WebSocket")
        inbox.sink = _Guarded(sink, self)
        while not inbox.empty():
            inbox.deliver(inbox.get_nowait())  # what was queued before, in order
        loop = asyncio.get_running_loop()
        inbox.handoff = _handoffs.get(loop) or _handoffs.setdefault(loop, _Handoff())
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        return DirectWriter(self)

    def send_receive_event_to_app(self) -> None:
        inbox = self.queue
        assert isinstance(inbox, _Inbox)
        if inbox.handoff is None:
            super().send_receive_event_to_app()
            return
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return
        if self.curr_msg_data_type == "text":
            try:
                text = data.decode()
            except UnicodeDecodeError:
                self.conn.send_close(1007)
                self.handle_parser_exception()
                return
            inbox.put_nowait({"type": "websocket.receive", "text": text})
        else:
            inbox.put_nowait({"type": "websocket.receive", "bytes": data})


class _Guarded:
    """A sink whose failure closes only its own connection (1011), logged once."""

    __slots__ = ("_protocol", "_sink", "failed")

    def __init__(self, sink: DirectSink, protocol: DirectWebSocketProtocol) -> None:
        self._sink = sink
        self._protocol = protocol
        self.failed = False

    def on_message(self, data: str | bytes) -> None:
        if self.failed:
            return
        try:
            self._sink.on_message(data)
        except Exception:
            self._fail("message handler")

    def on_closed(self, code: int | None) -> None:
        try:
            self._sink.on_closed(code)
        except Exception:
            log.exception("direct WebSocket close handler failed")

    def _fail(self, what: str) -> None:
        self.failed = True
        log.exception("direct WebSocket %s failed: closing this connection (1011)", what)
        p = self._protocol
        if not (p.close_sent or p.disconnected):
            p.conn.send_close(1011, "internal error")
            p.transport.write(b"".join(p.conn.data_to_send()))
            p.close_sent = True
            p.close_timer = p.loop.call_later(p.close_timeout, p.transport.close)
        p.queue.put_nowait({"type": "websocket.disconnect", "code": 1011})  # the sink hears it, once


AttachFn = Callable[[DirectSink], DirectWriter]


def direct_attach(scope: Mapping[str, Any]) -> AttachFn | None:
    """The ``attach`` function of a WebSocket scope served by :class:`DirectWebSocketProtocol` (else None)."""
    ext = scope.get("extensions") or {}
    entry = ext.get(EXTENSION)
    return entry.get("attach") if isinstance(entry, dict) else None
