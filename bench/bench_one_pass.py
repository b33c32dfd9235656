"""Both phases on one clip, on the CPU: the one-pass path (`run.sh all`) against the two passes run one after
the other (`run.sh 1` then `run.sh 2`), in one run.

    python bench/bench_one_pass.py [--seconds 10] [--repeats 3] [--contents flat real] [--baseline DIR]
                                   [--write FILE]

Each pipeline runs in its own process on a 1920x1080 30 fps H.265 fisheye clip (bench/footage.py, cached in
bench/out/), interleaved `--repeats` times (median reported):
  - two passes: fisheye.rectify.rectify_video (decode -> remap -> libx264), then VJEPA.encode.encode_clip on
    the mp4 it wrote (H.264 decode -> rgb24 -> resize/crop -> model)
  - one pass:   rectify_video handing each rectified frame to VJEPA.encode.StreamingClipEncoder (rgb24 ->
    resize/crop -> model in a fourth thread) before encoding it; no H.264 decode
  - phase 1 alone: rectify_video and nothing else, the ceiling of the one pass (which does all of it)
  - with --baseline DIR (another checkout, e.g. `git archive <commit> | tar -x -C DIR`): its two passes and
    its one pass too, in the same interleaved run
Times are the child's own from after its imports and model load (the same in both, and paid once per
worker, not per clip) to its end. Same settings in both: libx264 veryfast CRF 18; windows of 64 frames at
a 1 s stride, batch 8, centre crop.
The model is the tiny random-init V-JEPA 2 stand-in (VJEPA/tiny_model.py: 32 px crops, 2 layers), so the
model's own time is small and the numbers are the data path's: ViT-L does not run on 2 CPU cores (~91 s a
window); on a GPU node the model runs beside this on the GPU (bench/gpu_check.sh).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_rectify import OUT, ROOT, Run
from footage import CLIPS, H, W

from egoclean.video import probe
from VJEPA.tiny_model import save_tiny_model

CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from fisheye.camera import rectified_camera
from fisheye.rectify import EncoderSettings, rectify_video
from fisheye.sample import EGOCENTRIC_10K_CALIBRATION as C
from egoclean.video import probe
from VJEPA.embedder import load_encoder
from VJEPA.encode import StreamingClipEncoder, encode_clip
from VJEPA.settings import EncodeSettings

mode, src, out, model = sys.argv[2], sys.argv[3], Path(sys.argv[4]), sys.argv[5]
camera = rectified_camera(C, 1920, 1080)
x264 = EncoderSettings("h264", 18, "veryfast")
settings = EncodeSettings(model=model, device="cpu", window=64, stride_s=1.0, batch_size=8, force=True)
encoder = load_encoder(model, "cpu", "float32")
import resource, time
def cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
wall0, cpu0 = time.perf_counter(), cpu_s()  # start-up (imports, model load) is the same in both: not timed
if mode == "rectify":
    rectify_video(src, out, C, camera, x264)
elif mode == "two":
    rectify_video(src, out, C, camera, x264)
    encode_clip(out, encoder, settings)
else:
    info = probe(src)
    stream = StreamingClipEncoder(encoder, settings, info.fps, info.time_base, info.n_frames)
    rectify_video(src, out, C, camera, x264, on_frame=stream.push)
    stream.finish(out)
peak_kb = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")][0]
print(time.perf_counter() - wall0, cpu_s() - cpu0, peak_kb)
"""

PIPELINES = {
    "two passes (rectify, then embed the mp4)": "two",
    "one pass (rectified frames to the model before encoding)": "one",
    "phase 1 alone (the ceiling: a one pass does all of it and more)": "rectify",
}


def run_child(cmd: list[str]) -> Run:
    """The child's own processing time: wall and CPU from after its start-up to its end, and its peak."""
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()
    wall_s, cpu_s, peak_kb = float(out[-3]), float(out[-2]), int(out[-1])
    return Run(wall_s, cpu_s, peak_kb / 1024)


def phase2_alone_cpu_ms(mp4: Path, model: str) -> dict[str, float]:
    """CPU ms per frame of phase 2's part alone, in this process: embedding the mp4 (decode included)
    against the one-pass consumer fed frames already decoded (what the rectifier hands it)."""
    import resource

    from egoclean.video import decode
    from VJEPA.embedder import load_encoder
    from VJEPA.encode import StreamingClipEncoder, encode_clip
    from VJEPA.settings import EncodeSettings

    def cpu_s() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    encoder = load_encoder(model, "cpu", "float32")
    settings = EncodeSettings(model=model, device="cpu", window=64, stride_s=1.0, batch_size=8, force=True)
    info = probe(mp4)
    start = cpu_s()
    encode_clip(mp4, encoder, settings, Path(tempfile.mkdtemp(prefix="emb_")))
    from_mp4 = (cpu_s() - start) / info.n_frames * 1e3
    frames = list(decode(mp4))  # the whole clip in memory: 300 frames of 1080p yuv420p = 0.9 GB
    stream = StreamingClipEncoder(encoder, settings, info.fps, info.time_base, len(frames))
    start = cpu_s()
    for item in frames:
        stream.push(*item)
    stream.finish(mp4, Path(tempfile.mkdtemp(prefix="emb_")))
    consumer = (cpu_s() - start) / len(frames) * 1e3
    return {"phase 2 from the mp4": from_mp4, "one-pass consumer": consumer}


def pipelines(baseline: Path | None) -> dict[str, tuple[str, Path]]:
    """Row name -> (child mode, checkout it runs from)."""
    rows = {name: (mode, ROOT) for name, mode in PIPELINES.items()}
    if baseline is not None:
        rows[f"two passes at --baseline {baseline}"] = ("two", baseline)
        rows[f"one pass at --baseline {baseline}"] = ("one", baseline)
    return rows


def table(
    content: str, n_frames: int, runs: dict[str, list[Run]], repeats: int, alone: dict[str, float]
) -> str:
    fps = {name: n_frames / statistics.median(r.wall_s for r in rs) for name, rs in runs.items()}
    two, one, alone_fps = (fps[name] for name in PIPELINES)
    lines = [
        f"#### {content}: {n_frames} frames, median of {repeats}",
        "",
        "| pipeline | fps | runs (s) | CPU / frame | cores busy | peak memory |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for name, rs in runs.items():
        walls = ", ".join(f"{r.wall_s:.1f}" for r in rs)
        cpu_ms = statistics.median(r.cpu_s for r in rs) / n_frames * 1e3
        cores = statistics.median(r.cores for r in rs)
        peak = max(r.peak_mb or 0 for r in rs)
        lines.append(
            f"| {name} | {fps[name]:.1f} | {walls} | {cpu_ms:.1f} ms | {cores:.2f} | {peak:.0f} MB |"
        )
    lines += [
        "",
        f"One pass is **{one / two:.2f}x** the two passes; phase 1 alone, {alone_fps / two:.2f}x, is as fast "
        "as a one pass can get. CPU per frame of phase 2's part alone: "
        + ", ".join(f"{k} {v:.1f} ms" for k, v in alone.items())
        + ".",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--contents", nargs="+", default=["flat", "real"], choices=list(CLIPS))
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to time alongside")
    parser.add_argument("--write", type=Path, default=None, help="append the tables to this markdown file")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    model = str(save_tiny_model(Path(tempfile.mkdtemp(prefix="tiny_vjepa2_")), seed=0))
    clips = {c: CLIPS[c](OUT / f"{c}_{W}x{H}_{args.seconds:g}s.mp4", args.seconds) for c in args.contents}
    rows = pipelines(args.baseline)
    runs: dict[str, dict[str, list[Run]]] = {c: {name: [] for name in rows} for c in clips}
    for _ in range(args.repeats):  # interleaved, so load changes on this shared machine hit both alike
        for c, clip in clips.items():
            for name, (mode, root) in rows.items():
                out = OUT / f"onepass_{c}_{mode}.mp4"
                runs[c][name].append(
                    run_child([sys.executable, "-c", CHILD, str(root), mode, str(clip), str(out), model])
                )
                print(c, name, runs[c][name][-1], flush=True)
    alone = {c: phase2_alone_cpu_ms(OUT / f"onepass_{c}_two.mp4", model) for c in clips}
    command = "python bench/bench_one_pass.py " + " ".join(sys.argv[1:])
    text = "\n".join(
        [f"`{command.strip()}`", ""]
        + [table(c, probe(clip).n_frames, runs[c], args.repeats, alone[c]) for c, clip in clips.items()]
    )
    print(text)
    if args.write:
        with args.write.open("a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
