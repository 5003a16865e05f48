"""Twilio edge under concurrent signed calls: pacing, time to first audio, and barge-in `clear`.

Runs a real gateway (uvicorn, signatures on) and N concurrent emulated calls in one process. Each call
hears the greeting for ``--clear-after`` seconds, then the gateway interrupts it (barge-in); the emulator
measures time to first audio, underruns (> 20 ms dry), the worst frame lateness, and how many media frames
arrived after `clear`. Prints a table per call and a summary line. Time to first audio includes Piper
synthesising the greetings one after another (one engine), so it grows with N; the edge's own numbers are
the underruns, lateness and media-after-clear columns.

    python -m bench.edge --calls 10 --clear-after 1.5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
PUBLIC = "https://gw.example.com"


async def main(calls: int, clear_after: float) -> None:
    import shutil

    from gateway.app import create_app
    from gateway.serve import serve_in_loop
    from gateway.settings import Settings
    from gateway.startup import build_services
    from gateway.twilio.emulator import CallControl, CallResult, TwilioEmulator
    from tests.helpers import wait_until

    async def poll(predicate: Callable[[], bool]) -> None:
        await wait_until(predicate, within_s=120, interval_s=0.01)

    with tempfile.TemporaryDirectory() as tmp:
        agents = Path(tmp) / "agents"
        shutil.copytree(ROOT / "config" / "agents", agents)
        settings = Settings.from_env({"VOICEGW_AGENTS_DIR": str(agents), "TWILIO_AUTH_TOKEN": TOKEN,
                                      "PUBLIC_URL": PUBLIC})
        services = await build_services(settings)
        after_clear: dict[int, int] = {}  # id(result) -> media frames received after `clear`
        try:
            async with serve_in_loop(create_app(settings, services), settings) as url:
                emu = TwilioEmulator(url, auth_token=TOKEN, public_url=PUBLIC)

                async def barge_in(c: CallControl) -> None:
                    await poll(lambda: c.call_sid in services.calls)
                    await poll(lambda: c.result.time_to_first_audio is not None
                               and emu.clock() - c.t0 - c.result.time_to_first_audio >= clear_after)
                    await services.calls[c.call_sid].interrupt()
                    await asyncio.sleep(0.5)
                    clear_at = c.result.clear_times[0]
                    after_clear[id(c.result)] = sum(1 for t in c.result.media_times if t > clear_at)

                results: list[CallResult] = await asyncio.gather(
                    *(emu.call(agent="demo", script=barge_in, hold_s=0.0, max_s=60) for _ in range(calls)))
        finally:
            await services.aclose()
    print(f"{'call':>4} {'ttfa ms':>8} {'heard s':>8} {'underruns':>9} {'max late ms':>11} {'media after clear':>17}")
    worst_late = 0.0
    for i, r in enumerate(results):
        late = max(r.frame_lateness or [0.0]) * 1000
        worst_late = max(worst_late, late)
        print(f"{i:>4} {1000 * (r.time_to_first_audio or 0):>8.0f} {r.seconds:>8.2f} {r.underruns:>9} "
              f"{late:>11.1f} {after_clear.get(id(r), -1):>17}")
    ttfa = sorted(1000 * (r.time_to_first_audio or 0) for r in results)
    print(f"summary: {calls} calls, ttfa p50 {ttfa[len(ttfa) // 2]:.0f} ms max {ttfa[-1]:.0f} ms, underruns "
          f"{sum(r.underruns for r in results)}, worst frame lateness {worst_late:.1f} ms, media after clear "
          f"{max(after_clear.values())} frame(s) max, protocol errors {sum(len(r.errors) for r in results)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--clear-after", type=float, default=1.5)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.clear_after))
