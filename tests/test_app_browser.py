"""End to end in a real headless browser: Debian's chromium driven by Playwright.

Open the page, upload the sample video, type a vocabulary, press Run, wait for the overlay
video (decoded by the browser: H.264 from the pipeline's own writer, no system ffmpeg) and the
track table, take a screenshot into test-artifacts/ (gitignored). Under CI (CI=true) a missing
browser or Playwright fails the test; elsewhere it is skipped.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
# Generous bounds for a loaded 2-core machine (the run itself takes seconds).
RUN_TIMEOUT_MS = 600_000


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (required under CI)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.browser
@pytest.mark.slow
def test_browser_runs_a_video_end_to_end(tmp_path: Path) -> None:
    _require(CHROMIUM.is_file(), f"{CHROMIUM} not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    _require(sync_playwright is not None, "playwright not installed (pip install playwright)")
    pytest.importorskip("gradio")
    from streamseg.app import AppSettings, launch

    settings = AppSettings(model="tiny-convnext", device="cpu", work_dir=tmp_path / "work")
    demo = launch(settings, host="127.0.0.1", port=_free_port(), block=False)
    try:
        video = next(p for p in demo.streamseg_app.samples() if p.suffix == ".mp4")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1200})
                page.goto(demo.local_url)
                page.wait_for_selector("#run", timeout=RUN_TIMEOUT_MS)
                page.locator("#input-file input[type=file]").set_input_files(str(video))
                page.locator("#input-file").get_by_text(video.name).first.wait_for(
                    timeout=RUN_TIMEOUT_MS
                )
                page.locator("#vocab textarea").fill("red circle,blue square,grass")
                page.locator("#stuff textarea, #stuff input").first.fill("grass")
                page.locator("#run").click()

                page.wait_for_selector("#overlay-video video[src]", timeout=RUN_TIMEOUT_MS)
                # the browser decodes the overlay: metadata and a first frame are there
                page.wait_for_function(
                    "document.querySelector('#overlay-video video').readyState >= 2",
                    timeout=RUN_TIMEOUT_MS,
                )
                size = page.evaluate(
                    "(() => { const v = document.querySelector('#overlay-video video');"
                    " return [v.videoWidth, v.videoHeight]; })()"
                )
                status = page.locator("#status").inner_text()
                ARTIFACTS.mkdir(exist_ok=True)
                shot = ARTIFACTS / "app_browser.png"
                page.screenshot(path=str(shot), full_page=True)
                grid = page.locator("#tracks [role=grid]")
                rows = int(grid.get_attribute("aria-rowcount") or 0)
                table_text = page.locator("#tracks").inner_text()
            finally:
                browser.close()
    finally:
        demo.close()

    # The first sample video (weights/shapes-tiny/sample.mp4 when shipped, else one made by
    # the app): the overlay has its size and the status its name, frame count (up to the
    # "Max frames" slider's default, 48) and size.
    import av

    with av.open(str(video)) as container:
        frames = min(48, sum(1 for _ in container.decode(video=0)))
        height, width = container.streams.video[0].height, container.streams.video[0].width
    assert size == [width, height]
    match = re.search(
        rf"{re.escape(video.name)}: {frames} frames \({width}x{height}\), \d+ segments, "
        r"(\d+) tracks",
        status,
    )
    assert match, status
    assert rows == int(match.group(1)) + 1  # header row + one row per track
    for header in ("track", "class", "first (s)", "last (s)", "frames", "mean score"):
        assert header in table_text
    assert shot.stat().st_size > 0


def test_missing_browser_fails_under_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no browser \\(required under CI\\)"):
        _require(False, "no browser")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no browser"):
        _require(False, "no browser")
    _require(True, "present")  # no effect
