"""The search page in headless Chromium (Debian's, driven by Playwright) over real OpenSearch.

Type a query, see highlighted results, open context, watch a live-tailed line
appear; record content stays text (no HTML from logs reaches the DOM).  A
screenshot is saved under ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from podlog.lifecycle import Health
from search.backends.opensearch import OpenSearchBackend
from search.config import AuthConfig, SearchConfig
from search.service import SearchService
from tests.fixtures.records import ContainerSpec, corpus, one_line
from tests.integration.search.loading import opensearch_add, opensearch_load, unique_prefix

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EVIL = '<img src=x onerror="window.__pwned=1"> connection refused'

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed"),
]


@pytest.fixture
async def site(opensearch_any: str) -> AsyncIterator[tuple[str, str]]:
    """A search server over a fresh index holding the corpus, timestamped a minute ago."""
    prefix = unique_prefix("browser")
    now = time.time_ns()
    records = corpus(40, start_ns=now - 60_000_000_000)
    records.append(
        one_line(
            ContainerSpec("a", "web-0", "app"),
            timestamp_ns=now - 30_000_000_000,
            offset=900_000,
            message=EVIL,
            level="error",
        )
    )
    await asyncio.to_thread(opensearch_load, opensearch_any, prefix, records)
    config = dataclasses.replace(
        SearchConfig(),
        listen="127.0.0.1:0",
        ops_listen="",
        index_prefix=prefix,
        auth=AuthConfig(mode="none"),
        tail_poll_seconds=0.2,
    )
    service = SearchService(config, OpenSearchBackend([opensearch_any], prefix), health=Health())
    await service.start()
    try:
        yield f"http://127.0.0.1:{service.port}", prefix
    finally:
        await service.stop()


async def test_query_context_and_live_tail_in_the_browser(site: tuple[str, str], opensearch_any: str) -> None:
    """A user searches, opens context, turns on live tail and sees a new line arrive."""
    from playwright.async_api import async_playwright

    base, prefix = site
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{base}/?range=15m")
            await page.wait_for_selector("#results .row")

            # Type a query: only matching rows, the phrase highlighted, logs shown as text.
            await page.fill("#q", '"connection refused"')
            await page.press("#q", "Enter")
            await page.wait_for_function(
                "() => [...document.querySelectorAll('#results .row .msg')].length > 0 && "
                "[...document.querySelectorAll('#results .row .msg')]"
                ".every(m => m.textContent.includes('connection refused'))"
            )
            assert await page.locator("#results mark").count() > 0
            assert await page.locator("#results img").count() == 0
            assert await page.evaluate("window.__pwned") is None
            evil_row = page.locator("#results .row .msg", has_text="onerror")
            assert await evil_row.count() == 1
            assert "q=%22connection+refused%22" in page.url

            # Open context from the keyboard: j selects the first row, c opens its context.
            await page.locator("#results").focus()
            await page.keyboard.press("j")
            await page.keyboard.press("c")
            await page.wait_for_selector("#context:not([hidden]) .row.anchor")
            assert await page.locator("#context-lines .row").count() > 1
            assert "ctx=" in page.url
            await page.keyboard.press("Escape")
            await page.wait_for_selector("#context", state="hidden")

            # Live tail: a matching line indexed now appears at the top.
            await page.click("#live")
            await page.wait_for_function("() => document.getElementById('status').textContent.includes('Live tail on')")
            fresh = one_line(
                ContainerSpec("a", "web-1", "app"),
                timestamp_ns=time.time_ns(),
                offset=5,
                message="connection refused by the live tail test",
                level="error",
            )
            writer = OpenSearch([opensearch_any])
            try:
                await asyncio.to_thread(opensearch_add, writer, prefix, [fresh])
            finally:
                writer.close()
            await page.wait_for_selector("#results .row.fresh .msg:has-text('by the live tail test')", timeout=20_000)
            assert "live=1" in page.url
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "search-page.png"), full_page=True)

            # A shared link restores the query; a click expands the full record.
            shared = await browser.new_page(viewport={"width": 1400, "height": 900})
            await shared.goto(page.url.replace("&live=1", ""))
            await shared.wait_for_selector("#results .row")
            assert await shared.input_value("#q") == '"connection refused"'
            await shared.locator("#results .row").first.click()
            detail = shared.locator("#results .row .detail pre").first
            assert '"event"' in (await detail.text_content() or "")

            # Dragging across the histogram zooms to that span and records it in the URL.
            box = await shared.locator("#histogram").bounding_box()
            assert box is not None
            # The records are in the last minute of the 15: drag over the last 3 minutes.
            await shared.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + 40)
            await shared.mouse.down()
            await shared.mouse.move(box["x"] + box["width"] + 5, box["y"] + 40, steps=5)
            await shared.mouse.up()
            await shared.wait_for_function("() => location.search.includes('start=')")
            assert await shared.input_value("#range") == "custom"
            await shared.wait_for_function(
                "() => /[0-9]+ matches .* 5 s per bar/.test(document.getElementById('total')"
                ".parentElement.textContent) && document.querySelectorAll('#results .row').length > 0"
            )

            # The theme switch flips between dark and light.
            before = await shared.evaluate("getComputedStyle(document.documentElement).colorScheme")
            await shared.click("#theme")
            after = await shared.evaluate("getComputedStyle(document.documentElement).colorScheme")
            assert {before, after} == {"light", "dark"}
            await shared.screenshot(path=str(ARTIFACTS / "search-page-zoomed.png"), full_page=True)
            assert errors == []
        finally:
            await browser.close()


TOKEN = "team-a-browser-token"


@pytest.fixture
def token_auth(tmp_path: Path) -> AuthConfig:
    secrets = tmp_path / "identities.yaml"
    secrets.write_text(f"identities:\n  - {{name: team-a, token: {TOKEN}, namespaces: [a]}}\n")
    return AuthConfig(mode="token", secrets_file=str(secrets))


@pytest.fixture
async def token_site(opensearch_any: str, token_auth: AuthConfig) -> AsyncIterator[tuple[str, str]]:
    """The same site, behind bearer tokens."""
    prefix = unique_prefix("browsertoken")
    now = time.time_ns()
    await asyncio.to_thread(opensearch_load, opensearch_any, prefix, corpus(20, start_ns=now - 60_000_000_000))
    config = dataclasses.replace(
        SearchConfig(), listen="127.0.0.1:0", ops_listen="", index_prefix=prefix, auth=token_auth
    )
    service = SearchService(config, OpenSearchBackend([opensearch_any], prefix), health=Health())
    await service.start()
    try:
        yield f"http://127.0.0.1:{service.port}", prefix
    finally:
        await service.stop()


async def test_token_sign_in_shows_only_the_allowed_namespace(token_site: tuple[str, str]) -> None:
    """The page asks for a token, then shows results and facets from namespace a only."""
    from playwright.async_api import async_playwright

    base, _ = token_site
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"{base}/?range=15m&namespace=b")
            await page.wait_for_selector("#login[open]")
            await page.fill("#login-token", TOKEN)
            await page.press("#login-token", "Enter")
            await page.wait_for_function("() => document.getElementById('who').textContent.includes('team-a')")
            await page.wait_for_function("() => document.getElementById('status').textContent.includes('No matches')")
            await page.click(".chip")  # drop the namespace=b filter
            await page.wait_for_selector("#results .row")
            sources = await page.locator("#results .row .src").all_text_contents()
            assert sources and all(src.startswith("a/") for src in sources)
            facet_values = await page.locator("#facets section:first-child .facet span:first-child").all_text_contents()
            assert facet_values == ["a"]
        finally:
            await browser.close()
