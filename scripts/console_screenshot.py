"""Take docs/console.png: the console during a call with the demo agent, in headless chromium.

Runs the gateway in-process on a copy of config/agents, calls the demo agent from the page with a fake
microphone (the `hours` speech fixture), waits for the answer and a keypad press, then takes the picture.

    .venv/bin/python scripts/console_screenshot.py [OUT.png]
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import chromium  # noqa: E402
from tests.helpers import gateway_with_services  # noqa: E402
from tests.test_console_browser import fake_mic, patient  # noqa: E402

WAIT_MS = 180_000


async def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        agents = Path(tmp) / "agents"
        shutil.copytree(ROOT / "config" / "agents", agents)
        mic = fake_mic(Path(tmp) / "hours.wav", "hours")
        async with gateway_with_services({"VOICEGW_AGENTS_DIR": str(patient(agents))}) as (url, _), \
                chromium(mic) as browser:
            page = await browser.new_page()
            await page.set_viewport_size({"width": 1280, "height": 800})
            await page.goto(f"{url}/console")
            await page.wait_for_selector("body[data-ready='1']", timeout=WAIT_MS)
            await page.select_option("#agent", "demo")
            await page.click("#sample-btn")
            await page.wait_for_selector("#sample-info[data-provider]", timeout=WAIT_MS)
            await page.uncheck("#mic")
            await page.click("#call-btn")
            heard = "#transcript li[data-role='agent'][data-state='heard']"
            await page.locator(heard, has_text="thanks for calling").wait_for(timeout=WAIT_MS)
            await page.check("#mic")
            await page.locator(heard, has_text="nine to five").wait_for(timeout=WAIT_MS)
            await page.click("#keypad button:text-is('0')")
            await page.locator(heard, has_text="Transferring").wait_for(timeout=WAIT_MS)
            await page.evaluate("window.scrollTo(0, 0)")
            await page.screenshot(path=str(out), full_page=True)
            await page.click("#hangup-btn")
            await page.wait_for_selector("body[data-call-state='ended']", timeout=WAIT_MS)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "console.png"))
