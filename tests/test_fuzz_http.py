"""A few hundred fuzzed requests per HTTP surface (bench/fuzz_http.py runs 100,000): never a 5xx, a call survives.

And the bench's client tells a broken connection that was its own side of the exchange (a reused keep-alive
connection the server had closed, its own timeout) from a server that drops or never answers a request.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from bench.fuzz_http import SURFACES, Tally, fuzz, fuzz_request
from bench.gateway_proc import build
from gateway.serve import serve_in_loop
from gateway.settings import Settings
from gateway.twilio.emulator import TwilioEmulator


def test_the_generator_is_deterministic_and_varied() -> None:
    a = [fuzz_request(random.Random(7), s) for s in SURFACES for _ in range(3)]
    b = [fuzz_request(random.Random(7), s) for s in SURFACES for _ in range(3)]
    assert a == b
    rng = random.Random(3)
    many = [fuzz_request(rng, "webhooks") for _ in range(300)]
    types = {dict(r.headers).get(b"content-type") for r in many}
    assert len(types) > 5 and len({r.path for r in many}) > 2 and max(len(r.body) for r in many) > 32 * 1024


async def test_fuzzed_webhooks_and_speech_requests_never_get_a_5xx() -> None:
    app, _ = build(0.2)
    async with serve_in_loop(app, Settings()) as url:
        for i, surface in enumerate(SURFACES):
            tally = await fuzz(url, surface, 300, seed=100 + i, concurrency=4)
            assert tally.failures == 0, (tally.server_errors + tally.transport_errors)[:5]
            assert sum(tally.statuses.values()) == 300 and len(tally.statuses) >= 3
        call = await TwilioEmulator(url).call(agent="bench", hold_s=0.0, max_s=60)  # the gateway still serves
        assert call.errors == [] and call.marks_echoed


class MisbehavingServer:
    """A raw HTTP/1.1 server whose connections break on purpose: each request is answered 400 unless
    ``misbehave(n, path)`` (``n``: the request's number on its connection, from 1) says "close" (the connection
    is closed without an answer) or "stall" (no answer, ever)."""

    def __init__(self, misbehave: Callable[[int, str], str | None]) -> None:
        self.misbehave = misbehave
        self.handlers: set[asyncio.Task[object]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            n = 0
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                length = next((int(v) for k, _, v in (line.partition(":") for line in lines)
                               if k.strip().lower() == "content-length"), 0)
                await reader.readexactly(length)
                n += 1
                what = self.misbehave(n, request_line.split(" ")[1])
                if what == "close":
                    break
                if what == "stall":
                    await asyncio.Event().wait()  # until the test ends
                writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\nno")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _fuzz_against(server: MisbehavingServer, inputs: int, timeout_s: float = 10.0) -> Tally:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        return await fuzz(f"http://127.0.0.1:{port}", "webhooks", inputs, seed=5, concurrency=1,
                          timeout_s=timeout_s, keepalive_expiry_s=60)
    finally:
        listener.close()
        for task in server.handlers:
            task.cancel()
        await asyncio.gather(*server.handlers, return_exceptions=True)
        await listener.wait_closed()


async def test_a_reused_connection_the_server_closed_is_told_apart_from_a_server_that_drops_requests() -> None:
    # every connection closes at its second request, as an idle keep-alive connection does when the client reuses
    # it as the server's timer fires: sent again on a fresh connection, each is answered
    stale = await _fuzz_against(MisbehavingServer(lambda n, path: "close" if n == 2 else None), 20)
    assert stale.failures == 0 and stale.stale_connections >= 5 and stale.client_timeouts == 0
    assert sum(stale.statuses.values()) == 20 and stale.recovered and "reused connection" in stale.recovered[0]
    # a server that drops every /twilio/status request: a failure, whether the connection was fresh or reused
    drops = await _fuzz_against(MisbehavingServer(lambda n, path: "close" if "status" in path else None), 20)
    assert drops.stale_connections == 0 and drops.server_errors == []
    assert 0 < len(drops.transport_errors) < 20 and all("/twilio/status" in e for e in drops.transport_errors)
    assert "sent again: RemoteProtocolError" in drops.transport_errors[0]
    assert sum(drops.statuses.values()) + len(drops.transport_errors) == 20


async def test_the_clients_own_timeout_is_counted_apart_and_the_request_still_checked() -> None:
    flip = iter(range(10**6))
    slow = MisbehavingServer(lambda n, path: "stall" if next(flip) % 2 == 0 else None)
    tally = await _fuzz_against(slow, 2, timeout_s=2.0)  # every first attempt gets no answer, every second does
    assert tally.client_timeouts == 2 and tally.failures == 0 and tally.statuses == {400: 2}
    hung = await _fuzz_against(MisbehavingServer(lambda n, path: "stall"), 1, timeout_s=2.0)
    assert hung.client_timeouts == 0 and len(hung.transport_errors) == 1  # sent again, still no answer
    assert "ReadTimeout" in hung.transport_errors[0] and "sent again: ReadTimeout" in hung.transport_errors[0]
