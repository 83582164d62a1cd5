"""The listening report in a real browser (issue 13): Debian's chromium driven by playwright.

A small quick ``mix`` of synthetic stems is copied to a new folder and its ``report.html`` is opened
from there via file://: every alternative and the before has a player whose audio loads, the plots
and tables are there, playback of one alternative switched to another continues at the same
position (within 0.25 s), the keys work, and the page logs no console error.

Chromium must be installed (``apt-get install chromium``; ``.ci/run`` does it): without it this test
fails with a message, it is not skipped. Developers may set ``EVOMIX_SKIP_BROWSER=1`` to skip it.
"""
import os
import shutil
from pathlib import Path

import pytest

from tests.support import small_search

pytestmark = pytest.mark.slow  # a whole mix, then its report in a real browser

CHROMIUM = os.environ.get("EVOMIX_CHROMIUM", "/usr/bin/chromium")
# also save the screenshot here (a path), for a person to look at
SCREENSHOT_COPY = os.environ.get("EVOMIX_REPORT_SCREENSHOT")

if os.environ.get("EVOMIX_SKIP_BROWSER") == "1":
    pytest.skip("EVOMIX_SKIP_BROWSER=1: browser test skipped on request", allow_module_level=True)


def _browser_or_fail():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser test needs playwright: pip install '.[test]' (or set EVOMIX_SKIP_BROWSER=1)")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"the browser test needs Debian's chromium at {CHROMIUM}: apt-get install -y chromium "
                    f"(.ci/run installs it), or set EVOMIX_SKIP_BROWSER=1")
    return sync_playwright


@pytest.fixture(scope="module")
def copied_report(tmp_path_factory, stem_dir):
    from evomix import api

    out = tmp_path_factory.mktemp("mix") / "out"
    # 10 generations: with the reverb bus searched by default, 2 found only two distinct mixes
    result = api.mix([stem_dir], search=small_search(generations=10, alternatives=3, seed=2))
    result.write(out)
    copy = tmp_path_factory.mktemp("copied") / "somewhere-else"
    shutil.copytree(out, copy)
    shutil.rmtree(out)  # the copy must stand on its own
    return copy


def test_report_plays_and_switches_at_the_same_position(copied_report):
    sync_playwright = _browser_or_fail()
    page_url = (copied_report / "report.html").as_uri()
    alts = sorted(p.stem for p in copied_report.glob("alt-*.wav"))
    assert len(alts) == 3
    errors = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--autoplay-policy=no-user-gesture-required", "--mute-audio",
                                           "--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            page.goto(page_url)
            # a working player per mix: the audio has loaded (metadata, a duration)
            page.wait_for_function(
                "() => [...document.querySelectorAll('audio.mix-player')]"
                ".every(a => a.readyState >= 1 && a.duration > 0)",
                timeout=20000)
            players = page.eval_on_selector_all(
                "audio.mix-player",
                "els => els.map(a => [a.dataset.mix, a.duration, a.readyState, a.getAttribute('src')])")
            assert sorted(p[0] for p in players) == sorted(["before"] + alts)
            assert all(p[1] > 3.5 and p[2] >= 1 and "/" not in p[3] for p in players), players  # relative paths
            # plots and tables
            assert page.locator(".plot.front svg").count() == 1
            assert page.locator(".plot.spectrum svg").count() == len(alts)
            assert page.locator(".plot.masking svg").count() == len(alts)
            assert page.locator(".plot.convergence svg").count() == 1
            assert page.locator("table.settings").count() == len(alts)
            assert page.locator("table.overview tbody tr").count() == len(alts) + 1
            for a in alts:
                assert page.locator(f"#card-{a}").count() == 1
            # play alt-01 (key 1, then space), let it run, switch to alt-03 (key 3)
            page.keyboard.press("1")
            page.keyboard.press(" ")
            page.wait_for_function("() => { const a = window.evomixReport.players['alt-01'];"
                                   " return !a.paused && a.currentTime > 1.0; }",
                                   timeout=15000)
            old_t = page.evaluate("() => window.evomixReport.players['alt-01'].currentTime")
            page.keyboard.press("3")
            state = page.evaluate("""() => { const p = window.evomixReport.players;
                return {old: p['alt-01'].currentTime, oldPaused: p['alt-01'].paused, now: window.evomixReport.current(),
                        t: p['alt-03'].currentTime}; }""")
            assert state["now"] == "alt-03" and state["oldPaused"], state
            assert abs(state["t"] - state["old"]) <= 0.25, state
            assert abs(state["t"] - old_t) <= 0.25 + 0.2, (state, old_t)
            page.wait_for_function("() => !window.evomixReport.players['alt-03'].paused", timeout=5000)
            # the before (key b) continues at the position too
            t3 = page.evaluate("() => window.evomixReport.players['alt-03'].currentTime")
            page.keyboard.press("b")
            tb = page.evaluate("() => window.evomixReport.players['before'].currentTime")
            assert page.evaluate("() => window.evomixReport.current()") == "before"
            assert abs(tb - t3) <= 0.25, (tb, t3)
            page.keyboard.press(" ")  # pause
            assert page.evaluate("() => window.evomixReport.players['before'].paused")
            page.click("#choices button[data-mix='alt-02']")  # a click, then space plays it (once: not toggled twice)
            assert page.evaluate("() => window.evomixReport.current()") == "alt-02"
            page.keyboard.press(" ")
            page.wait_for_function("() => { const a = window.evomixReport.players['alt-02'];"
                                   " return !a.paused && a.currentTime > 0.3; }",
                                   timeout=5000)
            assert "alt-02" in page.inner_text("#now") and "pause" in page.inner_text("#playpause")
            shot = copied_report.parent / "report-screenshot.png"
            page.screenshot(path=str(shot), full_page=False)
            assert shot.stat().st_size > 10000
            if SCREENSHOT_COPY:
                shutil.copyfile(shot, SCREENSHOT_COPY)
        finally:
            browser.close()
    assert not errors, errors
