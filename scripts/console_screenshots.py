"""`make screenshots`: the console's main pages as an officer meets them, taken in headless
Chromium (1280x800) from a `pitwarden serve --demo` of their own on a private data directory,
deleted afterwards. The pictures go to docs/console/, where the README shows them; the names,
keys and dates in them are that throwaway server's."""

import asyncio
import re
import shutil
import uuid

from playwright.async_api import Browser, Page, async_playwright

from tests import chromium
from tests.chromium import ROOT, Demo

OUT = ROOT / "docs" / "console"
PLAYER = "00000000-0000-4000-8000-000000000001"  # the demo's first player


async def _shoot(page: Page, name: str) -> None:
    path = OUT / f"{name}.png"
    await page.screenshot(path=path)
    print(f"{path.relative_to(ROOT)}  {page.url}")


async def _page(browser: Browser) -> Page:
    """A page in a fresh browser profile of its own, as on another computer."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(chromium.WAIT_MS)
    return await context.new_page()


async def _take(demo: Demo) -> None:
    officer, admin = demo.officers["officer"], demo.officers["admin"]
    async with async_playwright() as playwright:
        browser = await chromium.launch(playwright)
        desk = await _page(browser)
        await desk.goto(f"{demo.url}/console/sign-in")
        await _shoot(desk, "sign-in")
        await desk.get_by_label("Name", exact=True).fill(officer.username)
        await desk.get_by_label("Password", exact=True).fill(officer.password)
        await desk.get_by_role("button", name="Continue").click()
        await desk.get_by_label("Code from the app").wait_for()
        await _shoot(desk, "enrol")
        await chromium.sign_in(desk, demo.url, officer)  # a new key, enrolled: not the one shown
        await _shoot(desk, "home")
        await desk.goto(f"{demo.url}/console/players/{PLAYER}")
        await _shoot(desk, "player")
        laptop = await _page(browser)
        await chromium.sign_in(laptop, demo.url, officer)  # a second session to list
        await desk.goto(f"{demo.url}/console/sessions")
        await _shoot(desk, "sessions")
        await desk.goto(f"{demo.url}/console/decisions?outcome=deny")
        await _shoot(desk, "decisions")
        await desk.locator("a[href^='/console/decisions/']").first.click()
        await _shoot(desk, "decision")
        await desk.get_by_role("button", name=re.compile("^Replay under")).click()
        await _shoot(desk, "replay")
        await desk.goto(f"{demo.url}/console/players/{PLAYER}")
        await desk.get_by_label("KYC level").select_option("verified")
        await desk.get_by_label("Reason", exact=True).first.fill("passport seen on a video call")
        await desk.get_by_role("button", name="Change the KYC level").click()
        await _shoot(desk, "four-eyes")
        await desk.goto(f"{demo.url}/console/payments")
        await _shoot(desk, "payments")
        await desk.goto(f"{demo.url}/console/rulesets/compare?from=2026-11-v2&to=2026-11-v3")
        await _shoot(desk, "ruleset-diff")
        await desk.goto(f"{demo.url}/console/audit")
        await _shoot(desk, "audit")
        mlro = await _page(browser)
        await chromium.sign_in(mlro, demo.url, demo.officers["mlro"])
        await mlro.goto(f"{demo.url}/console/kill-switches")
        await _shoot(mlro, "kill-switches")
        other = await _page(browser)
        await chromium.sign_in(other, demo.url, admin)
        await other.goto(f"{demo.url}/console/players/{PLAYER}")
        await _shoot(other, "refused")
        await other.goto(f"{demo.url}/console/officers")
        await _shoot(other, "officers")
        await browser.close()


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    data_dir = ROOT / "var" / f"screenshots-{uuid.uuid4().hex[:8]}"
    demo = chromium.start_demo(data_dir)
    try:
        asyncio.run(_take(demo))
    finally:
        chromium.stop_demo(demo)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
