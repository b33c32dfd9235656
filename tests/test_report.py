"""The click-through report (VJEPA/report.py): pure-Python checks, then the page in a real Chromium.

The browser tests build their report from data made here: two small H.264 clips, synthetic embeddings with
two planted anomalies in clip 1 (and a clip 2 that repeats clip 1's cycle at another phase, so the joint
analysis finds cross-clip matches), analysed by analyze.py's own command line. No torch is involved.
Chromium comes from the system (Debian: apt-get install chromium); without it these tests fail.
"""

from __future__ import annotations

import json
import re
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from egoclean.video import VideoWriter
from tests.helpers import moving_frame, rgb_to_yuv420p
from VJEPA import analyze as analyze_cli
from VJEPA import report, synthetic

FPS, WIDTH, HEIGHT = 10, 160, 90
PERIOD, DIM = 8.0, 32
N1, N2, SHIFT = 90, 40, 43  # windows (1 s each) of clip 1 and clip 2; clip 2 starts 43 s into the cycle
ANOMALIES = ((25, 8), (60, 8))  # planted in clip 1: (first window, length)


# ----------------------------------------------------------------------------------------------------------
# Pure Python


def test_natural_order_puts_clip_2_before_clip_10():
    names = ["rectified_clip_10", "rectified_clip_2", "rectified_clip_1", "Rectified_clip_3", "other"]
    assert sorted(names, key=report.natural_key) == [
        "other",
        "rectified_clip_1",
        "rectified_clip_2",
        "Rectified_clip_3",
        "rectified_clip_10",
    ]
    records = [{"source": f"/x/rectified_clip_{i}_emb.npy"} for i in (10, 2, 1)]
    ordered = sorted(records, key=lambda r: report.natural_key(report.clip_name(r)))
    assert [report.clip_name(r) for r in ordered] == [
        "rectified_clip_1",
        "rectified_clip_2",
        "rectified_clip_10",
    ]


def test_embedded_json_cannot_close_the_script_and_reads_back():
    data = {"name": "</script><script>alert(1)</script><!-- & ]]>", "line": "a\u2028b", "x": [1.5, None]}
    text = report.embed_json(data)
    assert "</" not in text and "<!--" not in text and "<" not in text and "\u2028" not in text
    assert json.loads(text) == data


def hostile_folder(tmp_path: Path) -> tuple[Path, dict]:
    """A folder and a record whose names are HTML, with no video and no embeddings beside them."""
    folder = tmp_path / "factory_<b>\"x&'"
    folder.mkdir()
    record = {
        "source": str(folder / "clip_<img src=x onerror=alert(1)>_emb.npy"),
        "n_windows": 10,
        "stride_s": 1.0,
        "anomalies": [],
        "repeats": [],
        "change_points_s": [],
        "boundaries_s": [],
    }
    return folder, record


def test_page_escapes_text_and_embeds_data(tmp_path):
    folder, record = hostile_folder(tmp_path)
    page = report.write_report(folder, [record]).read_text()
    assert "<b>" not in page and "<img src=x" not in page
    assert "factory_&lt;b&gt;&quot;x&amp;&#x27;" in page  # the title, HTML-escaped
    assert page.count("</script>") == 2  # the data block's own end and the code's: nothing in between
    block = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    data = json.loads(block.group(1))
    assert data["clips"][0]["name"] == "clip_<img src=x onerror=alert(1)>"
    assert data["clips"][0]["video"] is None and data["clips"][0]["ssm"] is None  # nothing to find: no crash
    assert not list(folder.glob("*.partial*"))


def test_similarity_image_is_the_block_averaged_cosine_similarity():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((1200, 16)).astype(np.float32) + 2.0
    image, starts, levels = report.similarity_image(emb)
    assert image.shape == (200, 200) and image.dtype == np.uint8 and len(starts) == 200
    u = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    block = (u @ u.T).reshape(200, 6, 200, 6).mean(axis=(1, 3))
    value = image.astype(int)
    assert np.all(levels[value] <= block + 1e-6) and np.all(block <= levels[value + 1] + 1e-6)
    small, small_starts, _ = report.similarity_image(emb[:50])
    assert small.shape == (50, 50) and list(small_starts) == list(range(50))  # no averaging below 200


# ----------------------------------------------------------------------------------------------------------
# A worker folder, analysed as analyze.py does


def write_clip(path: Path, seconds: int) -> None:
    with VideoWriter(path, WIDTH, HEIGHT, rate=Fraction(FPS), time_base=Fraction(1, FPS)) as writer:
        for index in range(seconds * FPS):
            writer.write(rgb_to_yuv420p(moving_frame(index, WIDTH, HEIGHT)), pts=index)


@pytest.fixture(scope="module")
def worker(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("factory_001")
    emb1 = synthetic.periodic(N1, DIM, PERIOD, 0.1, seed=1)
    for k, (start, length) in enumerate(ANOMALIES):
        emb1 = synthetic.with_anomaly(emb1, start, length, seed=k + 1)
    emb2 = synthetic.periodic(SHIFT + N2, DIM, PERIOD, 0.1, seed=1)[SHIFT:]  # the same cycle, other phase
    for index, emb in ((1, emb1), (2, emb2)):
        stem = f"rectified_clip_{index}"
        np.save(folder / f"{stem}_emb.npy", emb)
        np.save(folder / f"{stem}_ts.npy", synthetic.timestamps(len(emb)))
        meta = {"model": "synthetic", "random_init": True, "window": 16, "stride_s": 1.0, "fps": FPS}
        meta["n_frames"] = (len(emb) + 2) * FPS
        (folder / f"{stem}_emb.json").write_text(json.dumps(meta))
        write_clip(folder / f"{stem}.mp4", len(emb) + 2)
    assert analyze_cli.main([str(folder), "--joint"]) == 0
    # the analysis lists cycles; a record without them (written before cycle tables existed) shows no table
    path = folder / "rectified_clip_2_analysis.json"
    record = json.loads(path.read_text())
    assert record["cycles"], "the second clip is periodic too"
    record.pop("cycles")
    record.pop("cycle_duration_s", None)
    path.write_text(json.dumps(record))
    assert report.main([str(folder)]) == 0
    return folder


def test_report_files(worker):
    data = page_data((worker / "report.html").read_text())
    assert [c["name"] for c in data["clips"]] == ["rectified_clip_1", "rectified_clip_2"]
    clip1 = data["clips"][0]
    assert len(clip1["anomalies"]) == 2 and clip1["video"] == "rectified_clip_1.mp4"
    assert clip1["ssm"]["size"] == N1 and "cycles" in clip1 and "cycles" not in data["clips"][1]
    assert data["joint"]["matches"], "the shifted copy of the cycle should match across clips"
    for still in [*(a["thumb"] for a in clip1["anomalies"]), clip1["poster"], data["clips"][1]["poster"]]:
        assert (worker / still).read_bytes()[:2] == b"\xff\xd8"  # a JPEG
    assert not list(worker.rglob("*.partial*"))


def page_data(page: str) -> dict:
    block = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    return json.loads(block.group(1))


# ----------------------------------------------------------------------------------------------------------
# In Chromium


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright  # a missing package fails here, as it should

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    assert executable, "no chromium on PATH: apt-get install -y chromium (the report tests need a browser)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def page(browser, worker):
    tab = browser.new_page(viewport={"width": 1280, "height": 900})
    tab.errors = []
    tab.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: tab.errors.append(str(e)))
    tab.goto((worker / "report.html").as_uri())
    tab.wait_for_function("document.documentElement.dataset.ready === '1'")
    tab.data = page_data((worker / "report.html").read_text())
    yield tab
    tab.close()


def wait_time(page, selector: str, expected: float, tolerance: float = 0.5) -> None:
    """Wait until the video's currentTime is within tolerance of expected (seeking is asynchronous)."""
    page.wait_for_function(
        "([sel, t, tol]) => { const v = document.querySelector(sel);"
        " return v && Math.abs(v.currentTime - t) < tol; }",
        arg=[selector, expected, tolerance],
        timeout=5000,
    )


VIDEO_1 = "#clip-0 video"


def test_page_loads_without_console_errors(page):
    assert page.locator("section.clip").count() == 2
    page.wait_for_selector("#clip-0 .clip-body")
    assert page.errors == []


def test_clicking_the_first_anomaly_seeks_to_its_start(page):
    first = page.data["clips"][0]["anomalies"][0]
    page.locator("#clip-0 button.anomaly").first.click()
    wait_time(page, VIDEO_1, first["start_s"])
    assert page.locator("#clip-0 button.anomaly").first.get_attribute("aria-current") == "true"
    # why it was flagged, in words: the planted activities are unlike anything else in the clips
    assert first["kind"] in {"novel", "rare", "novel+rare"}
    words = {"novel": "unlike anything else", "rare": "seen in few places"}
    for kind in first["kind"].split("+"):
        assert words[kind] in page.locator("#clip-0 button.anomaly").first.inner_text()


def test_n_and_p_move_between_anomalies(page):
    first, second = page.data["clips"][0]["anomalies"]
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.evaluate("window.egocleanReport.seekClip(window.egocleanReport.clips[0], 1, {play: false})")
    page.keyboard.press("n")
    wait_time(page, VIDEO_1, first["start_s"])
    page.keyboard.press("n")
    wait_time(page, VIDEO_1, second["start_s"])
    page.keyboard.press("p")
    wait_time(page, VIDEO_1, first["start_s"])


def test_clicking_a_similarity_cell_seeks_to_its_row(page):
    ssm = page.data["clips"][0]["ssm"]
    canvas = page.locator("#clip-0 canvas.over")
    box = canvas.bounding_box()
    row, column = 70, 10
    canvas.click(
        position={
            "x": (column + 0.5) / ssm["size"] * box["width"],
            "y": (row + 0.5) / ssm["size"] * box["height"],
        }
    )
    wait_time(page, VIDEO_1, ssm["t"][row])
    wait_time(page, "#clip-0 figure.compare video", ssm["t"][column])  # time j, beside it
    # the overlay (play-head cross, chosen cell) covers the whole square, not a default 300 x 150 canvas
    assert canvas.evaluate("c => c.width === c.height && c.width >= c.clientWidth") is True


def test_timeline_arrow_keys_step_between_marks(page):
    clip = page.data["clips"][0]
    marks = sorted(
        {*clip["boundaries_s"], *clip["change_points_s"], *(a["start_s"] for a in clip["anomalies"])}
        | {r["start_s"] for r in clip["repeats"]}
    )
    page.evaluate("document.querySelector('#clip-0 video').pause()")  # earlier clicks played it
    page.evaluate("window.egocleanReport.seekClip(window.egocleanReport.clips[0], 0.5, {play: false})")
    page.locator("#clip-0 .timeline svg").focus()
    page.keyboard.press("ArrowRight")
    wait_time(page, VIDEO_1, min(t for t in marks if t > 0.75))
    page.keyboard.press("ArrowRight")
    wait_time(page, VIDEO_1, sorted(t for t in marks if t > 0.75)[1])
    page.keyboard.press("ArrowLeft")
    wait_time(page, VIDEO_1, min(t for t in marks if t > 0.75))


def test_timeline_anomaly_click_seeks(page):
    second = page.data["clips"][0]["anomalies"][1]
    svg = page.locator("#clip-0 .timeline svg")
    box = svg.bounding_box()
    duration = page.data["clips"][0]["duration_s"]
    middle = (second["start_s"] + second["end_s"]) / 2
    svg.click(position={"x": middle / duration * box["width"], "y": 3 * 22 + 9})  # the anomalies row
    wait_time(page, VIDEO_1, second["start_s"])


def test_cycle_table_opens_on_demand_and_sorts_by_clicked_header(page):
    assert page.locator("#clip-0 table.cycles").count() == 0  # built only when opened: scrolling stays fast
    page.locator("#clip-0 details.cycle-table summary").click()
    table = page.locator("#clip-0 table.cycles")
    table.locator("th button", has_text="deviation").click()
    values = [float(t) for t in table.locator("tbody tr td:nth-child(4)").all_inner_texts()]
    assert values == sorted(values) and len(values) == len(page.data["clips"][0]["cycles"])
    table.locator("th button", has_text="deviation").click()
    values = [float(t) for t in table.locator("tbody tr td:nth-child(4)").all_inner_texts()]
    assert values == sorted(values, reverse=True)
    assert page.locator("#clip-1 details.cycle-table").count() == 0  # a clip without cycles has none


def test_every_clips_anomalies_in_one_table_sort_by_duration_and_play(page):
    spans = [(c["name"], a) for c in page.data["clips"] for a in c["anomalies"]]
    table = page.locator("#joint table.worker-anomalies")
    assert table.locator("tbody tr").count() == len(spans) >= 2
    table.locator("th button", has_text="duration").click()
    table.locator("th button", has_text="duration").click()  # longest first
    durations = [float(t) for t in table.locator("tbody tr td:nth-child(2)").all_inner_texts()]
    assert durations == sorted((a["end_s"] - a["start_s"] for _, a in spans), reverse=True)
    longest = max(spans, key=lambda s: s[1]["end_s"] - s[1]["start_s"])
    assert table.locator("tbody tr").first.inner_text().startswith(longest[0])
    page.evaluate("document.querySelectorAll('video').forEach(v => v.pause())")
    table.locator("tbody tr button").first.click()
    clip = next(i for i, c in enumerate(page.data["clips"]) if c["name"] == longest[0])
    wait_time(page, f"#clip-{clip} video", longest[1]["start_s"])


def test_clicking_a_joint_match_seeks_both_spans(page):
    match = page.data["joint"]["matches"][-1]
    page.locator("button.match").last.click()
    wait_time(page, "#match-a", match["start_a_s"])
    wait_time(page, "#match-b", match["start_b_s"])
    assert page.errors == []


def test_hostile_names_stay_text_in_the_browser(browser, tmp_path):
    folder, record = hostile_folder(tmp_path)
    record["anomalies"] = [{"start_s": 2.0, "end_s": 5.0, "score": 9.0}]
    tab = browser.new_page()
    problems: list[str] = []
    tab.on("dialog", lambda d: (problems.append("dialog: " + d.message), d.dismiss()))
    tab.on("pageerror", lambda e: problems.append(str(e)))
    tab.goto(report.write_report(folder, [record]).as_uri())
    tab.wait_for_function("document.documentElement.dataset.ready === '1'")
    tab.wait_for_selector("#clip-0 .clip-body")
    assert tab.locator("#clip-0 h2").inner_text() == "clip_<img src=x onerror=alert(1)>"
    assert tab.locator("img[src=x]").count() == 0
    tab.keyboard.press("n")  # no video to seek: nothing breaks
    tab.wait_for_timeout(100)
    tab.close()
    assert problems == []
