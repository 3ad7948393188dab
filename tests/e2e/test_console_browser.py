"""The web console in a real headless Chromium (the system's, driven by Playwright): log in,
watch a webhook arrive live, open it, replay it, pause and resume a destination, read why a
request was rejected. With HOOKYARD_SCREENSHOTS=1 it also refreshes docs/screenshots/.

The browser is never downloaded: scripts/test.sh installs Debian's chromium when it is
missing, and this test fails (it does not skip) without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

from playwright.async_api import Page, async_playwright, expect

from tests.conftest import DEADLINE, Running, basic_config, until_deadline
from tests.integration.test_ingest import github_headers

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
LAPTOP, PHONE = {"width": 1280, "height": 800}, {"width": 390, "height": 844}
RELAY = "\n[destinations.laptop]\nrelay = true\n"  # for the overview's relay listeners
# Playwright's waits, in ms (`expect` defaults to 5 s): like DEADLINE, they bound a hang.
DEADLINE_MS = int(DEADLINE * 1000)


@contextlib.asynccontextmanager
async def browser_page(profile: Path) -> AsyncIterator[Page]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`"
            " (scripts/test.sh does)"
        )
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            args=ARGS,
            headless=True,
            viewport=LAPTOP,
        )
        try:
            context.set_default_timeout(DEADLINE_MS)
            expect.set_options(timeout=DEADLINE_MS)
            yield context.pages[0] if context.pages else await context.new_page()
        finally:
            await context.close()


async def screenshot(page: Page, name: str) -> None:
    """docs/screenshots/NAME-laptop.png and NAME-phone.png, when asked for."""
    if os.environ.get("HOOKYARD_SCREENSHOTS") != "1":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for label, size in (("laptop", LAPTOP), ("phone", PHONE)):
        await page.set_viewport_size(size)
        await page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"))
    await page.set_viewport_size(LAPTOP)


async def log_in(page: Page, hy: Running, token: str) -> None:
    await page.goto(f"{hy.url}/console/")
    await expect(page).to_have_url(f"{hy.url}/console/login?next=%2Fconsole%2F")
    await page.get_by_label("Admin token").fill(token)
    await page.get_by_role("button", name="Log in").click()


async def test_the_console_end_to_end(hookyard_factory, receiver, tmp_path):
    async with (
        hookyard_factory(basic_config(receiver.url) + RELAY) as hy,
        browser_page(tmp_path / "profile") as page,
    ):
        # A wrong token stays on the login page, with the reason, and opens nothing.
        await log_in(page, hy, "hky_not-a-token")
        await expect(page.get_by_role("alert")).to_contain_text("unknown or revoked")
        await page.goto(f"{hy.url}/console/events")
        await expect(page.get_by_label("Admin token")).to_be_visible()

        await log_in(page, hy, hy.token)
        await expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
        # Keyboard first: the skip link is the first stop and leads to the content.
        await page.keyboard.press("Tab")
        await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()

        # The events list, live: a webhook sent now shows up without reloading.
        await page.get_by_role("link", name="Events").click()
        await expect(page.get_by_role("link", name="Events")).to_have_attribute(
            "aria-current", "page"
        )
        await page.get_by_label("Live: refresh the list every 5 seconds").check()
        body = json.dumps({"hello": "browser", "items": [1, 2]}).encode()
        event_id = (await hy.client.post("/in/open", content=body)).json()["id"]
        await receiver.wait_for(1)
        row = page.locator(f'a[href="/console/events/{event_id}"]')
        await expect(row).to_be_visible(timeout=DEADLINE_MS)
        for n in range(8):  # more traffic, for the screenshots' chart and list
            signed = json.dumps({"ref": "refs/heads/main", "n": n}).encode()
            await hy.client.post("/in/github", content=signed, headers=github_headers(signed))
        await page.reload()
        await screenshot(page, "events")

        # The event page: the body formatted, one attempt; replay adds a second.
        await page.locator(f'a[href="/console/events/{event_id}"]').click()
        await expect(page.get_by_role("heading", level=1)).to_contain_text(event_id)
        await expect(page.locator("pre.body").first).to_contain_text('"hello": "browser"')
        await expect(page.locator(".timeline li.ok")).to_have_count(1)
        await page.get_by_role("button", name="Replay").click()
        await expect(page.get_by_role("status")).to_have_text("Replayed: 1 new delivery.")
        await receiver.wait_for(2)
        for _ in until_deadline():
            if await page.locator(".timeline li.ok").count() == 2:
                break
            await asyncio.sleep(0.1)
            await page.reload()
        await expect(page.locator(".timeline li.ok")).to_have_count(2)
        await expect(page.locator(".tag", has_text="replay")).to_be_visible()
        await screenshot(page, "event")

        # Pause and resume a destination, each through its confirmation.
        await page.get_by_role("link", name="Destinations").click()
        await page.get_by_role("link", name="Pause app").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Pause app")
        await page.get_by_role("button", name="Pause").click()
        await expect(page.get_by_role("status")).to_have_text("app is paused.")
        await expect(page.locator("#dest-app .state")).to_have_text("paused")
        assert await _state(hy) == "paused"
        await screenshot(page, "destinations")
        await page.get_by_role("link", name="Resume app").click()
        await page.get_by_role("button", name="Resume").click()
        await expect(page.get_by_role("status")).to_have_text("app is active again.")
        assert await _state(hy) == "active"

        # The same form with its CSRF token taken out is refused, and changes nothing.
        await page.get_by_role("link", name="Pause app").click()
        await page.locator('#main input[name="csrf"]').evaluate("input => input.remove()")
        await page.get_by_role("button", name="Pause").click()
        await expect(page.get_by_role("alert")).to_contain_text("security token")
        assert await _state(hy) == "active"
        await page.get_by_role("link", name="Back to the console").click()
        nav = page.get_by_role("navigation", name="Console")
        await nav.get_by_role("link", name="Destinations").click()

        # A request with a bad signature: its reason, in words.
        signed = b'{"a": 1}'
        refused = await hy.client.post(
            "/in/github", content=signed, headers=github_headers(signed, secret="wrong")
        )
        assert refused.status_code == 401
        await hy.service.state.rejected.flush()
        await page.get_by_role("link", name="Rejected").click()
        await expect(page.get_by_role("cell", name="401 bad_signature")).to_be_visible()
        await expect(page.locator("td.wrap").first).to_contain_text("X-Hub-Signature-256")
        await screenshot(page, "rejected")

        # A relay client leasing now shows as a connected listener.
        async with hy.api() as api:
            leased = await api.post("/api/v1/destinations/laptop/lease", json={"wait": 0})
            assert leased.status_code == 200, leased.text
        await page.get_by_role("link", name="Overview").click()
        await expect(page.locator("svg.spark").first).to_be_visible()
        # The charts are drawn (the CSP allows them) and named by their numbers.
        traffic = page.get_by_role(
            "img", name=re.compile(r"^\d+ events in the last hour, \d\d:\d\d to now")
        )
        await expect(traffic).to_be_visible()
        assert (await traffic.bounding_box() or {}).get("height", 0) > 20
        await expect(page.get_by_role("img", name=re.compile("^Latency p50 "))).to_be_visible()
        listeners = page.get_by_role("region", name=re.compile("^Relay listeners")).get_by_role(
            "row", name="laptop"
        )
        await expect(listeners.get_by_role("cell")).to_have_text("1")
        await screenshot(page, "overview")

        # Logging out ends the session.
        await page.get_by_role("button", name="Log out").click()
        await expect(page.get_by_label("Admin token")).to_be_visible()
        await page.goto(f"{hy.url}/console/destinations")
        await expect(page.get_by_label("Admin token")).to_be_visible()


async def _state(hy: Running) -> str:
    async with hy.api() as api:
        listed = (await api.get("/api/v1/destinations")).json()
    return str(next(d for d in listed if d["name"] == "app")["state"])
