"""How fast the report is for a big worker: 50 clips x 1,200 windows (20 minutes each) in Chromium.

    .venv/bin/python bench/bench_report.py [--clips 50] [--windows 1200] [--out bench/out/report]

Makes synthetic V-JEPA-sized embeddings (1,024-d, a 6 s cycle, one anomaly per clip), analyses them with
VJEPA.structure, writes the report with VJEPA.report (every clip links one short real H.264 clip, so
the stills are real decodes), then loads the page in the system Chromium and prints: the time to write
the report, the page size, the time until the page is interactive, and the time to scroll through every
clip (each one drawn as it comes into view).

Measured numbers: bench/RESULTS.md, "The report of a big worker".
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from egoclean.video import VideoWriter
from VJEPA import report, synthetic
from VJEPA.analyze import analysis_record
from VJEPA.structure import StructureParams, analyze


def write_video(path: Path, seconds: int, fps: int = 10) -> None:
    """A short moving test pattern (the page's speed does not depend on the video's length)."""
    with VideoWriter(path, 320, 180, rate=Fraction(fps), time_base=Fraction(1, fps)) as writer:
        for index in range(seconds * fps):
            y, x = np.mgrid[0:180, 0:320]
            rgb = np.stack([(x + index * 4) % 256, (y * 2 + index) % 256, (x - y) % 256], axis=-1)
            writer.write(rgb.astype(np.uint8), pts=index, pixel_format="rgb24")


def make_worker(folder: Path, n_clips: int, n_windows: int) -> list[dict]:
    folder.mkdir(parents=True, exist_ok=True)
    shared = folder / "shared_clip.mp4"
    if not shared.exists():
        write_video(shared, 20)
    params = StructureParams()
    records = []
    for index in range(1, n_clips + 1):
        stem = f"rectified_clip_{index}"
        emb = synthetic.periodic(n_windows, 1024, 6.0, 0.3, seed=index)
        emb = synthetic.with_anomaly(emb, (index * 97) % (n_windows - 20), 10, seed=index)
        ts = synthetic.timestamps(n_windows)
        np.save(folder / f"{stem}_emb.npy", emb)
        np.save(folder / f"{stem}_ts.npy", ts)
        video = folder / f"{stem}.mp4"
        if not video.exists():
            video.symlink_to(shared.name)
        meta = {"model": "synthetic", "random_init": True, "window": 64, "stride_s": 1.0, "fps": 30.0}
        meta["n_frames"] = (n_windows + 2) * 30
        record = analysis_record(analyze(emb, ts, params), folder / f"{stem}_emb.npy", params, meta)
        (folder / f"{stem}_analysis.json").write_text(json.dumps(record))
        records.append(record)
    # A joint record shaped like analyze.py's (a real joint analysis of 60,000 windows would take long):
    # ten matched spans between each pair of neighbouring clips.
    matches = [
        {
            "clip_a": f"rectified_clip_{a}",
            "clip_b": f"rectified_clip_{a + 1}",
            "start_a_s": s0,
            "end_a_s": s0 + 30.0,
            "start_b_s": s0 + 3.0,
            "end_b_s": s0 + 33.0,
            "similarity": 0.97,
        }
        for a in range(1, n_clips)
        for s0 in np.linspace(0, n_windows - 40, 10).round(1).tolist()
    ]
    (folder / "joint_analysis.json").write_text(json.dumps({"matches": matches, "match_threshold": 0.9}))
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=50)
    parser.add_argument("--windows", type=int, default=1200)
    parser.add_argument("--out", type=Path, default=Path("bench/out/report"))
    args = parser.parse_args()

    start = time.perf_counter()
    make_worker(args.out, args.clips, args.windows)
    print(f"synthetic worker + analysis: {time.perf_counter() - start:.1f} s")
    records, joint, _ = report.read_folder(args.out)
    for label in ("write_report (stills decoded)", "write_report (stills cached)"):
        start = time.perf_counter()
        page = report.write_report(args.out, records, joint)
        print(f"{label}: {time.perf_counter() - start:.2f} s")
    print(
        f"report.html: {page.stat().st_size / 1e6:.2f} MB for {len(records)} clips x {args.windows} windows"
    )

    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        for attempt in range(3):
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            tab.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
            start = time.perf_counter()
            tab.goto(page.resolve().as_uri())
            tab.wait_for_function("document.documentElement.dataset.ready === '1'")
            tab.wait_for_selector("#clip-0 .clip-body")
            ready = time.perf_counter() - start
            nav = tab.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0].toJSON())")
            nav = json.loads(nav)
            start = time.perf_counter()
            tab.evaluate(
                """async () => {
                  for (const s of document.querySelectorAll('section.clip')) {
                    s.scrollIntoView();
                    await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
                  }
                }"""
            )
            tab.wait_for_function(
                "document.querySelectorAll('.clip-body').length"
                " === document.querySelectorAll('section.clip').length"
            )
            scrolled = time.perf_counter() - start
            dom, loaded = nav["domContentLoadedEventEnd"], nav["loadEventEnd"]
            print(
                f"load {attempt + 1}: interactive (first clip drawn) {ready * 1000:.0f} ms "
                f"(DOMContentLoaded {dom:.0f} ms, load {loaded:.0f} ms); scroll through all "
                f"{len(records)} clips {scrolled * 1000:.0f} ms; console errors: {len(errors)}"
            )
            tab.close()
        browser.close()


if __name__ == "__main__":
    main()
