"""Running the gateway under uvicorn, with a graceful drain on SIGTERM (I/O shell around :mod:`gateway.drain`).

uvicorn 0.54 installs its own SIGINT/SIGTERM handler (``Server.handle_exit``)
that sets ``should_exit``; its shutdown then closes every open WebSocket with
1012 and waits ``timeout_graceful_shutdown`` at most. For a phone gateway that
would cut every call on each deploy, so :class:`GatewayServer` changes two
hooks and nothing else:

* ``handle_exit``: the first SIGTERM starts the drain instead (readiness goes
  false, new calls are refused politely, active calls continue). A second
  SIGTERM, or SIGINT (Ctrl-C), falls through to uvicorn's immediate shutdown.
* ``on_tick`` (called by uvicorn's main loop every 0.1 s): once draining, exit
  when no call is left or when ``VOICEGW_DRAIN_TIMEOUT_S`` has passed; uvicorn's
  normal shutdown follows. A drain started over HTTP (``POST /admin/drain``,
  the preStop hook) ends the same way.

The process exits with status 0 after a drain (the SIGTERM is not re-raised).
"""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from gateway.drain import Step
from gateway.services import Services

log = logging.getLogger("voicegw.serve")


class GatewayServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self.app = app
        self._drain_logged = False

    def services(self) -> Services | None:
        services: Services | None = getattr(self.app.state, "services", None)
        return services

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        services = self.services()
        if sig == signal.SIGTERM and services is not None and not self.should_exit:
            if services.drain.begin(time.monotonic()):
                return  # logged from on_tick: no logging inside a signal handler
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if await super().on_tick(counter):
            return True
        services = self.services()
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
