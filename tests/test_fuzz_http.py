"""A few hundred fuzzed requests per HTTP surface (bench/fuzz_http.py runs 100,000): never a 5xx, a call survives."""

from __future__ import annotations

import random

from bench.fuzz_http import SURFACES, fuzz, fuzz_request
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
