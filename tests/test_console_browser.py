"""The console in a real browser: Debian's chromium, headless, driven by Playwright (see tests/browser.py).

Every wait is on the page's own state (DOM attributes the page sets as things happen), with generous
limits: CI is a loaded 2-core machine.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.browser import chromium, collect_errors
from tests.helpers import gateway_with_services
from tts.registry import TTSConfig

pytestmark = pytest.mark.slow

KEY = "browser-k3y"
WAIT_MS = 120_000


async def test_the_page_loads_offline_and_the_voice_panel_follows_the_schema(agents_dir: Path) -> None:
    env = {"VOICEGW_AGENTS_DIR": str(agents_dir), "VOICEGW_API_KEY": KEY}
    async with gateway_with_services(env) as (url, services), chromium(password=KEY) as browser:
        page = await browser.new_page()
        errors = collect_errors(page)
        await page.goto(f"{url}/console")
        await page.wait_for_selector("body[data-ready='1']", timeout=WAIT_MS)
        # ranges and defaults come from the agent schema, not from the page
        schema = TTSConfig.model_json_schema()["$defs"]
        for provider, model in (("chattts", "ChatTTSVoice"), ("piper", "PiperVoice"), ("cartesia", "CartesiaVoice")):
            spec = schema[model]["properties"]["speed"]
            slider = page.locator(f"input[name='{provider}.speed']")
            assert await slider.get_attribute("min") == str(spec["minimum"]).removesuffix(".0")
            assert await slider.get_attribute("max") == str(spec["maximum"]).removesuffix(".0")
        presets = await page.locator("select[name='chattts.voice'] option").all_inner_texts()
        assert presets == schema["ChatTTSVoice"]["properties"]["voice"]["enum"]
        assert await page.locator("fieldset[data-provider='piper']").is_visible()  # the demo's chain: Piper
        assert not await page.locator("fieldset[data-provider='chattts']").is_visible()
        # keyboard: Tab reaches the agent picker, the Call button and the keypad
        focused = set()
        for _ in range(12):
            await page.keyboard.press("Tab")
            focused.add(await page.evaluate("document.activeElement.id || document.activeElement.textContent"))
        assert {"agent", "call-btn", "1"} <= focused
        # Play sample: synthesized through /v1/audio/speech with the panel's voice
        await page.fill("#sample-text", "Hello from the console.")
        await page.click("#sample-btn")
        await page.wait_for_selector("#sample-info[data-provider='piper']", timeout=WAIT_MS)
        assert "RTF" in await page.inner_text("#sample-info")
        # Save: a new version of the agent in the store, the changed YAML offered for download
        version = await page.get_attribute("#agent-info", "data-version")
        await page.eval_on_selector("input[name='piper.speed']", "el => { el.value = '1.5'; }")
        await page.click("#save-btn")
        await page.wait_for_selector("#saved", timeout=WAIT_MS)
        assert await page.get_attribute("#agent-info", "data-version") != version
        agent = services.store.get("demo")
        assert agent is not None and agent.tts.piper.speed == 1.5
        async with page.expect_download() as download_info:
            await page.click("#save-info a")
        download = await download_info.value
        assert download.suggested_filename == "demo.yaml"
        assert "speed: 1.5" in await asyncio.to_thread(Path(await download.path()).read_text)
        # a bad value is refused with the loader's words, next to the field
        await page.eval_on_selector("input[name='piper.voice']", "el => { el.value = ''; }")
        await page.eval_on_selector("select[name='provider']", "el => { el.value = 'piper'; }")
        await page.evaluate("""() => { const f = document.querySelector("[name='first_audio_budget_ms']");
            f.type = 'number'; f.value = '9'; }""")
        await page.click("#save-btn")
        problem = page.locator(".field[data-path='first_audio_budget_ms'] .problem")
        await problem.wait_for(timeout=WAIT_MS)
        assert "not within 50–5000" in await problem.inner_text()
        assert [e for e in errors if "status of 422" not in e] == []  # the refused save is the only error
