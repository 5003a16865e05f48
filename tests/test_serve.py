"""Graceful drain of a real `voicegw serve` process: SIGTERM, the preStop CLI, the drain timeout."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from gateway.twilio.emulator import CallControl, TwilioEmulator, parse_stream
from tests.helpers import ROOT, free_port, wait_until


@contextmanager
def gateway_process(agents_dir: Path, **env: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1", "VOICEGW_AGENTS_DIR": str(agents_dir), "VOICEGW_PORT": str(port), **env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"], cwd=ROOT, env=full_env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "gateway did not become ready"
            time.sleep(0.2)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def wait_exit(proc: subprocess.Popen[str], within_s: float) -> int:
    deadline = time.monotonic() + within_s
    while proc.poll() is None:
        assert time.monotonic() < deadline, "gateway did not exit"
        await asyncio.sleep(0.1)
    return proc.returncode


async def wait_active(url: str, n: int) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            if (await client.get(f"{url}/readyz")).json()["active_calls"] == n:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"never saw {n} active call(s)")


async def test_sigterm_lets_the_active_call_finish_and_refuses_new_ones(agents_dir: Path) -> None:
    with gateway_process(agents_dir, VOICEGW_DRAIN_TIMEOUT_S="60") as (proc, url):
        emu = TwilioEmulator(url)
        call = asyncio.create_task(emu.call(agent="demo", hold_s=1.0, max_s=60))
        await wait_active(url, 1)
        proc.send_signal(signal.SIGTERM)
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                ready = await client.get(f"{url}/readyz")
                if ready.status_code == 503:
                    break
                await asyncio.sleep(0.05)
            assert ready.status_code == 503 and ready.json()["draining"] is True
            assert ready.json()["not_ready"] == ["draining"] and ready.json()["active_calls"] == 1
            assert (await client.get(f"{url}/healthz")).status_code == 200
        twiml, _ = await emu.fetch_twiml(agent="demo")
        assert parse_stream(twiml) is None and "call back" in twiml
        assert proc.poll() is None  # still serving the active call
        result = await call
        assert result.marks_echoed == ["greeting-1"] and result.errors == []
        assert result.seconds > 3.0
        assert await wait_exit(proc, 30) == 0
        output = proc.communicate()[0]
    assert "draining" in output and "drained: no active calls left" in output
    assert "call summary: outcome=completed" in output


async def test_drain_timeout_cuts_long_calls_and_exits(agents_dir: Path) -> None:
    with gateway_process(agents_dir, VOICEGW_DRAIN_TIMEOUT_S="1") as (proc, url):
        emu = TwilioEmulator(url)

        async def stay(control: CallControl) -> None:
            await asyncio.sleep(60)  # a caller who never hangs up

        call = asyncio.create_task(emu.call(agent="demo", max_s=60, script=stay))
        await wait_active(url, 1)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert await wait_exit(proc, 30) == 0
        result = await asyncio.wait_for(call, 30)
        assert time.monotonic() - started < 20
        output = proc.communicate()[0]
    assert result.close_code is not None and result.close_code != 1000
    assert "drain timeout: 1 call(s) still active" in output


async def test_prestop_cli_drains_then_the_gateway_exits(agents_dir: Path) -> None:
    with gateway_process(agents_dir, VOICEGW_API_KEY="k3y", VOICEGW_DRAIN_TIMEOUT_S="60") as (proc, url):
        emu = TwilioEmulator(url)

        async def until_drained(control: CallControl) -> None:
            """Stay on the line until the drain has begun (two CLI start-ups may outlast the greeting), then hang up."""
            async with httpx.AsyncClient() as client:

                async def draining() -> bool:
                    return bool((await client.get(f"{url}/readyz")).json()["draining"])

                await wait_until(draining, within_s=90, interval_s=0.05)
            await asyncio.sleep(0.5)

        call = asyncio.create_task(emu.call(agent="demo", max_s=120, script=until_drained))
        await wait_active(url, 1)
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "VOICEGW_PORT": url.rsplit(":", 1)[1]}
        bad = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "drain", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await bad.communicate()
        assert bad.returncode == 1 and b"401" in err
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "drain", "--wait", cwd=ROOT, env={**env, "VOICEGW_API_KEY": "k3y"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(cli.communicate(), 60)
        assert cli.returncode == 0, err
        assert b"draining: 1 active call(s)" in out
        result = await call  # the CLI returned only once the call had ended
        assert result.errors == [] and result.close_code is not None
        assert await wait_exit(proc, 30) == 0  # drain started over HTTP also ends the process


async def test_ctrl_c_cuts_calls_as_shutdown_and_exits_130_without_a_traceback(agents_dir: Path) -> None:
    with gateway_process(agents_dir) as (proc, url):
        emu = TwilioEmulator(url)

        async def stay(control: CallControl) -> None:
            await asyncio.sleep(60)  # a caller still on the line when the operator presses Ctrl-C

        call = asyncio.create_task(emu.call(agent="demo", max_s=60, script=stay))
        await wait_active(url, 1)
        proc.send_signal(signal.SIGINT)
        assert await wait_exit(proc, 30) == 130  # 128 + SIGINT, as a shell reports Ctrl-C; not killed by the signal
        result = await asyncio.wait_for(call, 30)
        output = proc.communicate()[0]
    assert result.close_code == 1012  # Service Restart: the server went away, not the caller
    # once ready, the next thing to try; and no ERROR for an optional engine (ChatTTS without weights or a GPU)
    hint = f'voicegw: ready. Try a call from another terminal:\n  voicegw call --agent demo --url {url} --say "'
    assert hint in output
    assert " ERROR " not in output, [line for line in output.splitlines() if " ERROR " in line]
    # startup settled before readiness: its objects were frozen out of the collector's full passes
    # ... and full collections (every live call's objects walked with the loop held) made ten times rarer
    assert re.search(r"startup settled: [1-9]\d{3,} objects frozen out of garbage collection; "
                     r"collector thresholds 700/10/100\n", output), output
    assert "Ctrl-C: stopping now, 1 active call(s) cut (outcome shutdown)" in output
    assert "call summary: outcome=shutdown" in output and "caller_hangup" not in output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output


def test_ctrl_c_while_the_recognizer_warms_up_cancels_it(agents_dir: Path) -> None:
    """Stopped right after startup: the Whisper load and warm-up stop with the server, nothing logs after it."""
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1", "VOICEGW_AGENTS_DIR": str(agents_dir), "VOICEGW_PORT": str(free_port()),
    }
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], cwd=ROOT, env=full_env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:  # the recognizer starts loading in the background during startup
            lines.append(line)
            if "Application startup complete" in line:
                break
        proc.send_signal(signal.SIGINT)
        lines += proc.stdout.readlines()
        assert proc.wait(30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    output = "".join(lines)
    assert "Traceback" not in output
    after = output[output.index("Finished server process"):]
    assert "whisper" not in after.lower(), after


async def test_drain_cli_with_api_key_and_no_calls_says_the_gateway_stops(agents_dir: Path) -> None:
    with gateway_process(agents_dir, VOICEGW_API_KEY="k3y") as (proc, url):
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "drain", "--url", url, "--api-key", "k3y", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(cli.communicate(), 60)
        assert cli.returncode == 0, err
        assert out == b"draining: no active calls, so the gateway stops now\n"
        assert await wait_exit(proc, 30) == 0
        assert "drained: no active calls left, exiting" in proc.communicate()[0]
