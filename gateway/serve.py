"""Running the gateway under uvicorn, with a graceful drain on SIGTERM (I/O shell around :mod:`gateway.ops.drain`).

uvicorn 0.54 installs its own SIGINT/SIGTERM handler (``Server.handle_exit``)
that sets ``should_exit``; its shutdown then closes every open WebSocket with
1012 and waits ``timeout_graceful_shutdown`` at most. For a phone gateway that
would cut every call on each deploy, so :class:`GatewayServer` changes these
hooks and nothing else:

* ``handle_exit``: the first SIGTERM starts the drain instead (readiness goes
  false, new calls are refused politely, active calls continue). A second
  SIGTERM, or SIGINT (Ctrl-C), falls through to uvicorn's immediate shutdown.
* ``on_tick`` (called by uvicorn's main loop every 0.1 s): once draining, exit
  when no call is left or when ``VOICEGW_DRAIN_TIMEOUT_S`` has passed; uvicorn's
  normal shutdown follows. A drain started over HTTP (``POST /admin/drain``,
  the preStop hook) ends the same way.
* ``capture_signals``: uvicorn re-raises the signal that stopped it once it has
  shut down, which turned Ctrl-C into a KeyboardInterrupt traceback. Here the
  signal is only remembered (:attr:`GatewayServer.stop_signal`) and
  ``voicegw serve`` exits with a status:

  0 after a drain (SIGTERM, ``voicegw drain``, ``POST /admin/drain``, drain timeout included);
  130 (128 + SIGINT, the shell convention) after Ctrl-C, which cuts active calls (outcome ``shutdown``);
  143 (128 + SIGTERM) after a second SIGTERM cut a drain short.

* ``shutdown``: says how many calls are being cut, and cancels what is left of
  the speech recognizer's load and warm-up (it runs in its own thread and would
  otherwise finish, and log, after the server has gone).

:func:`serve_in_loop` runs an app inside the caller's event loop on a free
loopback port (``voicegw call`` without ``--url``, the tests, the benchmarks):
one place that waits for startup, surfaces a failed startup, and shuts down.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager, contextmanager
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from agents.stt import cancel_loading
from gateway.direct_ws import DirectWebSocketProtocol
from gateway.ops.drain import Step
from gateway.services import Services
from gateway.settings import Settings
from gateway.startup import settle_startup

log = logging.getLogger("voicegw.serve")


class GatewayServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: Starlette, ready_hint: str | None = None) -> None:
        super().__init__(config)
        self.app = app
        self._drain_logged = False
        #: Printed once the gateway can take calls (listening loaded): what to try next.
        self.ready_hint = ready_hint
        #: The signal that stopped the server (None: stopped by a drain, or not stopped yet).
        self.stop_signal: int | None = None
        self.heap_frozen = False  # the settled startup's objects are out of the collector's passes

    def services(self) -> Services | None:
        services: Services | None = getattr(self.app.state, "services", None)
        return services

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        services = self.services()
        if sig == signal.SIGTERM and services is not None and not self.should_exit:
            if services.drain.begin(time.monotonic()):
                return  # logged from on_tick: no logging inside a signal handler
        if self.stop_signal is None:
            self.stop_signal = sig
        super().handle_exit(sig, frame)

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """uvicorn's, less the re-raise at the end: the exit status says which signal stopped us."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    @property
    def exit_status(self) -> int:
        """0 after a drain or a normal stop, 128 + the signal number when a signal cut the calls short."""
        return 128 + self.stop_signal if self.stop_signal is not None else 0

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        cancel_loading()  # the recognizer's warm-up must not outlive (and log after) the server
        services = self.services()
        if self.stop_signal is not None and services is not None:
            name = "Ctrl-C" if self.stop_signal == signal.SIGINT else signal.Signals(self.stop_signal).name
            if services.active_calls:
                log.warning("%s: stopping now, %d active call(s) cut (outcome shutdown)", name, services.active_calls)
            else:
                log.info("%s: stopping (no active calls)", name)
        await super().shutdown(sockets)

    async def on_tick(self, counter: int) -> bool:
        if await super().on_tick(counter):
            return True
        services = self.services()
        if not self.heap_frozen and services is not None:
            self.heap_frozen = settle_startup(services)
        if self.ready_hint is not None and services is not None and _listening_settled(services):
            print(self.ready_hint, flush=True)
            self.ready_hint = None
        if services is None or not services.draining:
            return False
        now = time.monotonic()
        if not self._drain_logged:
            self._drain_logged = True
            log.warning(
                "draining: refusing new calls; %d active call(s) may continue for up to %.0f s",
                services.active_calls, services.drain.remaining(now) or 0.0,
            )
        step = services.drain.step(now, services.active_calls)
        if step is Step.EXIT_IDLE:
            log.warning("drained: no active calls left, exiting")
            return True
        if step is Step.EXIT_TIMEOUT:
            log.error("drain timeout: %d call(s) still active are cut now", services.active_calls)
            return True
        return False


def _listening_settled(services: Services) -> bool:
    """The recognizer has loaded (or failed for good, which /readyz reports): a call now gets a real answer."""
    stt = services.listening.stt if services.listening is not None else None
    return stt is None or stt.ready or stt.load_error is not None


def ready_hint(services_agents: list[str], url: str, program: str) -> str:
    """The next command to try once ``voicegw serve`` is ready: a call to the demo agent (or the first agent)."""
    if "demo" in services_agents:
        call = f'{program} call --agent demo --url {url} --say "What are your opening hours?"'
    elif services_agents:
        call = f"{program} call --agent {services_agents[0]} --url {url} --out heard.wav"
    else:
        return "voicegw: ready, but no agent is defined: add one to the agents folder (voicegw agents validate)"
    return f"voicegw: ready. Try a call from another terminal:\n  {call}"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How every voicegw server runs uvicorn: the direct WebSocket lane (:mod:`gateway.direct_ws`: media
    messages handed over without ASGI's queue) and the WebSocket message limit."""
    return {"ws": DirectWebSocketProtocol, "ws_max_size": settings.max_ws_message_bytes}


@asynccontextmanager
async def serve_in_loop(
    app: Starlette, settings: Settings, *, startup_timeout_s: float = 60.0, **uvicorn_kw: Any
) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn in this event loop on a free loopback port; yields its base URL.

    A startup failure is raised here (the lifespan's own exception when there is one); on exit the
    server shuts down gracefully (open WebSockets are closed) within 30 s.
    """
    port = free_port()
    options: dict[str, Any] = {"log_level": "warning", "lifespan": "on", **uvicorn_options(settings)}
    options.update(uvicorn_kw)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **options))
    task = asyncio.create_task(server.serve(), name=f"uvicorn:{port}")
    try:
        deadline = time.monotonic() + startup_timeout_s
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the gateway exited during startup")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start within {startup_timeout_s:g} s")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
