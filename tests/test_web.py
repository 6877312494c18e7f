"""The web page in a real browser: Debian's chromium, driven headless by Playwright."""

from __future__ import annotations

import shutil
import time

import pytest

from dlm.config import ServeConfig
from tests.server_util import live_server, tiny_lm

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a test dependency")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(
    not shutil.which("chromium"),
    reason="no chromium on PATH (`apt-get install chromium`; .ci/run installs it)")


@pytest.fixture
def web(tok):
    lm = tiny_lm(tok)
    real = lm.reply_ids

    def paced(histories, config, on_step):  # a tiny model is too quick to watch
        def slow(step):
            time.sleep(0.02)
            on_step(step)
        return real(histories, config, slow)

    lm.reply_ids = paced
    with live_server(lm, ServeConfig()) as (url, _), sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        yield page
        browser.close()
        assert not errors, errors


def test_a_reply_animates_from_masks_to_words(web):
    web.fill("#steps", "6")
    web.fill("#length", "12")
    web.fill("#pace", "40")
    web.fill("#input", "hello")
    web.click("#send")
    web.wait_for_selector(".turn.assistant[data-final]", timeout=30_000)
    frames = web.evaluate("window.dlmFrames")
    with_masks = [f for f in frames if f["masks"] > 0]
    assert len(with_masks) >= 2, frames  # intermediate frames were drawn, masks visible
    assert frames[-1]["masks"] == 0 and len(frames) == 7
    assert web.locator(".turn.user").inner_text() == "hello"
    assert web.is_enabled("#send") and not web.is_enabled("#stop")


def test_the_history_grows_and_stop_cancels(web):
    web.fill("#steps", "4")
    web.fill("#length", "8")
    web.fill("#pace", "0")
    web.fill("#input", "hello")
    web.click("#send")
    web.wait_for_selector(".turn.assistant[data-final]")
    web.fill("#steps", "60")
    web.fill("#length", "60")
    web.fill("#pace", "200")
    web.fill("#input", "and you?")
    web.click("#send")
    web.wait_for_function("window.dlmFrames.length > 9")
    web.click("#stop")
    web.wait_for_selector("text=(stopped)")
    assert web.locator(".turn.user").count() == 2
    assert web.locator(".turn.assistant[data-final]").count() == 1


def test_infill_mode_fills_the_blanks(web):
    web.check("input[value=infill]")
    web.fill("#steps", "3")
    web.fill("#input", "hello [MASK] are [MASK*2]")
    web.click("#send")
    final = web.wait_for_selector(".turn.assistant[data-final]")
    assert final.get_attribute("data-final").startswith("hello ")


def test_the_page_shows_the_servers_defaults_and_names(web):
    """The page's settings are the server's: GET /defaults (a request that sets nothing,
    resolved by `lm.decoding()`), with the commit rules and decodings by their names."""
    from dlm.config import COMMIT_RULES, DECODES

    web.wait_for_function("window.dlmDefaults !== undefined")
    d = web.evaluate("window.dlmDefaults")
    s = d["settings"]
    shown = {key: web.input_value(f"#{element}") for key, element in (
        ("steps", "steps"), ("max_tokens", "length"), ("temperature", "temperature"),
        ("commit_rule", "rule"), ("block_length", "block"), ("decode", "decode"))}
    assert shown == {"steps": str(s["steps"]), "max_tokens": str(s["max_tokens"]),
                     "temperature": str(s["temperature"]).removesuffix(".0"),
                     "commit_rule": s["commit_rule"], "block_length": str(s["block_length"]),
                     "decode": s["decode"]}
    rules = web.eval_on_selector_all("#rule option", "os => os.map(o => o.value)")
    assert tuple(rules) == COMMIT_RULES
    assert tuple(web.eval_on_selector_all("#decode option", "os => os.map(o => o.value)")) \
        == DECODES
