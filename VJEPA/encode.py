"""Phase 2a: embed every rectified clip with V-JEPA 2, one embedding per sliding window.

    python VJEPA/encode.py                         # every clip in data/factory_001/
    python VJEPA/encode.py clip.mp4 --crop three   # one clip, three crops per window

For each clip X.mp4 it writes, beside the clip (or under --out):
    X_emb.npy   float32 [N, D]  mean of all patch tokens of each window (D = 1024 for ViT-L)
    X_ts.npy    float64 [N]     each window's start time in seconds (its first frame's own timestamp)
    X_emb.json  the settings, model and clip facts that produced them

Frames are decoded once and preprocessed once; whole windows are batched for the model. A clip whose
outputs exist and match the current settings is skipped (--force recomputes).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as `python VJEPA/encode.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from tqdm import tqdm

from egoclean.config import HelpFormatter
from egoclean.errors import EgoCleanError, InputError, VideoError
from egoclean.files import is_partial, save_npy, write_json
from egoclean.video import iter_frames, prefetch, probe
from VJEPA.embedder import Encoder, embed_frames, load_encoder, model_description
from VJEPA.preprocess import CROP_MODES
from VJEPA.windows import dropped_tail_frames, span_frames, stride_frames_for, window_count

# ----------------------------------------------------------------------------------------------------------
# Settings (every one is a command-line option of the same name)


@dataclass
class Settings:
    inputs: list[str] = field(default_factory=lambda: ["data/factory_001"])  # clips or folders of *.mp4
    model: str = "facebook/vjepa2-vitl-fpc64-256"  # Hub id or local folder (save_pretrained layout)
    device: str = "auto"  # cuda, then mps, then cpu
    dtype: str = "auto"  # float16 on CUDA, float32 elsewhere
    batch_size: int = 8  # windows per model call
    window: int = 64  # frames per window (even: the model embeds pairs of frames)
    stride_s: float = 1.0  # seconds between window starts; in frames: round(stride_s * fps)
    frame_step: int = 1  # take every frame_step-th frame inside a window (span = (window-1)*step + 1)
    crop: str = "center"  # "center": processor's centre crop; "three": left/centre/right crops, averaged
    out: str | None = None  # output folder; default: beside each clip
    force: bool = False  # recompute even when outputs match the settings


# The settings that decide the numbers in the outputs: a clip is skipped only if its JSON matches them.
RESUME_KEYS = (
    "model",
    "dtype",
    "window",
    "frame_step",
    "stride_frames",
    "crop",
    "source_size",
    "source_mtime_ns",
)


@dataclass(frozen=True)
class EncodeResult:
    video_path: Path
    emb_path: Path
    ts_path: Path
    json_path: Path
    n_windows: int
    skipped: bool  # outputs already matched the settings


def output_paths(video_path: Path, out_dir: Path | None) -> tuple[Path, Path, Path]:
    folder = out_dir if out_dir is not None else video_path.parent
    stem = video_path.stem
    return folder / f"{stem}_emb.npy", folder / f"{stem}_ts.npy", folder / f"{stem}_emb.json"


def outputs_match(paths: tuple[Path, Path, Path], expected: dict[str, object]) -> bool:
    if not all(p.is_file() for p in paths):
        return False
    try:
        written = json.loads(paths[2].read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return all(written.get(key) == expected[key] for key in RESUME_KEYS)


def encode_clip(
    video_path: str | Path,
    encoder: Encoder,
    settings: Settings,
    out_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EncodeResult:
    """Embed one clip and write its three outputs; `progress(windows_done, n_windows)` after each batch.

    Raises VideoError for a missing, undecodable or too-short clip, OutputError if outputs cannot be
    written. Nothing appears under a final name unless all three outputs are complete.
    """
    video_path = Path(video_path)
    out_dir = Path(out_dir) if out_dir is not None else None
    info = probe(video_path)
    stride_frames = stride_frames_for(settings.stride_s, info.fps)
    span = span_frames(settings.window, settings.frame_step)
    paths = output_paths(video_path, out_dir)
    stat = video_path.stat()
    facts: dict[str, object] = {
        **model_description(encoder),
        "window": settings.window,
        "frame_step": settings.frame_step,
        "span_frames": span,
        "stride_s": settings.stride_s,
        "stride_frames": stride_frames,
        "crop": settings.crop,
        "fps": info.fps,
        "source": str(video_path),
        "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
    }
    if not settings.force and outputs_match(paths, facts):
        return EncodeResult(video_path, *paths, n_windows=len(np.load(paths[1])), skipped=True)
    if info.n_frames and info.n_frames < span:  # the container's count: fail before loading any frame
        raise VideoError(f"{video_path}: {info.n_frames} frames, shorter than one window of {span} frames")

    expected_windows = window_count(info.n_frames, settings.window, stride_frames, settings.frame_step)
    done = 0

    def on_batch(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, expected_windows)

    result = embed_frames(
        encoder,
        prefetch(iter_frames(video_path, pixel_format="rgb24")),  # decode in a thread
        settings.window,
        stride_frames,
        settings.frame_step,
        settings.crop,  # type: ignore[arg-type]
        settings.batch_size,
        progress=on_batch,
    )
    n_frames = result.stats.n_frames
    if len(result.embeddings) == 0:
        raise VideoError(f"{video_path}: {n_frames} frames, shorter than one window of {span} frames")
    facts |= {
        "n_frames": n_frames,
        "n_windows": len(result.embeddings),
        "dropped_tail_frames": dropped_tail_frames(
            n_frames, settings.window, stride_frames, settings.frame_step
        ),
        "embedding_dim": int(result.embeddings.shape[1]),
        "frame_width": result.stats.width,
        "frame_height": result.stats.height,
    }
    write_outputs(paths, result.embeddings.astype(np.float32), result.start_times_s.astype(np.float64), facts)
    return EncodeResult(video_path, *paths, n_windows=len(result.embeddings), skipped=False)


def write_outputs(paths: tuple[Path, Path, Path], emb: np.ndarray, ts: np.ndarray, facts: dict) -> None:
    """Write the arrays, then the JSON: each under a temporary name, renamed when complete. The JSON is
    what resume checks, so it goes last."""
    save_npy(paths[0], emb)
    save_npy(paths[1], ts)
    write_json(paths[2], facts)


def find_clips(inputs: list[str]) -> list[Path]:
    """Files as given; a folder means its *.mp4 files whose names do not contain `.partial.`."""
    clips: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.glob("*.mp4") if not is_partial(p))
            if not found:
                raise InputError(f"{item}: folder holds no .mp4 clips; run phase 1 first or pass clip paths")
            clips.extend(found)
        elif not item.exists() and item.suffix.lower() != ".mp4":
            raise InputError(
                f"{item}: no such folder; run phase 1 first (bash run.sh 1) or pass the rectified clips"
            )
        else:
            clips.append(item)  # a missing clip is reported when it is read, the others still run
    return clips


def check_settings(settings: Settings) -> None:
    if settings.window < 2 or settings.window % 2:
        raise InputError(
            f"--window {settings.window}: must be even and >= 2 (the model embeds pairs of frames)"
        )
    if settings.frame_step < 1 or settings.batch_size < 1 or settings.stride_s <= 0:
        raise InputError("--frame-step and --batch-size must be >= 1 and --stride-s > 0")
    if settings.crop not in CROP_MODES:
        raise InputError(f"--crop {settings.crop!r}: must be one of {', '.join(CROP_MODES)}")


def parse_args(argv: list[str] | None = None) -> Settings:
    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog="python VJEPA/encode.py",
        description="Embed rectified clips with V-JEPA 2: one mean-pooled embedding per sliding window, "
        "written as X_emb.npy (float32 [N, D]), X_ts.npy (window start times, s) and X_emb.json.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("inputs", nargs="*", default=defaults.inputs, help="clips, or folders of *.mp4 clips")
    parser.add_argument("--model", default=defaults.model, help="Hugging Face Hub id or local model folder")
    parser.add_argument("--device", default=defaults.device, help="auto = cuda, then mps, then cpu")
    parser.add_argument(
        "--dtype",
        default=defaults.dtype,
        choices=["auto", "bfloat16", "float16", "float32"],
        help="model dtype; auto = float16 on CUDA, float32 elsewhere",
    )
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="windows per model call")
    parser.add_argument("--window", type=int, default=defaults.window, help="frames per window (even)")
    parser.add_argument(
        "--stride-s",
        type=float,
        default=defaults.stride_s,
        help="seconds between window starts (rounded to frames)",
    )
    parser.add_argument(
        "--frame-step", type=int, default=defaults.frame_step, help="use every n-th frame inside a window"
    )
    parser.add_argument(
        "--crop",
        default=defaults.crop,
        choices=CROP_MODES,
        help="center: the processor's centre crop; three: left, centre and right crops, embeddings averaged",
    )
    parser.add_argument("--out", default=defaults.out, help="output folder (default: beside each clip)")
    parser.add_argument("--force", action="store_true", help="recompute even if outputs match the settings")
    args = parser.parse_args(argv)
    return Settings(**{name: getattr(args, name) for name in asdict(defaults)})


def main(argv: list[str] | None = None) -> int:
    try:
        settings = parse_args(argv)
        check_settings(settings)
        clips = find_clips(settings.inputs)
        encoder = load_encoder(settings.model, settings.device, settings.dtype)
    except EgoCleanError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    kind = "random-init test model" if encoder.random_init else "checkpoint"
    print(f"model {settings.model} ({kind}) on {encoder.device}, {str(encoder.dtype).removeprefix('torch.')}")

    n_failed = 0
    for clip in clips:
        bar = tqdm(desc=clip.name, unit="window", disable=None)

        def progress(done: int, total: int, bar: tqdm = bar) -> None:
            bar.total = max(total, done)
            bar.update(done - bar.n)

        try:
            result = encode_clip(clip, encoder, settings, settings.out, progress)
        except (EgoCleanError, ValueError) as err:
            bar.close()
            print(f"error: {err}", file=sys.stderr)
            n_failed += 1
            continue
        bar.close()
        if result.skipped:
            print(f"{clip}: outputs match the settings, skipped ({result.n_windows} windows; --force redoes)")
        else:
            facts = json.loads(result.json_path.read_text())
            print(
                f"{clip}: {result.n_windows} windows of {facts['window']} frames, from {facts['n_frames']}"
                f" ({facts['dropped_tail_frames']} tail frames dropped) -> {result.emb_path}"
            )
    if n_failed:
        if len(clips) > 1:
            print(
                f"error: {n_failed} of {len(clips)} clips failed (see above); the others are done",
                file=sys.stderr,
            )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
