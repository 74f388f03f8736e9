"""Browser fixtures: Debian's Chromium driven by Playwright (async, in the suite's event loop, so the live gateways
keep serving while a page waits on them). Chromium comes from `make chromium` (mk/studio.mk); a missing browser
fails the suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import pytest_asyncio

from tests.gateway.conftest import KEYS, live, live_gateway, live_secured_gateway  # noqa: F401

CHROMIUM = os.environ.get("IMAGEMESH_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "studio"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest_asyncio.fixture(scope="session")
async def browser():
    from playwright.async_api import async_playwright

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (mk/studio.mk installs Debian's chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        await browser.close()


@pytest_asyncio.fixture
async def page(browser):
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors  # type: ignore[attr-defined]
    yield page
    await context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def shot():
    """Saves a screenshot under artifacts/studio/ (git-ignored) and returns its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    async def take(page, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    return take
