"""Phase 1 speed: this project's rectifier against ffmpeg's v360 filter and a plain transcode, in one run.

    python bench/bench_rectify.py [--seconds 20] [--repeats 3] [--write bench/RESULTS.md]

Renders a 1920x1080 30 fps H.265 fisheye clip of the sample scene (cached in bench/out/), then times, each
`--repeats` times (median reported), with the same encoder settings (libx264, veryfast, CRF 18, yuv420p):
  - egoclean: decode -> yuv420p plane remap -> encode, three overlapped threads (fisheye.rectify)
  - ffmpeg v360: ffmpeg's fisheye->flat filter (equidistant lens model, no k1..k4) + libx264
  - ffmpeg transcode: decode + libx264 with no rectification: the ceiling for decode-rectify-encode
  - pyav transcode: the same ceiling through this project's own reader and writer
and the CPU time per frame of each stage alone (decode, remap, encode), whose sum bounds what two
cores can do.
Peak memory (max RSS) of the egoclean run is measured in a child process for two clip lengths.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import imageio_ffmpeg
import numpy as np

from egoclean.video import VideoWriter, iter_frames, probe
from fisheye.camera import kb_unproject, rectified_camera
from fisheye.rectify import EncoderSettings, PlaneRemapper, rectify_video
from fisheye.sample import EGOCENTRIC_10K_CALIBRATION as CALIB
from fisheye.sample import SampleRenderer, moving_boxes

W, H, FPS = 1920, 1080, 30
OUT = Path(__file__).resolve().parent / "out"
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
ENC = EncoderSettings("h264", 18, "veryfast")


def make_clip(path: Path, seconds: float) -> Path:
    if path.is_file() and probe(path).n_frames == round(seconds * FPS):
        return path
    renderer = SampleRenderer(W, H, supersample=1)
    with VideoWriter(
        path, W, H, Fraction(FPS), Fraction(1, FPS), codec="h265", crf=22, preset="ultrafast"
    ) as w:
        for i in range(round(seconds * FPS)):
            w.write(renderer.render(moving_boxes(i / FPS, 6.0, (8.0, 11.0))), i, pixel_format="rgb24")
    return path


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-v", "error", "-y", *args], check=True)


def v360_fov() -> tuple[float, float]:
    """The source frame's horizontal/vertical field of view under the real lens (edge midpoints)."""
    rays = kb_unproject(np.array([[0, CALIB.cy], [W - 1, CALIB.cy], [CALIB.cx, 0], [CALIB.cx, H - 1]]), CALIB)
    angles = np.degrees(np.arccos(rays[:, 2]))
    return float(angles[0] + angles[1]), float(angles[2] + angles[3])


def stage_cpu_ms(clip: Path, n: int = 150) -> dict[str, float]:
    """CPU milliseconds per frame of each stage run alone (process time, so all threads count)."""
    camera = rectified_camera(CALIB, W, H)
    t0 = time.process_time()
    frames = [f.data for f, _ in zip(iter_frames(clip, "yuv420p"), range(n), strict=False)]
    decode = (time.process_time() - t0) / len(frames)
    remap = PlaneRemapper(CALIB, camera)
    t0 = time.process_time()
    out = [remap(f) for f in frames]
    remap_s = (time.process_time() - t0) / len(frames)
    t0 = time.process_time()
    with VideoWriter(
        OUT / "stage_encode.mp4", W, H, Fraction(FPS), Fraction(1, FPS), "h264", 18, "veryfast"
    ) as w:
        for i, f in enumerate(out):
            w.write(f, i)
    encode = (time.process_time() - t0) / len(frames)
    return {"decode": decode * 1e3, "remap": remap_s * 1e3, "encode": encode * 1e3}


def peak_rss_mb(clip: Path) -> float:
    """Peak RSS (VmHWM, kB) of a child process that rectifies `clip`. Not ru_maxrss: Linux carries that
    across exec from the forking parent, whose 1080p rendering would count."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from fisheye.camera import rectified_camera;"
        "from fisheye.rectify import rectify_video, EncoderSettings;"
        "from fisheye.sample import EGOCENTRIC_10K_CALIBRATION as C;"
        "rectify_video(sys.argv[2], sys.argv[3], C, rectified_camera(C, 1920, 1080), EncoderSettings());"
        "print([line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')][0])"
    )
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-c", code, root, str(clip), str(OUT / "rss.mp4")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(out.strip()) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", type=Path, default=None, help="append the table to this markdown file")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    clip = make_clip(OUT / f"fisheye_{W}x{H}_{args.seconds:g}s.mp4", args.seconds)
    n = probe(clip).n_frames
    camera = rectified_camera(CALIB, W, H)
    ih, iv = v360_fov()
    v360 = (
        f"v360=input=fisheye:output=flat:ih_fov={ih:.2f}:iv_fov={iv:.2f}:"
        f"h_fov={camera.hfov_deg:.2f}:v_fov={camera.vfov_deg:.2f}:interp=linear"
    )
    x264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"]

    def one_thread(out: Path, remap: PlaneRemapper | None) -> None:
        """Decode, (remap,) encode stage after stage in one Python thread (each stage may still use its
        own threads): without remap, our reader/writer's ceiling; with it, what overlapping buys."""
        info = probe(clip)
        with VideoWriter(out, W, H, info.rate, info.time_base, "h264", 18, "veryfast") as w:
            for f in iter_frames(clip, "yuv420p"):
                w.write(remap(f.data) if remap else f.data, f.pts)

    runs = {
        "egoclean rectify (decode + remap + encode)": lambda: rectify_video(
            clip, OUT / "ours.mp4", CALIB, camera, ENC
        ),
        "egoclean stages one after another, no pipeline": lambda: one_thread(
            OUT / "seq.mp4", PlaneRemapper(CALIB, camera)
        ),
        "ffmpeg v360 fisheye->flat + libx264": lambda: ffmpeg(
            "-i", str(clip), "-vf", v360, *x264, str(OUT / "v360.mp4")
        ),
        "ffmpeg transcode, no rectification (ceiling)": lambda: ffmpeg(
            "-i", str(clip), *x264, str(OUT / "plain.mp4")
        ),
        "PyAV transcode through our reader/writer, no remap": lambda: one_thread(OUT / "pyav.mp4", None),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    stage_runs: list[dict[str, float]] = []
    for _ in range(args.repeats):  # interleaved, so load changes on this shared machine hit all alike
        for name, fn in runs.items():
            seconds[name].append(timed(fn))
        stage_runs.append(stage_cpu_ms(clip))
    fps = {name: n / statistics.median(s) for name, s in seconds.items()}
    stages = {k: statistics.median(r[k] for r in stage_runs) for k in stage_runs[0]}
    bound_fps = (os.cpu_count() or 1) * 1000 / sum(stages.values())
    ours = fps["egoclean rectify (decode + remap + encode)"]
    ceiling = max(
        fps["ffmpeg transcode, no rectification (ceiling)"],
        fps["PyAV transcode through our reader/writer, no remap"],
    )
    short = make_clip(OUT / "fisheye_1920x1080_10s.mp4", 10.0)
    rss = {"10 s": peak_rss_mb(short), f"{args.seconds:g} s": peak_rss_mb(clip)}

    lines = [
        f"### Rectify: {W}x{H} {FPS} fps H.265 fisheye, {n} frames, libx264 veryfast CRF 18, "
        f"{os.cpu_count()} cores, median of {args.repeats}",
        "",
        f"Command: `python bench/bench_rectify.py --seconds {args.seconds:g} --repeats {args.repeats}`",
        "",
        "| pipeline | fps (median) | runs (s) | vs ceiling | egoclean vs this |",
        "| --- | ---: | --- | ---: | ---: |",
    ]
    for name, value in fps.items():
        runs_s = ", ".join(f"{s:.1f}" for s in seconds[name])
        lines.append(f"| {name} | {value:.1f} | {runs_s} | {value / ceiling:.2f}x | {ours / value:.2f}x |")
    lines += [
        "",
        f"CPU time per frame of each stage alone (all threads, median of {args.repeats}): "
        + ", ".join(f"{k} {v:.1f} ms" for k, v in stages.items())
        + f"; sum {sum(stages.values()):.1f} ms -> bound {bound_fps:.1f} fps on {os.cpu_count()} cores. "
        f"egoclean reaches {ours / bound_fps:.0%} of that bound.",
        "",
        "Peak memory (max RSS) of the egoclean rectifier: "
        + ", ".join(f"{k} clip {v:.0f} MB" for k, v in rss.items()),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        with open(args.write, "a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
