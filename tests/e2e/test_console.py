"""The web console in headless Chromium against the whole stack: sign in, apply, build,
deploy, upgrade, roll back, see an alert fire, uninstall; and what needs no token.

The browser is Debian's chromium (tests/system-deps.sh installs it), driven by the
playwright package: never a browser downloaded by `playwright install`.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from libs.testing.stack import RunningStack
from tests.e2e.helpers import auth, unique
from tests.e2e.test_deploy import HELLO_SRC, LAUNCH, SPEC, _free_port

pytestmark = pytest.mark.e2e
CHROMIUM = Path("/usr/bin/chromium")
SLOW = 90_000  # ms: a deployment of a real process, an alert through Kafka and the detector


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    assert CHROMIUM.exists(), "Debian's chromium is missing: run tests/system-deps.sh"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield browser
        await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh tab at 1280x800; uncaught errors and CSP violations fail the test."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    tab = await context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    tab.on(
        "console",
        lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
    )
    yield tab
    await context.close()
    assert not problems, problems


async def _sign_in(page: Page, gateway: str, token: str) -> None:
    await page.goto(f"{gateway}/")
    assert page.url.startswith(f"{gateway}/console/"), page.url
    await page.fill("#token", token)
    await page.click("#signin button[type=submit]")
    await expect(page.locator("#who")).to_contain_text("admin")


async def _build(page: Page) -> str:
    """Start a build in the app view, watch it succeed with its steps; its version."""
    build = page.locator("#build")
    before = await build.get_attribute("data-id")
    await page.click("#build-start")
    await expect(page.locator("#build-start")).to_be_enabled()  # started and shown
    if before:
        await expect(build).not_to_have_attribute("data-id", before)
    await expect(build).to_have_attribute("data-status", "SUCCEEDED", timeout=SLOW)
    step = build.locator('li[data-step="web/pack"]')
    await expect(step.locator(".badge")).to_have_text("succeeded")
    await expect(step.locator("pre.log")).to_contain_text("packed 1 files")
    return str(await build.get_attribute("data-version"))


async def _deployed(page: Page, kind: str, *, web: bool = True) -> dict[str, str]:
    """Wait for the deployment shown to end in SUCCESS (`web` with it); its attributes."""
    shown = page.locator("#deployment")
    await expect(page.locator("#deploy")).to_be_enabled()
    await expect(shown).to_have_attribute("data-kind", kind)
    await expect(shown).to_have_attribute("data-state", "SUCCESS", timeout=SLOW)
    if web:
        await expect(shown.locator('li[data-component="web"] .badge')).to_have_text("SUCCESS")
    return {k: str(await shown.get_attribute(f"data-{k}")) for k in ("id", "revision")}


def _answer(port: int) -> Any:
    return httpx.get(f"http://127.0.0.1:{port}/", timeout=5).json()


async def _publish(client: httpx.AsyncClient, stack: RunningStack, **sample: Any) -> None:
    event = {
        "specversion": "1.0",
        "id": unique("ev"),
        "source": "e2e-console",
        "type": "io.opsline.metric.batch",
        "data": {"samples": [sample]},
    }
    response = await client.post(
        f"{stack.stack.gateway_url}/v1/events",
        content=orjson.dumps(event),
        headers={**auth(stack), "content-type": "application/cloudevents+json"},
    )
    assert response.status_code == 202, response.text


async def test_sign_in_apply_build_deploy_upgrade_roll_back_alert_uninstall(
    stack: RunningStack, page: Page
) -> None:
    gateway = stack.stack.gateway_url
    name, port = unique("console").replace("_", "-"), _free_port()
    instance = f"{name}-dev"
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url))
    await _sign_in(page, gateway, stack.admin_token)

    await page.fill("#apply-yaml", SPEC.format(name=name, src=HELLO_SRC))
    await page.click("#apply")
    await expect(page.locator("#apply-result")).to_contain_text(f"{name}: created")
    row = page.locator(f'#apps tr[data-app="{name}"]')
    await expect(row).to_contain_text("e2e")
    await expect(row).to_contain_text("process")
    await row.locator("a").click()
    await expect(page.locator("#overview h1")).to_have_text(name)
    await expect(page.locator("#live")).to_have_text("live")

    first = await _build(page)
    second = await _build(page)
    assert first != second
    await expect(page.locator(f'#packages tr[data-version="{second}"]')).to_be_visible()

    await page.fill("#launch", LAUNCH.format(name=name, version=first, port=port, greeting="one"))
    await page.click("#deploy")
    assert (await _deployed(page, "deploy"))["revision"] == "1"
    row = page.locator(f'#instances tr[data-instance="{instance}"]')
    await expect(row.locator(".revision")).to_have_text("1")
    await expect(row.locator(".version")).to_have_text(first)
    assert _answer(port) == {"app": "hello", "version": first, "greeting": "one"}
    await row.get_by_role("button", name="Logs").click()
    output = page.locator('#instance-logs pre[data-component="web"]')
    await expect(output).to_contain_text(f"hello {first} listening on http://127.0.0.1:{port}")

    # upgrade: the launch this tab sent, with the newer version picked in the instance's row
    await row.locator("select.upgrade-version").select_option(second)
    await row.get_by_role("button", name="Upgrade…").click()
    await expect(page.locator("#launch")).to_have_value(re.compile(f'version: "{second}"'))
    await expect(page.locator("#launch")).to_have_value(re.compile(f"port: {port}"))
    await page.click("#deploy")
    assert (await _deployed(page, "upgrade"))["revision"] == "2"
    await expect(row.locator(".revision")).to_have_text("2")
    await expect(row.locator(".version")).to_have_text(second)
    assert _answer(port)["version"] == second

    await row.get_by_role("button", name="Roll back").click()
    assert (await _deployed(page, "rollback"))["revision"] == "1"
    await expect(row.locator(".revision")).to_have_text("1")
    await expect(row.locator(".version")).to_have_text(first)
    assert _answer(port)["version"] == first
    await expect(page.locator('#timeline li[data-kind="deploy"]').first).to_be_visible()

    # an alert rule on a metric of the app; a sample over it; the console shows it firing
    metric = unique("latency_ms")
    async with httpx.AsyncClient(timeout=30) as client:
        made = await client.post(
            f"{gateway}/v1/alert-rules",
            json={
                "name": f"{metric}-high",
                "metric": metric,
                "matchers": [{"name": "app", "value": name}],
                "thresholds": {"WARNING": 200, "CRITICAL": 500},
            },
            headers=auth(stack),
        )
        assert made.status_code == 201, made.text
        rule = made.json()
        try:
            now = int(time.time() * 1000)
            for ts, value in ((now - 1000, 120.0), (now, 750.0)):
                await _publish(client, stack, name=metric, labels={"app": name}, value=value, ts=ts)
            alert = page.locator("#app-alerts tbody tr", has_text=f"{metric}-high")
            await expect(alert).to_be_visible(timeout=SLOW)
            await expect(alert.locator(".badge").first).to_have_text("CRITICAL")
            await expect(page.locator("#health .badge")).not_to_have_text("healthy", timeout=SLOW)
            # its samples as a chart (the range select redraws at once)
            await page.select_option("#metrics-range", "1h")
            chart = page.locator(f'#charts figure[data-metric="{metric}"]')
            await expect(chart.locator("canvas")).to_be_visible(timeout=SLOW)
            # and on the alerts page, with its app
            await page.click('[data-nav="alerts"]')
            listed = page.locator("#alerts tbody tr", has_text=f"{metric}-high")
            await expect(listed).to_contain_text(name, timeout=SLOW)
            await listed.get_by_role("link", name=name).click()
        finally:
            await client.delete(f"{gateway}/v1/alert-rules/{rule['id']}", headers=auth(stack))

    row = page.locator(f'#instances tr[data-instance="{instance}"]')
    page.once("dialog", lambda dialog: dialog.accept())
    await row.get_by_role("button", name="Uninstall").click()
    await _deployed(page, "uninstall", web=False)
    await expect(row).to_have_count(0)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    # the token travels in headers only
    assert not [url for url in sent if stack.admin_token in url]


CONSOLE_CALLS = [
    "/v1/whoami",
    "/v1/apps",
    "/v1/apps/any/builds",
    "/v1/instances",
    "/v1/alerts?state=firing",
    "/v1/metrics/series?match=app=any",
    "/v1/apps/any/timeline",
    "/v1/events/stream",
]


async def test_static_files_need_no_token_and_api_calls_without_one_fail_visibly(
    stack: RunningStack, page: Page
) -> None:
    gateway = stack.stack.gateway_url
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
        for path in ("/", "/console"):
            moved = await client.get(path)
            assert (moved.status_code, moved.headers["location"]) == (307, "/console/"), path
        index = await client.get("/console/")
        assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
        csp = index.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "connect-src 'self'" in csp, csp
        assert index.headers["cache-control"] == "no-cache"
        script = await client.get("/console/main.js")
        assert script.headers["content-type"].startswith("text/javascript")
        vendored = await client.get("/console/vendor/uPlot-1.6.32.iife.min.js")
        assert vendored.status_code == 200 and "immutable" in vendored.headers["cache-control"]
        assert (await client.get("/console/__init__.py")).status_code == 404
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert not [p for p in paths if p == "/" or p.startswith("/console")]
        for path in CONSOLE_CALLS:
            refused = await client.get(path)
            assert refused.status_code == 401, (path, refused.text)
            assert "Authorization" in refused.json()["detail"], path

    # no token: the sign-in form, and not one API call
    calls: list[str] = []
    page.on("request", lambda r: calls.append(r.url) if "/v1/" in r.url else None)
    await page.goto(f"{gateway}/console/#/apps/anything")
    await expect(page.locator("#signin")).to_be_visible()
    await expect(page.locator("#overview")).to_have_count(0)
    assert calls == []

    # a wrong token: the API's reason, still signed out
    await page.fill("#token", "opl_not-a-token")
    await page.click("#signin button[type=submit]")
    await expect(page.locator("#errors .error")).to_contain_text("invalid, expired or revoked")
    await expect(page.locator("#signin")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0

    # a token that stops working mid-session: signed out with the reason
    await page.fill("#token", stack.admin_token)
    await page.click("#signin button[type=submit]")
    await expect(page.locator("#overview")).to_have_count(1)
    await page.evaluate("sessionStorage.setItem('opsline.token', 'opl_revoked')")
    await page.click('[data-nav="alerts"]')
    await expect(page.locator("#signin .notice")).to_contain_text("invalid, expired or revoked")
    assert await page.evaluate("sessionStorage.length") == 0

    # sign out clears the tab's token
    await page.fill("#token", stack.admin_token)
    await page.click("#signin button[type=submit]")
    await expect(page.locator("#alerts")).to_be_visible()
    await page.click("#signout")
    await expect(page.locator("#signin")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0
    assert stack.admin_token not in page.url
