"""Phase 1 speed: this project's rectifier against ffmpeg's v360 filter and a plain transcode, in one run,
on flat and on detailed footage.

    python bench/bench_rectify.py [--seconds 10] [--repeats 3] [--baseline DIR] [--write FILE]

Three 1920x1080 30 fps H.265 fisheye clips (bench/footage.py, cached in bench/out/): the flat sample scene,
ffmpeg's testsrc2 pattern and real footage with sensor noise, each seen through the real lens. For each
clip, interleaved `--repeats` times (median reported), with the same encoder settings (libx264, veryfast,
CRF 18, yuv420p), each pipeline runs in its own process:
  - egoclean: decode -> yuv420p plane remap -> encode, three overlapped threads (fisheye.rectify)
  - egoclean from another checkout (`--baseline DIR`, e.g. `git archive <commit> | tar -x -C DIR`)
  - ffmpeg v360: ffmpeg's fisheye->flat filter at the lens's true field of view + libx264
  - ffmpeg transcode: decode + libx264 with no rectification: the ceiling for decode-rectify-encode
Each run reports wall time, CPU time (user + sys of the child) and the cores it kept busy (CPU / wall):
CPU time is what the shared 2-core build machine distorts least. Then the CPU time per frame of each stage
alone (decode, remap, encode), whose sum bounds what two cores can do, and the egoclean child's peak
memory (VmHWM) for two clip lengths.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from footage import CLIPS, FPS, H, W

from egoclean.video import VideoWriter, decode, plane_arrays, probe
from fisheye.camera import kb_unproject, rectified_camera
from fisheye.rectify import PlaneRemapper
from fisheye.sample import EGOCENTRIC_10K_CALIBRATION as CALIB

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).resolve().parent / "out"
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
X264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"]
# A child that rectifies argv[2] into argv[3] with the code under argv[1] (and argv[4] codec threads, when
# given) and prints its peak memory (VmHWM, kB). Not ru_maxrss: Linux carries that across exec from the
# forking parent.
RECTIFY_CHILD = (
    "import sys; sys.path.insert(0, sys.argv[1]);"
    "from fisheye.camera import rectified_camera;"
    "from fisheye.rectify import rectify_video, EncoderSettings;"
    "from fisheye.sample import EGOCENTRIC_10K_CALIBRATION as C;"
    "rectify_video(sys.argv[2], sys.argv[3], C, rectified_camera(C, 1920, 1080),"
    " EncoderSettings('h264', 18, 'veryfast'), **({'threads': int(sys.argv[4])} if sys.argv[4:] else {}));"
    "print([line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')][0])"
)


@dataclass(frozen=True)
class Run:
    wall_s: float
    cpu_s: float  # user + sys of the child and all its threads
    peak_mb: float | None  # the egoclean child's VmHWM

    @property
    def cores(self) -> float:
        return self.cpu_s / self.wall_s


def run_children(cmds: list[list[str]]) -> Run:
    """Run `cmds` at once, each to completion: the wall time, their CPU time together (RUSAGE_CHILDREN grows
    by exactly these children) and the largest peak memory any of them printed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    quiet = {"stdout": subprocess.PIPE, "stderr": subprocess.DEVNULL, "text": True}
    procs = [subprocess.Popen(cmd, **quiet) for cmd in cmds]
    outs = [proc.communicate()[0].strip() for proc in procs]
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    for cmd, proc in zip(cmds, procs, strict=True):
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, cmd)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    peaks = [int(out) / 1024 for out in outs if out.isdigit()]
    return Run(wall, cpu, max(peaks) if peaks else None)


def run_child(cmd: list[str]) -> Run:
    """Run `cmd` to completion: its wall time, CPU time and peak memory."""
    return run_children([cmd])


def v360_fov() -> tuple[float, float]:
    """The source frame's horizontal/vertical field of view under the real lens (edge midpoints)."""
    rays = kb_unproject(np.array([[0, CALIB.cy], [W - 1, CALIB.cy], [CALIB.cx, 0], [CALIB.cx, H - 1]]), CALIB)
    angles = np.degrees(np.arccos(rays[:, 2]))
    return float(angles[0] + angles[1]), float(angles[2] + angles[3])


def stage_cpu_ms(clip: Path, n: int = 150) -> dict[str, float]:
    """CPU milliseconds per frame of each stage run alone (process time, so all threads count), on the
    same frames the pipeline moves: decoder frames in, encoder frames out, no array copies."""
    camera = rectified_camera(CALIB, W, H)
    t0 = time.process_time()
    frames = [frame for (_, _, frame), _ in zip(decode(clip), range(n), strict=False)]
    decode_s = (time.process_time() - t0) / len(frames)
    remap = PlaneRemapper(CALIB, camera)
    with VideoWriter(OUT / "stage_encode.mp4", W, H, Fraction(FPS), Fraction(1, FPS)) as writer:
        outputs = [writer.new_frame() for _ in frames]
        t0 = time.process_time()
        for frame, out in zip(frames, outputs, strict=True):
            remap.remap_planes(plane_arrays(frame), plane_arrays(out))
        remap_s = (time.process_time() - t0) / len(frames)
        t0 = time.process_time()
        for i, out in enumerate(outputs):
            writer.write(out, i)
        writer.close()
        encode_s = (time.process_time() - t0) / len(frames)
    return {"decode": decode_s * 1e3, "remap": remap_s * 1e3, "encode": encode_s * 1e3}


def pipelines(clip: Path, baseline: Path | None) -> dict[str, list[str]]:
    """The commands timed on `clip`, by name."""
    camera = rectified_camera(CALIB, W, H)
    ih, iv = v360_fov()
    v360 = (
        f"v360=input=fisheye:output=flat:ih_fov={ih:.2f}:iv_fov={iv:.2f}:"
        f"h_fov={camera.hfov_deg:.2f}:v_fov={camera.vfov_deg:.2f}:interp=linear"
    )
    child = [sys.executable, "-c", RECTIFY_CHILD]
    cmds = {
        "egoclean rectify (decode + remap + encode)": [*child, str(ROOT), str(clip), str(OUT / "ours.mp4")]
    }
    if baseline:
        cmds[f"egoclean at --baseline {baseline}"] = [
            *child,
            str(baseline),
            str(clip),
            str(OUT / "base.mp4"),
        ]
    ffmpeg = [FFMPEG, "-v", "error", "-y", "-i", str(clip)]
    cmds["ffmpeg v360 fisheye->flat (true FOV) + libx264"] = [
        *ffmpeg,
        "-vf",
        v360,
        *X264,
        str(OUT / "v360.mp4"),
    ]
    cmds["ffmpeg transcode, no rectification (ceiling)"] = [*ffmpeg, *X264, str(OUT / "plain.mp4")]
    return cmds


def table(
    content: str, clip: Path, runs: dict[str, list[Run]], stages: dict[str, float], repeats: int
) -> str:
    n = probe(clip).n_frames
    ours_name = next(iter(runs))
    fps = {name: n / statistics.median(r.wall_s for r in rs) for name, rs in runs.items()}
    lines = [
        f"#### {content}: {n} frames, median of {repeats}",
        "",
        "| pipeline | fps | runs (s) | CPU / frame | cores busy | egoclean vs this |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for name, rs in runs.items():
        walls = ", ".join(f"{r.wall_s:.1f}" for r in rs)
        cpu_ms = statistics.median(r.cpu_s for r in rs) / n * 1e3
        cores = statistics.median(r.cores for r in rs)
        ratio = fps[ours_name] / fps[name]
        lines.append(f"| {name} | {fps[name]:.1f} | {walls} | {cpu_ms:.1f} ms | {cores:.2f} | {ratio:.2f}x |")
    total = sum(stages.values())
    bound = (os.cpu_count() or 1) * 1000 / total
    peaks = [r.peak_mb for r in runs[ours_name] if r.peak_mb]
    lines += [
        "",
        "CPU per frame of each stage alone: "
        + ", ".join(f"{k} {v:.1f} ms" for k, v in stages.items())
        + f"; sum {total:.1f} ms -> at most {bound:.1f} fps on {os.cpu_count()} cores"
        f" (egoclean reaches {fps[ours_name] / bound:.0%}). Peak memory {max(peaks):.0f} MB.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--contents", nargs="+", default=list(CLIPS), choices=list(CLIPS))
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to time alongside")
    parser.add_argument("--write", type=Path, default=None, help="append the tables to this markdown file")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    clips = {c: CLIPS[c](OUT / f"{c}_{W}x{H}_{args.seconds:g}s.mp4", args.seconds) for c in args.contents}
    cmds = {c: pipelines(clip, args.baseline) for c, clip in clips.items()}
    runs: dict[str, dict[str, list[Run]]] = {c: {name: [] for name in cmds[c]} for c in clips}
    stage_runs: dict[str, list[dict[str, float]]] = {c: [] for c in clips}
    loads = [os.getloadavg()[0]]
    for _ in range(args.repeats):  # interleaved, so load changes on this shared machine hit all alike
        for c, clip in clips.items():
            for name, cmd in cmds[c].items():
                runs[c][name].append(run_child(cmd))
                print(c, name, runs[c][name][-1], flush=True)
            stage_runs[c].append(stage_cpu_ms(clip))
            loads.append(os.getloadavg()[0])
    longer = CLIPS[args.contents[-1]](
        OUT / f"{args.contents[-1]}_{W}x{H}_{2 * args.seconds:g}s.mp4", 2 * args.seconds
    )
    long_run = run_child([sys.executable, "-c", RECTIFY_CHILD, str(ROOT), str(longer), str(OUT / "long.mp4")])
    text = "\n".join(
        [
            f"### Rectify: {W}x{H} {FPS} fps H.265 fisheye, libx264 veryfast CRF 18, {os.cpu_count()} cores",
            "",
            f"Command: `{' '.join(['python bench/bench_rectify.py', *sys.argv[1:]])}`"
            + f"; 1-minute load average {min(loads):.1f} to {max(loads):.1f} during the run.",
            "",
            *(
                table(
                    c,
                    clip,
                    runs[c],
                    {k: statistics.median(r[k] for r in stage_runs[c]) for k in stage_runs[c][0]},
                    args.repeats,
                )
                for c, clip in clips.items()
            ),
            f"Peak memory of egoclean on the {2 * args.seconds:g} s {args.contents[-1]} clip: "
            f"{long_run.peak_mb:.0f} MB ({long_run.wall_s:.1f} s, {long_run.cores:.2f} cores busy).",
            "",
        ]
    )
    print(text)
    if args.write:
        with open(args.write, "a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
