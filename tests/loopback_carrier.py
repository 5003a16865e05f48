"""A second carrier for tests: an in-memory :class:`gateway.carrier.CarrierLink` with no Twilio anywhere.

The "caller" pushes neutral events (:meth:`LoopbackLink.push`); what the call core sends is kept in order in
:attr:`LoopbackLink.sent` (``("audio", frame)``, ``("mark", name)``, ``("clear", "")``). Playout is instant: a
mark comes back as :class:`MarkHeard` as soon as it is sent (the call core paces the frames itself), and a
``clear`` drops nothing that could still be echoed. ``hang_up`` answers like a carrier without a hang-up API
(the call core closes the link); ``transfer`` refuses with a :class:`CarrierError` unless ``transfers`` is set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from gateway.carrier import CallEvent, CarrierError, HungUp, MarkHeard


class LoopbackLink:
    def __init__(self, call_id: str = "loop-1", *, transfers: bool = False) -> None:
        self._call_id = call_id
        self._events: asyncio.Queue[CallEvent] = asyncio.Queue()
        self._open = True
        self.transfers = transfers
        self.sent: list[tuple[str, bytes | str]] = []
        self.hang_ups = 0
        self.transferred_to: str | None = None
        self.closed = asyncio.Event()

    # ---- the caller's side ------------------------------------------------------------------------------------
    def push(self, event: CallEvent) -> None:
        self._events.put_nowait(event)

    def marks(self) -> list[str]:
        return [str(v) for k, v in self.sent if k == "mark"]

    def audio_after(self, mark: str) -> bytes:
        """The agent audio sent after ``mark``."""
        i = self.sent.index(("mark", mark))
        return b"".join(v for k, v in self.sent[i + 1:] if k == "audio" and isinstance(v, bytes))

    # ---- CarrierLink ------------------------------------------------------------------------------------------
    @property
    def call_id(self) -> str:
        return self._call_id

    @property
    def open(self) -> bool:
        return self._open

    async def receive(self) -> CallEvent:
        return await self._events.get()

    async def send_audio(self, frames: Sequence[bytes]) -> None:
        assert self._open and frames and all(len(frame) == 160 for frame in frames)
        self.sent.extend(("audio", frame) for frame in frames)

    async def send_mark(self, name: str) -> None:
        assert self._open
        self.sent.append(("mark", name))
        self.push(MarkHeard(name))

    async def clear(self) -> None:
        if self._open:
            self.sent.append(("clear", ""))

    async def hang_up(self) -> bool:
        self.hang_ups += 1
        return False

    async def transfer(self, number: str, say_first: str | None = None) -> None:
        if not self.transfers:
            raise CarrierError("this carrier cannot transfer")
        self.transferred_to = number
        self.push(HungUp("completed"))

    async def aclose(self) -> None:
        self._open = False
        self.closed.set()
