"""Fuzz the HTTP surfaces: the Twilio webhooks and /v1/audio/speech, with random bodies, headers and encodings.

The gateway is bench.gateway_proc's synthetic one (the real app, an instant voice, signatures off so fuzzed
forms reach the handlers behind the signature check) under real uvicorn in this process. Each input is one
request built by :func:`fuzz_request` from a seeded RNG: valid forms and JSON mutated field by field, random
bytes, wrong or missing content types, multipart, huge and chunked bodies, deep nesting, lone surrogates,
non-ASCII and control bytes in headers, odd query strings. Meanwhile one emulated call runs; it must end
cleanly with every mark echoed. A 5xx, a dropped connection or a failed call is a failure.

    python -m bench.fuzz_http [--inputs 100000] [--surface webhooks|speech|all] [--seed 1] [--concurrency 8]
                              [--timeout 30] [--keepalive-expiry 2] [--max-minutes M]
Per surface, then last line:
    fuzz_http: surfaces=<s> inputs_per_surface=<n> 5xx=<k> transport_errors=<e> stale_connections=<c>
               client_timeouts=<t> call_ok=<yes|no> calls=<n> calls_marks_echoed=<m> rate_per_s=<r>
The compass figure is 100,000 inputs per surface with 5xx=0, transport_errors=0, call_ok=yes.
``inputs_per_surface`` is what ran (the fewest of the surfaces when ``--max-minutes`` cut one short). A request
whose connection broke, or that timed out on the client, is sent again alone on a fresh connection: answered
then, it counts as ``stale_connections`` (a keep-alive connection the server closed for idleness as this client
reused it) or ``client_timeouts`` (this client's own timeout, e.g. on a starved CPU), not as a failure; broken
again, it is a ``transport_errors`` failure (see :class:`Tally`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx

from gateway.serve import serve_in_loop
from gateway.settings import Settings
from gateway.twilio.emulator import TwilioEmulator

SURFACES = ("webhooks", "speech")
FORM_TYPE = "application/x-www-form-urlencoded"
_TYPES = [FORM_TYPE, FORM_TYPE + "; charset=utf-8", FORM_TYPE + "; charset=latin-1", "multipart/form-data",
          "multipart/form-data; boundary=xyz", "application/json", "text/plain", "", "*/*", "form\tdata",
          "application/x-www-form-urlencoded" * 50]
_STRINGS = ["", "CA" + "a" * 32, "+15005550199", "+1", "demo", "bench", "x|y", "\u0000", "\ud800", "é", "日本",
            "\r\nX-Injected: 1", "%", "%zz", "%ff%fe", "+", "&", "=", "a" * 5000, "null", "[]", "{}", "1e999",
            "' OR 1=1 --", "<Response/>", "\x1b[2J"]
_SPEECH_FIELDS = {"text": str, "input": str, "model": str, "voice": str, "speed": float, "temperature": float,
                  "top_p": float, "top_k": int, "response_format": str, "use_refine": bool, "tts": dict}


@dataclass
class FuzzInput:
    method: str
    path: str
    headers: list[tuple[bytes, bytes]]
    body: bytes


def _junk(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def _text(rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.5:
        return rng.choice(_STRINGS)
    if pick < 0.8:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0, 0x3000), 0xD800 + rng.randrange(2048)]))
                       for _ in range(rng.randrange(0, 40)))
    return _junk(rng, rng.randrange(0, 30)).decode("latin-1")


def _value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**64, 10**400, rng.randrange(-1000, 1000)])
    if kind == 3:
        return rng.choice([0.5, 1.0, 2.0, -0.0, 1e308, float("nan"), float("inf")])
    if kind in (4, 5):
        return _text(rng)
    if kind == 6:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {_text(rng): _value(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


def _form(rng: random.Random) -> bytes:
    fields = {"CallSid": f"CA{rng.getrandbits(128):032x}", "AccountSid": "AC" + "1" * 32,
              "From": "+14155550100", "To": rng.choice(["+15005550199", "+15005550006", _text(rng)])}
    for _ in range(rng.randrange(0, 4)):
        fields[_text(rng)] = _text(rng)
    pairs = list(fields.items())
    rng.shuffle(pairs)
    if rng.random() < 0.3:
        pairs = pairs[: rng.randrange(0, len(pairs) + 1)]

    def enc(s: str) -> str:
        return quote(s, safe="", errors="surrogatepass") if rng.random() < 0.8 else s

    return "&".join(f"{enc(k)}={enc(v)}" for k, v in pairs).encode("utf-8", "surrogatepass")


def _speech_body(rng: random.Random) -> bytes:
    pick = rng.random()
    if pick < 0.05:
        return b"[" * rng.randrange(1, 30000) + b"]" * rng.randrange(0, 3)
    if pick < 0.1:
        return b'{"text": "' + b"\\ud800" * rng.randrange(1, 50) + b'"}'
    if pick < 0.15:
        return _junk(rng, rng.randrange(0, 500))
    body: dict[str, object] = {"text": rng.choice(["Hello there.", "Call 555-0100 at 9:30.", "9" * 100, ""])}
    for name, kind in _SPEECH_FIELDS.items():
        if rng.random() < 0.3:
            body[name] = _value(rng) if rng.random() < 0.7 else kind()
    if rng.random() < 0.2:
        body[_text(rng)] = _value(rng)
    if rng.random() < 0.1:
        return json.dumps(body, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")
    return json.dumps(body, default=str).encode()


def _header_value(rng: random.Random) -> bytes:
    pick = rng.random()
    if pick < 0.4:
        return rng.choice([b"Bearer x", b"Bearer \xff\xfe", b"Basic \xe9", b"bearer", b"", b"Bearer " + b"a" * 4000])
    return bytes(rng.choice([rng.randrange(0x20, 0x7F), rng.randrange(0x80, 0x100), 0x09])
                 for _ in range(rng.randrange(0, 60))).strip()


def fuzz_request(rng: random.Random, surface: str) -> FuzzInput:
    """One random request for ``surface`` (``webhooks`` or ``speech``)."""
    headers: list[tuple[bytes, bytes]] = []
    if surface == "webhooks":
        path = rng.choice(["/twilio/voice", "/twilio/status"])
        if rng.random() < 0.3:
            path += "?" + rng.choice(["agent=bench", "agent=", "agent=%ff", "agent=" + "x" * 300, "a=1&a=2", "%"])
        body = _form(rng) if rng.random() < 0.7 else _junk(rng, rng.randrange(0, 2000))
        ctype = FORM_TYPE if rng.random() < 0.6 else rng.choice(_TYPES)
        if rng.random() < 0.4:
            headers.append((b"x-twilio-signature", _header_value(rng)))
    else:
        path = "/v1/audio/speech"
        body = _speech_body(rng)
        ctype = "application/json" if rng.random() < 0.8 else rng.choice(_TYPES)
        if rng.random() < 0.3:
            headers.append((b"authorization", _header_value(rng)))
    if rng.random() < 0.03:
        body = body + b"a" * rng.choice([40 * 1024, 70 * 1024, 300 * 1024])
    if ctype:
        headers.append((b"content-type", ctype.encode("latin-1")))
    for _ in range(rng.randrange(0, 3)):
        headers.append((rng.choice([b"x-forwarded-for", b"accept", b"x-request-id", b"content-encoding"]),
                        _header_value(rng)))
    method = "POST" if rng.random() < 0.97 else rng.choice(["GET", "PUT", "DELETE"])
    return FuzzInput(method, path, headers, body)


@dataclass
class Tally:
    """What the gateway answered, and what broke on the way.

    A request whose connection broke (or whose answer did not come within the client's timeout) is sent again
    once, alone, on a fresh connection. Answered then, the first failure was the client's side of the exchange:
    a keep-alive connection the server had closed for idleness just as this client reused it (uvicorn closes
    connections idle ``timeout_keep_alive``, 5 s; on a starved CPU this client can take that long to reuse one),
    or this client's own timeout. Those are counted apart (``stale_connections``, ``client_timeouts``); a
    request that breaks again on a fresh connection is the server's doing (``transport_errors``).
    """

    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    transport_errors: list[str] = field(default_factory=list)
    stale_connections: int = 0  # broke on a reused keep-alive connection; answered on a fresh one
    client_timeouts: int = 0  # no answer within the client's timeout; answered when sent again
    recovered: list[str] = field(default_factory=list)  # the first few of those two, for the report

    @property
    def failures(self) -> int:
        return len(self.server_errors) + len(self.transport_errors)


class _Trace:
    """httpcore's trace hook: did this request open a connection of its own (or reuse a pooled one)?"""

    def __init__(self) -> None:
        self.connected = False

    async def __call__(self, event: str, info: dict[str, object]) -> None:
        if event.startswith("connection.connect_tcp."):
            self.connected = True


def _describe(item: FuzzInput, exc: Exception) -> str:
    return (f"{item.method} {item.path} ({len(item.body)} bytes, {dict(item.headers).get(b'content-type')!r}): "
            f"{type(exc).__name__} {exc}")[:300]


async def fuzz(url: str, surface: str, inputs: int, seed: int, concurrency: int = 8, timeout_s: float = 30.0,
               keepalive_expiry_s: float = 2.0, deadline: float | None = None) -> Tally:
    """Send ``inputs`` fuzzed requests to ``surface`` of the gateway at ``url`` (fewer when ``deadline``, on the
    monotonic clock, comes first: the tally counts those that ran).

    The pool drops connections idle ``keepalive_expiry_s`` (below the server's 5 s) so that a reuse rarely
    meets a connection the server is closing; :class:`Tally` says how the rest are told apart.
    """
    tally = Tally()
    queue: asyncio.Queue[FuzzInput | None] = asyncio.Queue(maxsize=4 * concurrency)
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=concurrency, keepalive_expiry=keepalive_expiry_s)

    async def produce() -> None:
        for _ in range(inputs):
            if deadline is not None and time.monotonic() >= deadline:
                break
            await queue.put(fuzz_request(rng, surface))
        for _ in range(concurrency):
            await queue.put(None)

    def answered(item: FuzzInput, resp: httpx.Response) -> None:
        tally.statuses[resp.status_code] += 1
        if resp.status_code >= 500:
            tally.server_errors.append(f"{resp.status_code} {item.method} {item.path} {item.body[:120]!r}")

    async def again(fresh: httpx.AsyncClient, item: FuzzInput, first: httpx.TransportError, reused: bool) -> None:
        try:
            resp = await fresh.send(fresh.build_request(item.method, item.path, content=item.body,
                                                        headers=item.headers))
        except httpx.HTTPError as exc:
            tally.transport_errors.append(f"{_describe(item, first)}; sent again: {type(exc).__name__} {exc}"[:400])
            return
        timed_out = isinstance(first, httpx.TimeoutException)
        if not timed_out and not reused:  # a fresh connection dropped, then answered: still the server's doing
            tally.transport_errors.append(f"{_describe(item, first)} (new connection); sent again: "
                                          f"{resp.status_code}")
            return
        if timed_out:
            tally.client_timeouts += 1
        else:
            tally.stale_connections += 1
        if len(tally.recovered) < 10:
            tally.recovered.append(f"{_describe(item, first)} ({'reused' if reused else 'new'} connection); "
                                   f"sent again: {resp.status_code}")
        answered(item, resp)

    async def consume(client: httpx.AsyncClient, fresh: httpx.AsyncClient) -> None:
        while (item := await queue.get()) is not None:
            trace = _Trace()
            request = client.build_request(item.method, item.path, content=item.body, headers=item.headers,
                                           extensions={"trace": trace})
            try:
                resp = await client.send(request)
            except httpx.LocalProtocolError:  # the client refused to send it (not a valid HTTP request)
                tally.statuses[0] += 1
                continue
            except httpx.TransportError as exc:
                await again(fresh, item, exc, reused=not trace.connected)
                continue
            answered(item, resp)

    fresh_limits = httpx.Limits(max_keepalive_connections=0)  # one connection per request, never reused
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits) as client, \
            httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=fresh_limits) as fresh:
        await asyncio.gather(produce(), *[consume(client, fresh) for _ in range(concurrency)])
    return tally


async def run(surfaces: list[str], inputs: int, seed: int, concurrency: int, *, timeout_s: float = 30.0,
              keepalive_expiry_s: float = 2.0, max_s: float | None = None) -> int:
    from bench.gateway_proc import build
    from gateway.ops import logs

    logs.configure("ERROR")  # each refusal is a WARNING line; the tally says it all
    app, _ = build(0.5)
    settings = Settings.from_env({"VOICEGW_LOG_LEVEL": "ERROR"})
    totals = Tally()
    ran: list[int] = []
    started = time.monotonic()
    async with serve_in_loop(app, settings, access_log=False) as url:
        emu = TwilioEmulator(url)
        marks = calls = 0

        async def call_during_fuzz() -> bool:
            nonlocal marks, calls
            calls_ok = True
            while not done.is_set():
                result = await emu.call(agent="bench", hold_s=0.0, max_s=60)
                marks += len(result.marks_echoed)
                calls += 1
                ok = not result.errors and bool(result.marks_echoed) and not result.odd_frames
                if not ok and calls_ok:
                    print(f"  call failed: errors={result.errors[:3]} marks={result.marks_echoed} "
                          f"odd_frames={result.odd_frames} close={result.close_code}", flush=True)
                calls_ok = calls_ok and ok
            return calls_ok

        done = asyncio.Event()
        caller = asyncio.create_task(call_during_fuzz())
        for i, surface in enumerate(surfaces):
            t0 = time.monotonic()
            tally = await fuzz(url, surface, inputs, seed + i, concurrency, timeout_s, keepalive_expiry_s,
                               None if max_s is None else t0 + max_s)
            n = sum(tally.statuses.values()) + len(tally.transport_errors)
            ran.append(n)
            for name in ("server_errors", "transport_errors", "recovered"):
                getattr(totals, name).extend(getattr(tally, name))
            totals.stale_connections += tally.stale_connections
            totals.client_timeouts += tally.client_timeouts
            statuses = " ".join(f"{k}:{v}" for k, v in sorted(tally.statuses.items()))
            print(f"{surface}: inputs={n} 5xx={len(tally.server_errors)} "
                  f"transport_errors={len(tally.transport_errors)} stale_connections={tally.stale_connections} "
                  f"client_timeouts={tally.client_timeouts} rate_per_s={n / (time.monotonic() - t0):.0f} "
                  f"statuses {statuses}", flush=True)
            for line in (tally.server_errors + tally.transport_errors)[:10]:
                print(f"  {line}", flush=True)
            for line in tally.recovered[:5]:
                print(f"  recovered: {line}", flush=True)
        done.set()
        call_ok = await caller
    elapsed = time.monotonic() - started
    print(f"fuzz_http: surfaces={','.join(surfaces)} inputs_per_surface={min(ran)} 5xx={len(totals.server_errors)} "
          f"transport_errors={len(totals.transport_errors)} stale_connections={totals.stale_connections} "
          f"client_timeouts={totals.client_timeouts} call_ok={'yes' if call_ok else 'no'} calls={calls} "
          f"calls_marks_echoed={marks} rate_per_s={sum(ran) / elapsed:.0f}", flush=True)
    return 0 if totals.failures == 0 and call_ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=100_000, help="fuzzed requests per surface")
    parser.add_argument("--surface", choices=[*SURFACES, "all"], default="all")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=30.0, help="client timeout per request, seconds")
    parser.add_argument("--keepalive-expiry", type=float, default=2.0,
                        help="the client's pool drops connections idle this long (the server's limit is 5 s)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop sending a surface's inputs after this long (the lines report how many ran)")
    args = parser.parse_args()
    surfaces = list(SURFACES) if args.surface == "all" else [args.surface]
    max_s = None if args.max_minutes is None else args.max_minutes * 60
    raise SystemExit(asyncio.run(run(surfaces, args.inputs, args.seed, args.concurrency, timeout_s=args.timeout,
                                     keepalive_expiry_s=args.keepalive_expiry, max_s=max_s)))


if __name__ == "__main__":
    main()
