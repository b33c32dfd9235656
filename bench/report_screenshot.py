"""Remake docs/sample_report.png: the sample's report after a few clicks, in the system Chromium.

    EGOCLEAN_NO_INSTALL=1 VENV=.venv bash run.sh                 # the sample (data/sample/factory_001/)
    .venv/bin/python -m VJEPA.report data/sample/factory_001
    .venv/bin/python bench/report_screenshot.py [data/sample/factory_001/report.html] [docs/sample_report.png]

It opens the cross-clip match, clicks a cell of clip 1's self-similarity (row 0:35, column 0:11) and then
clip 1's first anomaly, pauses every video, and captures the page down to the end of clip 1 at 1280 px.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright


def main() -> None:
    page_path = Path(sys.argv[1] if len(sys.argv) > 1 else "data/sample/factory_001/report.html").resolve()
    out = sys.argv[2] if len(sys.argv) > 2 else "docs/sample_report.png"
    pause = "document.querySelectorAll('video').forEach(v => v.pause())"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.goto(page_path.as_uri())
        tab.wait_for_function("document.documentElement.dataset.ready === '1'")
        tab.locator("button.match").first.click()
        tab.wait_for_timeout(1500)
        tab.evaluate(pause)
        canvas = tab.locator("#clip-0 canvas.over")
        box = canvas.bounding_box()
        canvas.click(position={"x": box["width"] * 0.2, "y": box["height"] * 0.62})
        tab.wait_for_timeout(300)
        tab.locator("#clip-0 button.anomaly").first.click()
        tab.wait_for_timeout(1500)
        tab.evaluate(pause)
        tab.locator("#clip-0 button.anomaly").first.focus()
        tab.wait_for_timeout(400)
        section = tab.locator("#clip-0").bounding_box()
        bottom = section["y"] + tab.evaluate("window.scrollY") + section["height"] + 12
        tab.screenshot(path=out, full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": bottom})
        browser.close()
    if errors:
        sys.exit(f"console errors: {errors}")
    print(out)


if __name__ == "__main__":
    main()
