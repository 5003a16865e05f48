"""Debian's chromium, headless, driven by Playwright (which never downloads a browser of its own here).

``./dev.sh test`` installs the ``chromium`` package. The flags are the ones that work on a machine with
no network and no screen: no sandbox (root in a container), no GPU, no background connections, a fresh
profile per browser. With ``fake_mic`` the page's microphone is that WAV file, played once from the start
each time the page opens the microphone (``%noloop``), and media permission prompts are accepted.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page

FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
]


def chromium_path() -> str:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is not installed (./dev.sh test installs it: apt-get install chromium)")
    return exe


@asynccontextmanager
async def chromium(fake_mic: Path | None = None, *, username: str | None = None,
                   password: str | None = None) -> AsyncIterator[BrowserContext]:
    """A headless chromium with a fresh profile; ``password`` answers the console's Basic auth prompt."""
    from playwright.async_api import async_playwright

    args = list(FLAGS)
    if fake_mic is not None:
        args += ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={fake_mic}%noloop"]
    credentials = {"username": username or "operator", "password": password} if password else None
    with tempfile.TemporaryDirectory(prefix="voicegw-chromium-") as profile:
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                profile, executable_path=chromium_path(), headless=True, args=args,
                http_credentials=credentials,  # type: ignore[arg-type]
                viewport={"width": 1280, "height": 900},
            )
            try:
                yield context
            finally:
                await context.close()


def collect_errors(page: Page) -> list[str]:
    """Uncaught exceptions and console errors of ``page``, appended as they happen."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: errors.append(f"console.{msg.type}: {msg.text}") if msg.type == "error" else None)
    return errors
