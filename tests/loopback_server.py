"""The fakes' servers: a test's Starlette app under real uvicorn on a free loopback port.

Rules of this file: it only starts and stops servers; what they answer is the fakes' business. Two ways:

* :class:`ThreadedServer`: uvicorn in a daemon thread with its own event loop, started and stopped from
  plain code. For fakes shared across tests by sync fixtures (module or session scope), whose handlers
  never touch the test's event loop (``tests/fake_cartesia.py``, ``tests/fake_chattts_server.py``).
* :func:`serve_fake`: uvicorn in the caller's event loop, as an async context manager. For fakes whose
  handlers share objects with the test's loop (``tests/fake_llm.py``, ``tests/fake_twilio_rest.py``,
  whose hooks drive the Twilio emulator).

This file imports no more of the gateway than the in-loop server needs, and that lazily: the fakes it
serves are imported by unit tests and benchmarks that never build a gateway.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette

#: How long a fake may take to start listening before the test fails.
START_TIMEOUT_S = 30.0


class ThreadedServer:
    """``app`` under uvicorn in a daemon thread; :meth:`start` returns once it listens, :meth:`stop` joins it."""

    def __init__(self, app: Starlette, name: str, **uvicorn_kw: Any) -> None:
        self.app = app
        #: The thread's name, and what a failed start names.
        self.name = name
        #: Extra ``uvicorn.Config`` options (``ws=...``); the log level is ``warning`` and lifespan is off.
        self.uvicorn_kw = uvicorn_kw
        #: The port it listens on (0 until started).
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        options: dict[str, Any] = {"log_level": "warning", "lifespan": "off", **self.uvicorn_kw}
        self._server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, **options))
        self._thread = threading.Thread(target=self._server.run, name=self.name, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(15)


@asynccontextmanager
async def serve_fake(app: Starlette, **uvicorn_kw: Any) -> AsyncIterator[str]:
    """``app`` under uvicorn in this event loop on a free loopback port; yields its base URL.

    The gateway's own :func:`gateway.serve.serve_in_loop` (startup failures raised here, graceful shutdown
    on exit), with default settings (a fake has none of its own) and lifespan off (nor a lifespan).
    """
    from gateway.serve import serve_in_loop
    from gateway.settings import Settings

    options: dict[str, Any] = {"lifespan": "off", "startup_timeout_s": START_TIMEOUT_S, **uvicorn_kw}
    async with serve_in_loop(app, Settings(), **options) as url:
        yield url
