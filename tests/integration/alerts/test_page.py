"""The Alerts page in headless Chromium (Debian's, driven by Playwright): rules with their state.

A screenshot is saved under ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from podlog.lifecycle import Health
from search.config import AlertsConfig, AuthConfig, SearchConfig
from search.service import SearchService
from tests.fixtures.records import ContainerSpec, one_line
from tests.integration.search.loading import embedded_open

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed"),
]

RULES = """
rules:
  - name: checkout-errors
    query: 'level:error AND checkout'
    window: 10m
    interval: 1s
    condition: count >= 2
    group_by: pod
  - name: quiet
    query: 'level:info'
    window: 10m
    interval: 1s
    condition: count >= 100
"""


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[str]:
    """A search server on the embedded index with two rules, one of which fires."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    index = await embedded_open(tmp_path / "index")
    now = time.time_ns()
    spec = ContainerSpec("shop", "checkout-0", "app")
    await index.write([
        one_line(spec, timestamp_ns=now - 60 * 10**9 + i, offset=i * 100, level="error",
                 message=f"<b>checkout</b> failed #{i}")
        for i in range(3)
    ])
    config = SearchConfig(
        listen="127.0.0.1:0", ops_listen="", backend="embedded", auth=AuthConfig(mode="none"),
        alerts=AlertsConfig(rules_path=str(rules), evaluation_delay_seconds=0),
    )
    service = SearchService(config, index, health=Health())
    await service.start()
    run = asyncio.create_task(service.run())
    try:
        yield f"http://127.0.0.1:{service.port}"
    finally:
        await service.stop()
        await run


async def test_the_alerts_page_lists_rules_with_their_state(site: str) -> None:
    """The firing rule shows its group and links to the matching lines; the other is no data."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = await browser.new_page()
            await page.goto(f"{site}/alerts")
            firing = page.locator('tr[data-rule="checkout-errors"] td.state-firing')
            await firing.wait_for(timeout=15_000)
            row = page.locator('tr[data-rule="checkout-errors"]')
            link = row.locator("a.alert-firing")
            assert await link.text_content() == "firing pod=checkout-0 (3)"
            href = await link.get_attribute("href")
            assert href is not None and "pod=checkout-0" in href and "q=level%3Aerror+AND+checkout" in href
            await page.locator('tr[data-rule="quiet"] td.state-nodata').wait_for(timeout=15_000)
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "alerts-page.png"), full_page=True)
        finally:
            await browser.close()
