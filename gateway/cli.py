"""The ``voicegw`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import logging
import os
import shutil
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.loader import load_agents
from agents.spec import AgentSpec
from audio.codec import ulaw2lin
from gateway.settings import Settings, SettingsError

DEFAULT_AGENTS_DIR = "config/agents"


def _settings() -> Settings:
    try:
        return Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"voicegw: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _logging(settings: Settings) -> None:
    from gateway.ops import logs

    logs.configure(settings.log_level, json_lines=settings.log_json)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.serve import GatewayServer, ready_hint, uvicorn_options

    settings = _settings()
    _logging(settings)
    # A speech pod (VOICEGW_ROLE=speech) serves no agents: it does not read or validate them.
    agents, problems = load_agents(settings.agents_dir) if settings.role != "speech" else ({}, [])
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print("voicegw: not starting: fix the agent files above (voicegw agents validate)", file=sys.stderr)
        return 2
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    app = create_app(settings)
    entry = "speech: POST /v1/audio/speech" if settings.role == "speech" else "webhook: POST /twilio/voice"
    print(f"voicegw: serving on http://{host}:{port}  (role {settings.role}; {entry})", flush=True)
    # log_config=None: uvicorn's loggers propagate to ours (JSON lines when VOICEGW_LOG_JSON=1).
    config = uvicorn.Config(app, host=host, port=port, log_config=None, lifespan="on", **uvicorn_options(settings))
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    hint = (ready_hint(sorted(agents), f"http://{local}:{port}", _program()) if settings.role != "speech" else
            f"voicegw: ready: a speech pod; point telephony pods' CHATTTS_API_URL at http://{local}:{port}")
    server = GatewayServer(config, app, hint)
    server.run()
    return server.exit_status


def _program() -> str:
    """How the user can run this program again: ``voicegw`` when that is on PATH, else the path they used."""
    argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name != "voicegw":
        return "voicegw"  # python -m gateway, or an embedding
    on_path = shutil.which("voicegw")
    if on_path is not None and Path(on_path).resolve() == Path(argv0).resolve():
        return "voicegw"
    return argv0


def cmd_drain(args: argparse.Namespace) -> int:
    """Start the drain over HTTP and optionally wait until the last call ended (Kubernetes preStop)."""
    import time

    import httpx

    settings = _settings()
    url = (args.url or f"http://127.0.0.1:{settings.port}").rstrip("/")
    key = args.api_key or settings.api_key
    headers = {"authorization": f"Bearer {key}"} if key else {}
    try:
        resp = httpx.post(f"{url}/admin/drain", headers=headers, timeout=5)
    except httpx.HTTPError as exc:
        print(f"voicegw: cannot reach the gateway at {url}: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    if resp.status_code != 200:
        hint = " (pass --api-key or set VOICEGW_API_KEY)" if resp.status_code == 401 else ""
        print(f"voicegw: drain refused ({resp.status_code}): {resp.text[:200]}{hint}", file=sys.stderr)
        return 1
    status = resp.json()
    active = int(status["active_calls"])
    if active == 0:
        print("draining: no active calls, so the gateway stops now", flush=True)
        return 0
    print(f"draining: {active} active call(s); the gateway stops when they end, at most "
          f"{status['drain_remaining_s']:.0f} s from now", flush=True)
    if not args.wait:
        return 0
    deadline = time.monotonic() + float(status["drain_remaining_s"] or 0) + 5.0
    while time.monotonic() < deadline:
        try:
            active = int(httpx.get(f"{url}/readyz", timeout=5).json()["active_calls"])
        except (httpx.HTTPError, ValueError, KeyError):
            print("drained: the gateway has stopped", flush=True)
            return 0
        if active == 0:
            print("drained: no active calls; the gateway stops now", flush=True)
            return 0
        time.sleep(1.0)
    print("drain timeout passed: the gateway cuts the calls still active", flush=True)
    return 0


def cmd_agents_validate(args: argparse.Namespace) -> int:
    directory = Path(args.dir or os.environ.get("VOICEGW_AGENTS_DIR") or DEFAULT_AGENTS_DIR)
    agents, problems = load_agents(directory)
    for p in problems:
        print(p)
    if problems:
        return 1
    print(f"{len(agents)} agent(s) valid: {', '.join(sorted(agents))}")
    return 0


def cmd_agents_schema(args: argparse.Namespace) -> int:
    schema = AgentSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "voicegw agent"
    print(json.dumps(schema, indent=2))
    return 0


def cmd_agents_push(args: argparse.Namespace) -> int:
    import redis.asyncio as aioredis

    from agents.store import push

    settings = _settings()
    directory = Path(args.dir or settings.agents_dir)
    agents, problems = load_agents(directory)
    if problems:
        for p in problems:
            print(p)
        print("not pushed: fix the problems above", file=sys.stderr)
        return 1
    url = args.redis_url or settings.redis_url
    if not url:
        print("voicegw: REDIS_URL is not set (or pass --redis-url)", file=sys.stderr)
        return 2

    async def run() -> str:
        client = aioredis.from_url(url, socket_connect_timeout=3)
        try:
            return await push(client, agents, settings.agent_signing_key)
        finally:
            await client.aclose()

    try:
        version = asyncio.run(run())
    except Exception as exc:
        from gateway.ops import logs

        print(f"voicegw: cannot push to redis at {logs.mask_url(url)}: {logs.redact(str(exc))}", file=sys.stderr)
        return 1
    print(f"pushed {len(agents)} agent(s) as version {version}")
    return 0


def _check_out(out: str | None) -> str | None:
    """Why ``--out`` cannot be written, checked before the call rather than after it."""
    if not out:
        return None
    path = Path(out)
    if path.is_dir():
        return f"--out {out}: is a directory"
    parent = path.parent
    if not parent.is_dir():
        return f"--out {out}: folder {parent} does not exist"
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"--out {out}: not writable"
    return None


def _not_connected(result: Any, args: argparse.Namespace, known: list[str] | None) -> str | None:
    """Why the call carried no audio, in the gateway's own words where it gave them; None if it connected."""
    from gateway.app import BUSY, UNKNOWN_NUMBER
    from gateway.twilio.emulator import parse_stream

    if result.handshake_status is not None:
        return f"the gateway refused the media stream (HTTP {result.handshake_status})"
    if parse_stream(result.twiml) is None:
        said = " ".join(el.text or "" for el in ET.fromstring(result.twiml).iter("Say")).strip()
        if said == UNKNOWN_NUMBER:
            target = f"no agent {args.agent!r}" if args.agent else f"no agent answers {args.to}"
            listed = f" (agents: {', '.join(known)})" if known is not None else ""
            return f"{target}{listed}; the gateway answered {said!r} and hung up"
        if said == BUSY:
            return f"agent {args.agent!r} is at its max_concurrent_calls; the gateway answered {said!r}"
        if said:
            return f"the gateway did not connect a media stream; it answered {said!r} and hung up"
        return "the gateway did not connect a media stream (its TwiML has no <Connect><Stream>)"
    if result.close_code == 1008 and not result.audio:
        return "the gateway closed the media stream at once (1008: stream token refused or agent gone; see its log)"
    return None


async def _call(args: argparse.Namespace) -> int:
    import httpx
    from websockets.exceptions import WebSocketException

    from gateway.app import create_app
    from gateway.serve import serve_in_loop
    from gateway.twilio.emulator import EmulatorError, TwilioEmulator

    settings = _settings()
    known: list[str] | None = None
    if not args.url:  # the in-process gateway would refuse to start: say why without uvicorn's traceback
        _, problems = load_agents(settings.agents_dir)
        if problems:
            for problem in problems:
                print(problem, file=sys.stderr)
            print("voicegw: fix the agent files above (voicegw agents validate)", file=sys.stderr)
            return 2
    try:
        async with contextlib.AsyncExitStack() as stack:
            if args.url:
                url = args.url
            else:
                app = create_app(settings)
                url = await stack.enter_async_context(serve_in_loop(app, settings))
                known = sorted(app.state.services.store.snapshot.agents)
            emu = TwilioEmulator(url, auth_token=settings.twilio_auth_token, public_url=settings.public_url)
            if args.say or args.dtmf:
                from gateway.tools.call_demo import converse

                result = await converse(emu, args.agent, args.to, args.say, args.dtmf or "", args.max_seconds,
                                        echo=lambda line: print(line, flush=True))
            else:
                result = await emu.call(agent=args.agent, to=args.to, hold_s=0.3, max_s=args.max_seconds or 30.0)
    except ET.ParseError as exc:
        print(f"voicegw: the webhook at {args.url} did not answer with TwiML ({exc})", file=sys.stderr)
        return 1
    except EmulatorError as exc:  # the webhook answered with an error status
        hint = " (is TWILIO_AUTH_TOKEN the gateway's?)" if "403" in str(exc) else ""
        print(f"voicegw: {exc}{hint}", file=sys.stderr)
        return 1
    except (httpx.HTTPError, WebSocketException, OSError) as exc:
        where = args.url or "the in-process gateway"
        print(f"voicegw: cannot reach {where}: {exc or type(exc).__name__} (is `voicegw serve` running there?)",
              file=sys.stderr)
        return 1
    reason = _not_connected(result, args, known)
    if reason is not None:
        print(f"voicegw: call not connected: {reason}", file=sys.stderr)
        return 1
    if args.out:
        from tts.render import wav_bytes

        await asyncio.to_thread(Path(args.out).write_bytes, wav_bytes(ulaw2lin(bytes(result.audio)), 8000))
    ttfa = f"{result.time_to_first_audio * 1000:.0f} ms" if result.time_to_first_audio is not None else "n/a"
    print(
        f"heard {result.seconds:.2f} s of audio; time to first audio {ttfa}; marks echoed "
        f"{len(result.marks_echoed)}; underruns {result.underruns}"
        + (f"; written to {args.out}" if args.out else "")
        + (f"; protocol errors: {result.errors}" if result.errors else "")
    )
    return 0 if result.seconds > 0 and not result.errors else 1


def cmd_call(args: argparse.Namespace) -> int:
    problem = _check_out(args.out)
    if problem is not None:
        print(f"voicegw: {problem}", file=sys.stderr)
        return 2
    _settings()
    logging.basicConfig(level="WARNING")
    return asyncio.run(_call(args))


def cmd_say(args: argparse.Namespace) -> int:
    from gateway.tools.say import say

    problem = _check_out(args.out)
    if problem is not None:
        print(f"voicegw: {problem}", file=sys.stderr)
        return 2
    settings = _settings()
    logging.basicConfig(level="WARNING")
    return asyncio.run(say(settings, args.agent, args.text, Path(args.out)))


def _digits(value: str) -> str:
    if not value or any(ch not in "0123456789*#" for ch in value):
        raise argparse.ArgumentTypeError(f"DTMF digits must be 0-9, * or #, got {value!r}")
    return value


def _version() -> str:
    try:
        return importlib.metadata.version("voicegw")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _needs_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """A command group run without its subcommand: show what it offers (exit 2, as argparse does for errors)."""
    def show(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2
    return show


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voicegw", description="Real-time telephony voice gateway.",
        epilog="Settings come from environment variables (see config/gateway.example.env). "
               "`voicegw COMMAND --help` describes a command.",
    )
    parser.add_argument("--version", action="version", version=f"voicegw {_version()}")
    parser.set_defaults(func=_needs_command(parser))
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = sub.add_parser("serve", help="run the gateway (settings from environment variables)",
                       description="Run the gateway. Ctrl-C stops at once (exit 130); SIGTERM drains (exit 0).")
    p.add_argument("--host", help="address to bind (default $VOICEGW_HOST, else 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, help="port to bind (default $VOICEGW_PORT, else 8080)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("drain", help="ask a running gateway to drain (refuse new calls, let active ones end)",
                       description="Start a graceful drain: new calls are refused politely, active calls go on; "
                                   "the gateway stops once none is left (at once when there is none).")
    p.add_argument("--url", help="gateway base URL (default http://127.0.0.1:$VOICEGW_PORT)")
    p.add_argument("--api-key", help="the gateway's VOICEGW_API_KEY (default: $VOICEGW_API_KEY; prefer the "
                                     "variable: a command-line argument is visible to other users in ps)")
    p.add_argument("--wait", action="store_true", help="wait until no call is active (or the drain timeout)")
    p.set_defaults(func=cmd_drain)

    p = sub.add_parser("call", help="place an emulated Twilio call and record what the caller hears")
    p.add_argument("--agent", help="the agent to call, by id (default: the agent routed to --to)")
    p.add_argument("--url", help="gateway base URL (default: start one in-process)")
    p.add_argument("--to", default="+15005550006",
                   help="the number dialled, E.164 (default +15005550006); routes the call when --agent is not given")
    p.add_argument("--out", help="write what the caller heard to this WAV file (8 kHz)")
    p.add_argument("--say", action="append", default=[], metavar="TEXT",
                   help="after the greeting, the caller says TEXT (Piper voice) and waits for the reply; repeatable")
    p.add_argument("--dtmf", type=_digits, metavar="DIGITS",
                   help="after the greeting and every --say, press these keys (0-9, *, #) and wait for the reply")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="end the call after this long (default 30 s, plus 30 s per --say and for --dtmf)")
    p.set_defaults(func=cmd_call)

    p = sub.add_parser("say", help="preview an agent's voice: synthesize text through its TTS chain to a WAV")
    p.add_argument("--agent", required=True, help="the agent whose voice and provider chain speak (by id)")
    p.add_argument("--out", required=True, help="WAV file to write (24 kHz mono)")
    p.add_argument("text", help="what to say (quote it: one argument)")
    p.set_defaults(func=cmd_say)

    p = sub.add_parser("chattts", help="ChatTTS tools")
    p.set_defaults(func=_needs_command(p))
    chattts = p.add_subparsers(title="commands", metavar="COMMAND")
    chattts.add_parser("download", help="pre-fetch the ChatTTS weights for an offline deployment: download [DIR]")

    p = sub.add_parser("agents", help="agent YAML tools")
    p.set_defaults(func=_needs_command(p))
    agents = p.add_subparsers(title="commands", metavar="COMMAND")
    p = agents.add_parser("validate", help="validate agent YAML files")
    p.add_argument("dir", nargs="?", metavar="DIR",
                   help=f"folder of agent files (default $VOICEGW_AGENTS_DIR, else {DEFAULT_AGENTS_DIR})")
    p.set_defaults(func=cmd_agents_validate)
    p = agents.add_parser("schema", help="print the JSON Schema of an agent file")
    p.set_defaults(func=cmd_agents_schema)
    p = agents.add_parser("push", help="validate and push agent YAML to Redis (REDIS_URL)")
    p.add_argument("dir", nargs="?", metavar="DIR",
                   help=f"folder of agent files (default $VOICEGW_AGENTS_DIR, else {DEFAULT_AGENTS_DIR})")
    p.add_argument("--redis-url", help="Redis to push to, e.g. redis://redis:6379/0 (default $REDIS_URL)")
    p.set_defaults(func=cmd_agents_push)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["chattts", "download"]:
        from tts.chattts_assets import download_main

        return download_main(argv[2:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:  # Ctrl-C outside the server's own handling (imports, a `call` or `say` under way)
        print("voicegw: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
