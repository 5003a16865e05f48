"""A voicegw speech pod (``VOICEGW_ROLE=speech``) on a random-weight ChatTTS checkpoint, for tests and benchmarks.

Run as ``python -m bench.speech_proc --port P --model-dir DIR --sha-file FILE [--fixed-tokens N]``. It serves
the real app in the speech role (``/v1/audio/speech`` streamed and whole, ``/v1/voices``, ``/health``,
``/healthz``, ``/readyz``, ``/metrics``) with the real in-process ChatTTS engine loaded through ``Chat.load``
from the checkpoint built by ``tests/chattts_fixture.py``. What ``voicegw serve`` with ``VOICEGW_ROLE=speech``
cannot do, and the only reason this module exists: fix every sentence's length (``--fixed-tokens``), so a test
can kill the process mid-sentence and a benchmark measures the same work each time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

import uvicorn

from agents.store import MemoryStore
from gateway.app import create_app
from gateway.ops import logs
from gateway.ops.drain import Drain
from gateway.ops.metrics import Metrics
from gateway.services import Services
from gateway.settings import Settings
from tts.breaker import BreakerRegistry
from tts.chattts import ChatTTSConfig, ChatTTSEngine
from tts.chattts_worker import Tuning


async def serve(args: argparse.Namespace, sha: dict[str, str] | None) -> None:
    settings = Settings.from_env({"VOICEGW_ROLE": "speech", "VOICEGW_LOG_LEVEL": args.log_level})
    metrics = Metrics()
    services = Services(settings=settings, store=MemoryStore({}), metrics=metrics, drain=Drain(5.0))
    services.breakers = BreakerRegistry()
    tuning = Tuning(fixed_tokens=args.fixed_tokens, batch_window_s=args.batch_window_ms / 1000)
    engine = ChatTTSEngine(ChatTTSConfig(model_dir=Path(args.model_dir), device="cpu", sha256_override=sha,
                                         allow_download=False, tuning=tuning), metrics)
    await engine.start()
    if engine.load_error:
        raise SystemExit(f"speech_proc: ChatTTS did not load: {engine.load_error}")
    services.engines["chattts"] = engine
    config = uvicorn.Config(create_app(settings, services), host="127.0.0.1", port=args.port, log_level="warning",
                            lifespan="on", access_log=False)
    try:
        await uvicorn.Server(config).serve()
    finally:
        await services.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--sha-file")
    parser.add_argument("--fixed-tokens", type=int, default=None, help="every sentence is exactly N audio tokens")
    parser.add_argument("--batch-window-ms", type=float, default=15.0)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logs.configure(args.log_level)
    sha = json.loads(Path(args.sha_file).read_text()) if args.sha_file else None
    asyncio.run(serve(args, sha))


if __name__ == "__main__":
    main()
