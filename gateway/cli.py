"""The ``voicegw`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from pathlib import Path

from agents.loader import load_agents
from agents.spec import AgentSpec
from audio.codec import ulaw2lin
from gateway.settings import Settings, SettingsError


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
    from gateway.serve import GatewayServer

    settings = _settings()
    _logging(settings)
    _, problems = load_agents(settings.agents_dir)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print("voicegw: not starting: fix the agent files above (voicegw agents validate)", file=sys.stderr)
        return 2
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    app = create_app(settings)
    print(f"voicegw: serving on http://{host}:{port}  (webhook: POST /twilio/voice)", flush=True)
    # log_config=None: uvicorn's loggers propagate to ours (JSON lines when VOICEGW_LOG_JSON=1).
    config = uvicorn.Config(app, host=host, port=port, ws_max_size=settings.max_ws_message_bytes,
                            log_config=None, lifespan="on")
    server = GatewayServer(config, app)
    server.run()
    return server.exit_status


def cmd_drain(args: argparse.Namespace) -> int:
    """Start the drain over HTTP and optionally wait until the last call ended (Kubernetes preStop)."""
    import time

    import httpx

    settings = _settings()
    url = (args.url or f"http://127.0.0.1:{settings.port}").rstrip("/")
    headers = {"authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    try:
        resp = httpx.post(f"{url}/admin/drain", headers=headers, timeout=5)
    except httpx.HTTPError as exc:
        print(f"voicegw: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    if resp.status_code != 200:
        print(f"voicegw: drain refused ({resp.status_code}): {resp.text[:200]}", file=sys.stderr)
        return 1
    status = resp.json()
    print(f"draining: {status['active_calls']} active call(s), at most {status['drain_remaining_s']} s", flush=True)
    if not args.wait:
        return 0
    deadline = time.monotonic() + float(status["drain_remaining_s"] or 0) + 5.0
    while time.monotonic() < deadline:
        try:
            active = int(httpx.get(f"{url}/readyz", timeout=5).json()["active_calls"])
        except (httpx.HTTPError, ValueError, KeyError):
            print("gateway gone: drained", flush=True)
            return 0
        if active == 0:
            print("drained: no active calls", flush=True)
            return 0
        time.sleep(1.0)
    print("drain timeout passed", flush=True)
    return 0


def cmd_agents_validate(args: argparse.Namespace) -> int:
    directory = Path(args.dir or os.environ.get("VOICEGW_AGENTS_DIR") or "config/agents")
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
            return await push(client, agents)
        finally:
            await client.aclose()

    try:
        version = asyncio.run(run())
    except Exception as exc:
        print(f"voicegw: cannot push to redis at {url}: {exc}", file=sys.stderr)
        return 1
    print(f"pushed {len(agents)} agent(s) as version {version}")
    return 0


async def _call(args: argparse.Namespace) -> int:
    from gateway.app import create_app
    from gateway.serve import serve_in_loop
    from gateway.twilio.emulator import TwilioEmulator

    settings = _settings()
    async with contextlib.AsyncExitStack() as stack:
        url = args.url or await stack.enter_async_context(serve_in_loop(create_app(settings), settings))
        emu = TwilioEmulator(url, auth_token=settings.twilio_auth_token, public_url=settings.public_url)
        if args.say or args.dtmf:
            from gateway.tools.call_demo import converse

            result = await converse(emu, args.agent, args.to, args.say, args.dtmf or "", args.max_seconds,
                                    echo=lambda line: print(line, flush=True))
        else:
            result = await emu.call(agent=args.agent, to=args.to, hold_s=0.3, max_s=args.max_seconds or 30.0)
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
    settings = _settings()
    logging.basicConfig(level="WARNING")
    del settings
    return asyncio.run(_call(args))


def cmd_say(args: argparse.Namespace) -> int:
    from gateway.tools.say import say

    settings = _settings()
    logging.basicConfig(level="WARNING")
    return asyncio.run(say(settings, args.agent, args.text, Path(args.out)))


def _digits(value: str) -> str:
    if not value or any(ch not in "0123456789*#" for ch in value):
        raise argparse.ArgumentTypeError(f"DTMF digits must be 0-9, * or #, got {value!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicegw", description="Real-time telephony voice gateway.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the gateway (settings from environment variables)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("drain", help="ask a running gateway to drain (refuse new calls, let active ones end)")
    p.add_argument("--url", help="gateway base URL (default http://127.0.0.1:$VOICEGW_PORT)")
    p.add_argument("--wait", action="store_true", help="wait until no call is active (or the drain timeout)")
    p.set_defaults(func=cmd_drain)

    p = sub.add_parser("call", help="place an emulated Twilio call and record what the caller hears")
    p.add_argument("--agent", required=True)
    p.add_argument("--url", help="gateway base URL (default: start one in-process)")
    p.add_argument("--to", default="+15005550006")
    p.add_argument("--out", help="write what the caller heard to this WAV file")
    p.add_argument("--say", action="append", default=[], metavar="TEXT",
                   help="after the greeting, the caller says TEXT (Piper voice) and waits for the reply; repeatable")
    p.add_argument("--dtmf", type=_digits, metavar="DIGITS",
                   help="after the greeting and every --say, press these keys (0-9, *, #) and wait for the reply")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="end the call after this long (default 30 s, plus 30 s per --say and for --dtmf)")
    p.set_defaults(func=cmd_call)

    p = sub.add_parser("say", help="preview an agent's voice: synthesize text through its TTS chain to a WAV")
    p.add_argument("--agent", required=True)
    p.add_argument("--out", required=True, help="WAV file to write (24 kHz mono)")
    p.add_argument("text")
    p.set_defaults(func=cmd_say)

    chattts = sub.add_parser("chattts", help="ChatTTS tools").add_subparsers(dest="chattts_cmd", required=True)
    chattts.add_parser("download", help="pre-fetch the ChatTTS weights for an offline deployment: download [DIR]")

    agents = sub.add_parser("agents", help="agent YAML tools").add_subparsers(dest="agents_cmd", required=True)
    p = agents.add_parser("validate", help="validate agent YAML files")
    p.add_argument("dir", nargs="?")
    p.set_defaults(func=cmd_agents_validate)
    p = agents.add_parser("schema", help="print the JSON Schema of an agent file")
    p.set_defaults(func=cmd_agents_schema)
    p = agents.add_parser("push", help="validate and push agent YAML to Redis (REDIS_URL)")
    p.add_argument("dir", nargs="?")
    p.add_argument("--redis-url")
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
