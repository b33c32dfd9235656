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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from egoclean.cli import EXIT_ERROR, run_main
from egoclean.config import HelpFormatter, add_options, from_args, validate
from egoclean.errors import EgoCleanError, InputError, VideoError
from egoclean.files import save_npy, write_json
from egoclean.layout import embedding_paths, list_clips
from egoclean.progress import Progress, terminal_progress
from egoclean.video import iter_frames, prefetch, probe
from VJEPA.embedder import Encoder, auto_batch_size, embed_frames, load_encoder, model_description
from VJEPA.settings import EncodeSettings
from VJEPA.windows import dropped_tail_frames, span_frames, stride_frames_for, window_count

DEFAULT_INPUT = "data/factory_001"
# Decoded frames may differ from the container's count by an edit list or a dropped last frame, never more.
MAX_FRAME_COUNT_GAP = 3

# The facts that decide the numbers in the outputs: a clip is skipped only if its JSON matches them.
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
    settings: EncodeSettings,
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
    paths = embedding_paths(video_path, out_dir)
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

    n_views = 3 if settings.crop == "three" else 1
    batch_size = settings.batch_size or auto_batch_size(encoder, settings.window, n_views)
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
        batch_size,
        progress=on_batch,
    )
    n_frames = result.stats.n_frames
    if info.n_frames and abs(n_frames - info.n_frames) > MAX_FRAME_COUNT_GAP:
        raise VideoError(
            f"{video_path}: decoded {n_frames} frames but the container says {info.n_frames}; the file is "
            "truncated or damaged: rerun phase 1 for this clip (nothing was written)"
        )
    if len(result.embeddings) == 0:
        raise VideoError(f"{video_path}: {n_frames} frames, shorter than one window of {span} frames")
    facts |= {
        "batch_size": batch_size,
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
    """Files as given; a folder means its rectified clips in clip order (egoclean.layout.list_clips)."""
    clips: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = list_clips(item)
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


def encode_clips(
    clips: list[Path],
    settings: EncodeSettings,
    out_dir: Path | None = None,
    progress: Progress | None = None,
    encoder: Encoder | None = None,
) -> tuple[list[EncodeResult], list[str]]:
    """Embed every clip (the model loaded once); returns the results and one error line per failed clip.
    A clip that fails does not stop the others."""
    progress = progress or Progress()
    if encoder is None:
        encoder = load_encoder(settings.model, settings.device, settings.dtype, settings.compile)
    kind = "random-init stand-in" if encoder.random_init else "checkpoint"
    progress.log(
        f"model {settings.model} ({kind}) on {encoder.device}, {str(encoder.dtype).removeprefix('torch.')}"
    )
    results, failures = [], []
    for clip in clips:
        bar = progress.frames_bar(f"embed {clip.name}", None)
        last = 0

        def on_batch(done: int, total: int, bar: Callable[[int], None] = bar) -> None:
            nonlocal last
            bar(done - last)
            last = done

        try:
            result = encode_clip(clip, encoder, settings, out_dir, on_batch)
        except (EgoCleanError, ValueError) as err:
            failures.append(str(err))
            progress.error(str(err))
            continue
        results.append(result)
        if result.skipped:
            progress.log(
                f"{clip}: outputs match the settings, skipped ({result.n_windows} windows; --force redoes)"
            )
        else:
            facts = json.loads(result.json_path.read_text())
            progress.log(
                f"{clip}: {result.n_windows} windows of {facts['window']} frames, from {facts['n_frames']}"
                f" ({facts['dropped_tail_frames']} tail frames dropped) -> {result.emb_path}"
            )
    return results, failures


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python VJEPA/encode.py",
        description="Embed rectified clips with V-JEPA 2: one mean-pooled embedding per sliding window, "
        "written as X_emb.npy (float32 [N, D]), X_ts.npy (window start times, s) and X_emb.json.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        default=[DEFAULT_INPUT],
        help=f"clips, or folders of clips (default: {DEFAULT_INPUT})",
    )
    add_options(parser, EncodeSettings)
    parser.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="output folder (default: beside each clip)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        progress = terminal_progress(unit="window", log_file=sys.stdout)
        settings = validate(from_args(EncodeSettings, args))
        clips = find_clips(args.inputs)
        _, failures = encode_clips(clips, settings, args.out, progress)
        if failures and len(clips) > 1:
            progress.error(f"{len(failures)} of {len(clips)} clips failed (see above); the others are done")
        return EXIT_ERROR if failures else 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
