"""Phase 2a: embed every rectified clip with V-JEPA 2, one embedding per sliding window.

    python VJEPA/encode.py                         # every clip in data/factory_001/
    python VJEPA/encode.py clip.mp4 --crop three   # one clip, three crops per window

For each clip X.mp4 it writes, beside the clip (or under --out):
    X_emb.npy   float32 [N, D]  mean of all patch tokens of each window (D = 1024 for ViT-L)
    X_ts.npy    float64 [N]     each window's start time in seconds (its first frame's own timestamp)
    X_emb.json  the settings, model and clip facts that produced them

Frames are decoded once and preprocessed once; whole windows are batched for the model. A clip whose
outputs exist and match the current settings is skipped (--force recomputes). Outputs of an earlier
version of the mp4 are deleted (with their analysis) before it is embedded again; new embeddings delete
the analysis of the ones they replace (X_analysis.json, X_diagnostics.png, X_distance.npy, X_autocorr.npy).
A clip whose decoding or embedding kills the process (a decoder's segfault, a CUDA abort, the OOM killer)
is counted in the output folder's .attempts/ and left out, with one line, by the rerun after 1 +
--max-retries such deaths in a row, until --retry-failed (egoclean.attempts). Two runs on one folder at once
embed each clip once: each clip is embedded under its lock in the output folder's .locks/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from egoclean.attempts import RETRY_FAILED, attempts_mark, clear_attempts, crash_guard
from egoclean.cli import EXIT_ERROR, run_main
from egoclean.config import HelpFormatter, add_options, from_args, validate
from egoclean.engine import DEFAULT_MAX_RETRIES, RETRY_OPTIONS, ScaleSettings
from egoclean.errors import EgoCleanError, InputError, VideoError
from egoclean.files import check_can_create, remove_dead_partials, remove_files, save_npy, write_json
from egoclean.hwdecode import iter_rgb_tensors, pick_decoder
from egoclean.layout import DEFAULT_FOLDER, analysis_paths, embedding_paths, list_clips
from egoclean.locks import FileLock, new_run_id, output_lock
from egoclean.progress import Progress, terminal_progress
from egoclean.video import Feeder, Frame, VideoInfo, converted, iter_frames, packed_array, prefetch, probe
from egoclean.yuv_torch import Planes, frame_rgb
from VJEPA.embedder import (
    Encoder,
    ModelError,
    WindowEmbeddings,
    auto_batch_size,
    embed_frames,
    load_encoder,
    model_description,
)
from VJEPA.settings import EncodeSettings
from VJEPA.windows import dropped_tail_frames, span_frames, stride_frames_for, window_count

# What to do about a rectified clip that is not a readable video, whether its header or its frames show it
# (probe, the decoder, a frame count short of the header's): phase 1 makes it again once it is gone.
REMAKE_CLIP = "delete it and rerun phase 1 for this clip (bash run.sh 1)"

# Decoded frames may differ from the container's count by an edit list or a dropped last frame, never more.
MAX_FRAME_COUNT_GAP = 3

# Which version of the clip the outputs come from: the mp4's size and mtime (phase 1 rewrites it on a redo)
SOURCE_KEYS = ("source_size", "source_mtime_ns")
# The facts that decide the numbers in the outputs: a clip is skipped only if its JSON matches them.
RESUME_KEYS = ("model", "dtype", "window", "frame_step", "stride_frames", "crop", *SOURCE_KEYS)


@dataclass(frozen=True)
class EncodeResult:
    video_path: Path
    emb_path: Path
    ts_path: Path
    json_path: Path
    n_windows: int
    skipped: bool  # outputs already matched the settings


def read_sidecar(json_path: Path) -> dict | None:
    """An X_emb.json's facts; None when it is missing, unreadable or not a JSON object."""
    try:
        written = json.loads(json_path.read_text())
    except (OSError, ValueError):
        return None
    return written if isinstance(written, dict) else None


def outputs_match(paths: tuple[Path, Path, Path], expected: dict[str, object]) -> bool:
    if not all(p.is_file() for p in paths):
        return False
    written = read_sidecar(paths[2])
    return written is not None and all(written.get(key) == expected[key] for key in RESUME_KEYS)


def made_from_another_video(json_path: Path, facts: dict[str, object]) -> bool:
    """Whether the clip's X_emb.json says its embeddings come from another version of the mp4 (another
    size or mtime). Embeddings of the same mp4 made with other settings are not: they still describe it."""
    written = read_sidecar(json_path)
    return written is not None and any(written.get(key) != facts[key] for key in SOURCE_KEYS)


def clip_facts(video_path: Path, info: VideoInfo, encoder: Encoder, settings: EncodeSettings) -> dict:
    """What the JSON sidecar says before any frame is embedded: model, windows and the clip's identity
    (its size and mtime, which resume compares)."""
    stat = video_path.stat()
    return {
        **model_description(encoder),
        "window": settings.window,
        "frame_step": settings.frame_step,
        "span_frames": span_frames(settings.window, settings.frame_step),
        "stride_s": settings.stride_s,
        "stride_frames": stride_frames_for(settings.stride_s, info.fps),
        "crop": settings.crop,
        "fps": info.fps,
        "source": str(video_path),
        "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
    }


def embed_clip_frames(
    encoder: Encoder,
    frames: Iterable[Frame],
    settings: EncodeSettings,
    fps: float,
    n_frames_expected: int,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[WindowEmbeddings, int]:
    """Embed one clip's frames (rgb24, in order); returns the windows and the batch size used.
    `progress(windows_done, windows_expected)` after each batch."""
    stride_frames = stride_frames_for(settings.stride_s, fps)
    n_views = 3 if settings.crop == "three" else 1
    batch_size = settings.batch_size or auto_batch_size(encoder, settings.window, n_views)
    expected_windows = window_count(n_frames_expected, settings.window, stride_frames, settings.frame_step)
    done = 0

    def on_batch(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, expected_windows)

    result = embed_frames(
        encoder,
        frames,
        settings.window,
        stride_frames,
        settings.frame_step,
        settings.crop,  # type: ignore[arg-type]
        batch_size,
        progress=on_batch,
    )
    return result, batch_size


def save_clip_embeddings(
    video_path: Path,
    info: VideoInfo,
    paths: tuple[Path, Path, Path],
    facts: dict,
    result: WindowEmbeddings,
    batch_size: int,
) -> EncodeResult:
    """Check the frames embedded against the container's count, then write the three outputs."""
    n_frames = result.stats.n_frames
    if info.n_frames and abs(n_frames - info.n_frames) > MAX_FRAME_COUNT_GAP:
        raise VideoError(
            f"{video_path}: decoded {n_frames} frames but the container says {info.n_frames}, truncated or "
            f"damaged (nothing was written); {REMAKE_CLIP}"
        )
    if len(result.embeddings) == 0:
        raise VideoError(
            f"{video_path}: {n_frames} frames, shorter than one window of {facts['span_frames']} frames"
        )
    window, stride_frames, frame_step = facts["window"], facts["stride_frames"], facts["frame_step"]
    facts = facts | {
        "batch_size": batch_size,
        "n_frames": n_frames,
        "n_windows": len(result.embeddings),
        "dropped_tail_frames": dropped_tail_frames(n_frames, window, stride_frames, frame_step),
        "embedding_dim": int(result.embeddings.shape[1]),
        "frame_width": result.stats.width,
        "frame_height": result.stats.height,
    }
    write_outputs(paths, result.embeddings.astype(np.float32), result.start_times_s.astype(np.float64), facts)
    return EncodeResult(video_path, *paths, n_windows=len(result.embeddings), skipped=False)


def encode_clip(
    video_path: str | Path,
    encoder: Encoder,
    settings: EncodeSettings,
    out_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    attempt_limit: int | None = None,
) -> EncodeResult:
    """Embed one clip and write its three outputs; `progress(windows_done, n_windows)` after each batch.

    attempt_limit: count the attempts at decoding and embedding the clip in its output folder
        (embedding_mark), from run to run, and leave it out after this many died with their process.
        None: not counted (the scale-out counts its own, per run).
    Raises VideoError for a missing, undecodable or too-short clip, OutputError if outputs cannot be
    written, CrashLoopError for a clip left out. Nothing appears under a final name unless all three
    outputs are complete.
    """
    video_path = Path(video_path)
    info = probe(video_path, remedy=REMAKE_CLIP)
    paths = embedding_paths(video_path, None if out_dir is None else Path(out_dir))
    facts = clip_facts(video_path, info, encoder, settings) | {"frames_from": "decoded clip"}
    if not settings.force and outputs_match(paths, facts):
        return EncodeResult(video_path, *paths, n_windows=len(np.load(paths[1])), skipped=True)
    if made_from_another_video(paths[2], facts):
        # they, and the analysis made from them, describe a video that is gone: should this clip fail to
        # embed, nothing may be left for analyze.py, the report or a person to take for this clip's
        remove_files([*analysis_paths(paths[0]).values(), *paths])
    span = span_frames(settings.window, settings.frame_step)
    if info.n_frames and info.n_frames < span:  # the container's count: fail before loading any frame
        raise VideoError(f"{video_path}: {info.n_frames} frames, shorter than one window of {span} frames")
    # Where a clip can take the process down (a decoder's crash, a CUDA abort, the OOM killer): counted
    with embedding_attempt(video_path, paths[0], attempt_limit):
        decoder = pick_clip_decoder(video_path, settings.decode, encoder)
        frames = clip_frames(video_path, decoder, encoder)
        result, batch_size = embed_clip_frames(encoder, frames, settings, info.fps, info.n_frames, progress)
        return save_clip_embeddings(video_path, info, paths, facts | {"decoder": decoder}, result, batch_size)


def clip_frames(video_path: Path, decoder: str, encoder: Encoder) -> Iterable[Frame]:
    """The clip's RGB frames, decoded in a thread on `decoder` for the model; a clip that breaks off
    mid-decode is said with REMAKE_CLIP, as probe says a bad header."""
    if decoder == "cuda":  # NVDEC: frames stay on the GPU, converted to RGB there (egoclean.yuv_torch)
        return prefetch(iter_rgb_tensors(video_path, "cuda", remedy=REMAKE_CLIP), 2)  # NVDEC's pool is small
    if encoder.device.type == "cuda":  # CPU decode: yuv420p to the GPU (half RGB's bytes), RGB made there
        return prefetch(iter_rgb_tensors(video_path, "cpu", encoder.device, remedy=REMAKE_CLIP))
    return prefetch(iter_frames(video_path, pixel_format="rgb24", remedy=REMAKE_CLIP))


def embedding_mark(emb_path: Path) -> Path:
    """Where the local engine counts the attempts at embedding a clip into `emb_path` (its X_emb.npy) that
    died with their process: named after the embeddings in their folder, so that phase 1's count of the same
    clip, named after its mp4, is another (egoclean.attempts.attempts_mark)."""
    return attempts_mark(emb_path.parent, emb_path.name)


def embedding_attempt(
    video_path: Path, emb_path: Path, attempt_limit: int | None
) -> contextlib.AbstractContextManager[object]:
    """One more counted attempt at embedding `video_path` into `emb_path` (crash_guard on embedding_mark);
    nothing is counted for attempt_limit None."""
    if attempt_limit is None:
        return contextlib.nullcontext()
    what = f"{video_path} -> {emb_path.name}"
    return crash_guard(embedding_mark(emb_path), attempt_limit, what, RETRY_FAILED)


def pick_clip_decoder(video_path: Path, decode: str, encoder: Encoder) -> str:
    """cpu or cuda for --decode: NVDEC only pays when the model is on the same GPU (the frames go to it
    without leaving the device), so auto picks it only then, and cuda without a GPU model is refused."""
    if decode == "cpu":
        return "cpu"
    check_decode_setting(decode, encoder)
    if encoder.device.type != "cuda":
        return "cpu"
    return pick_decoder(video_path, decode)


def check_decode_setting(decode: str, encoder: Encoder) -> None:
    """--decode cuda needs the model on the GPU (the NVDEC frames go straight to it)."""
    if decode == "cuda" and encoder.device.type != "cuda":
        raise ModelError(
            f"--decode cuda: the model is on {encoder.device}; NVDEC frames go to a model on the GPU "
            "(--device cuda), or use --decode cpu"
        )


Pushed = tuple[int, int, av.VideoFrame, Planes | None]  # index, pts, frame, its planes on the GPU or None


class StreamingClipEncoder:
    """Embeds one clip from frames pushed while another loop makes it: the one-pass path, where phase 1
    hands each rectified yuv420p frame over before encoding it, so V-JEPA 2 sees the frames without x264's
    loss and nothing decodes the mp4 again. The model runs in a background thread; `finish` writes the
    same three outputs as `encode_clip`, keyed to the finished mp4 (so a later `encode_clip` skips it).

        clip = StreamingClipEncoder(encoder, settings, fps, time_base, n_frames)
        clip.push(index, pts, frame)   # every frame, in order
        clip.finish(mp4_path)          # once the mp4 is in place; or clip.abort()
    """

    def __init__(
        self,
        encoder: Encoder,
        settings: EncodeSettings,
        fps: float,
        time_base: Fraction,
        n_frames_expected: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.encoder, self.settings, self.time_base = encoder, settings, Fraction(time_base)

        def rgb(frame: av.VideoFrame, planes: Planes | None) -> Any:
            # The same RGB the decoded mp4 gives in encode_clip (the frame carries the output's colour
            # tags), minus the encode-decode round trip: swscale on the CPU; with the model on a GPU the
            # yuv420p planes go there (half RGB's bytes, or they are there already: the remap ran there)
            # and are converted there, bit for bit as swscale does it.
            if planes is None and encoder.device.type != "cuda":
                return packed_array(converted(frame, "rgb24"))
            return frame_rgb(frame, encoder.device, planes)

        def consume(items: Iterator[Pushed]) -> tuple[WindowEmbeddings, int]:
            frames = (
                Frame(index, pts, float(pts * self.time_base), rgb(frame, planes))
                for index, pts, frame, planes in items
            )
            return embed_clip_frames(encoder, frames, settings, fps, n_frames_expected, progress)

        self._feeder: Feeder[Pushed, tuple[WindowEmbeddings, int]] = Feeder(consume, name="embed")

    def push(self, index: int, pts: int, frame: av.VideoFrame, planes: Planes | None = None) -> None:
        """One yuv420p frame (kept as it is: it must not change afterwards), and its Y/U/V planes as torch
        tensors when they are on a GPU already (the remap ran there): then those are used and the frame
        never comes back through the host. Raises what the model raised."""
        self._feeder.put((index, pts, frame, planes))

    def finish(self, video_path: Path, out_dir: Path | None = None) -> EncodeResult:
        """The clip's mp4 is complete at `video_path`: wait for the model, then write the outputs."""
        result, batch_size = self._feeder.finish()
        info = probe(video_path, remedy=REMAKE_CLIP)
        facts = clip_facts(video_path, info, self.encoder, self.settings) | {"frames_from": "one pass"}
        paths = embedding_paths(video_path, out_dir)
        # Called inside phase 1's lock on the mp4; phase 2 never waits for that one while holding this one,
        # so two runs cannot wait for each other. Its outputs are not mixed with a phase-2 run's.
        with embedding_lock(paths[0]):
            return save_clip_embeddings(video_path, info, paths, facts, result, batch_size)

    def abort(self) -> None:
        self._feeder.abort()


def write_outputs(paths: tuple[Path, Path, Path], emb: np.ndarray, ts: np.ndarray, facts: dict) -> None:
    """Write the arrays, then the JSON: each under a temporary name, renamed when complete. The JSON is
    what resume checks, so it goes last. The analysis beside them (egoclean.layout.analysis_paths) is
    deleted first: it was made from the embeddings these replace (analyze.py makes it again)."""
    remove_files(analysis_paths(paths[0]).values())
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


def load_encoder_for(settings: EncodeSettings) -> Encoder:
    """The model `settings` ask for (model, device, dtype, compile): the one place phase 2, the one pass and
    the scale-out's embedding actors load it."""
    return load_encoder(settings.model, settings.device, settings.dtype, settings.compile)


def encode_clips(
    clips: list[Path],
    settings: EncodeSettings,
    out_dir: Path | None = None,
    progress: Progress | None = None,
    encoder: Encoder | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    retry_failed: bool = False,
) -> tuple[list[EncodeResult], list[str]]:
    """Embed every clip (the model loaded once); returns the results and one error line per failed clip.
    A clip that fails does not stop the others. One whose embedding kills the process (a crash in the
    decoder or the model, the OOM killer) ends the run; the deaths are counted in the output folder, and
    the rerun after 1 + max_retries of them in a row leaves the clip out with a failure line, until
    retry_failed forgets them (encode_clip's attempt_limit).

    Safe to run twice at once on one folder: each clip is embedded under its own lock (embedding_lock); a
    clip another run holds is left until the others are done, then waited for and checked again (the other
    run has most likely embedded it: then it is skipped). Results and failures come in the clips' order."""
    progress = progress or Progress()
    if out_dir is not None:
        check_can_create(out_dir)  # before the model loads and the first clip is embedded
    for folder in dict.fromkeys(out_dir if out_dir is not None else clip.parent for clip in clips):
        if removed := remove_dead_partials(folder):
            progress.log(f"{folder}: removed {len(removed)} temporary files of runs killed while writing")
    if encoder is None:
        encoder = load_encoder_for(settings)
    check_decode_setting(settings.decode, encoder)  # once, before any clip
    kind = "random-init stand-in" if encoder.random_init else "checkpoint"
    progress.log(
        f"model {settings.model} ({kind}) on {encoder.device}, {str(encoder.dtype).removeprefix('torch.')}"
    )
    run_id, limit = new_run_id(), 1 + max_retries
    outcomes: dict[int, EncodeResult | str] = {}
    busy = []
    for number, clip in enumerate(clips):
        outcome = embed_in_turn(clip, encoder, settings, out_dir, progress, limit, retry_failed, run_id)
        if outcome is None:
            busy.append(number)  # another run is embedding it: come back once the rest is done
        else:
            outcomes[number] = outcome
    for number in busy:
        clip = clips[number]
        outcome = embed_in_turn(
            clip, encoder, settings, out_dir, progress, limit, retry_failed, run_id, found_busy=True
        )
        assert outcome is not None  # found_busy waits for the lock: never None
        outcomes[number] = outcome
    in_order = [outcomes[number] for number in sorted(outcomes)]  # the clips' order, busy ones included
    return [o for o in in_order if isinstance(o, EncodeResult)], [o for o in in_order if isinstance(o, str)]


def embedding_lock(emb_path: Path, run_id: str | None = None) -> FileLock:
    """Held while one run embeds a clip into `emb_path` (its X_emb.npy), from the resume check to the last
    write: two runs on one folder never embed the same clip at once (egoclean.locks.output_lock, named after
    the embeddings: phase 1's lock on the same clip, named after its mp4, is another)."""
    return output_lock(emb_path.parent, emb_path.name, run_id)


def embed_in_turn(
    clip: Path,
    encoder: Encoder,
    settings: EncodeSettings,
    out_dir: Path | None,
    progress: Progress,
    attempt_limit: int,
    retry_failed: bool,
    run_id: str,
    found_busy: bool = False,
) -> EncodeResult | str | None:
    """encode_clips' step for one clip: encode_clip holding the clip's embedding_lock, said on `progress`.
    Returns the result, the error line of a clip that failed, or None when another run holds the lock.
    found_busy: another run held it before; wait for it, then check again whether it is still to be done
    (the other run has most likely embedded it: then it is skipped, and the log line says so)."""
    emb_path = embedding_paths(clip, out_dir)[0]
    lock = embedding_lock(emb_path, run_id)
    if not lock.try_acquire():
        if not found_busy:
            return None
        holder = lock.holder() or {}
        progress.log(f"{clip}: run {holder.get('run_id')} is embedding it; waiting")
        lock.acquire()
    try:
        if retry_failed:  # under the lock: another run's attempt in progress keeps its mark
            clear_attempts(embedding_mark(emb_path))
        bar = progress.frames_bar(f"embed {clip.name}", None)
        last = 0

        def on_batch(done: int, total: int) -> None:
            nonlocal last
            bar(done - last)
            last = done

        result = encode_clip(clip, encoder, settings, out_dir, on_batch, attempt_limit)
        line = result_line(result, found_busy)  # from the sidecar, before another run may replace it
    except (EgoCleanError, ValueError) as err:
        progress.error(str(err))
        return str(err)
    finally:
        lock.release()
    progress.log(f"{clip}: {line}")
    return result


def result_line(result: EncodeResult, by_another_run: bool) -> str:
    """What became of a clip, after its name. by_another_run: the clip's lock was held by another run
    when this one first came to it."""
    facts = json.loads(result.json_path.read_text())
    if not result.skipped:
        return (
            f"{result.n_windows} windows of {facts['window']} frames, from {facts['n_frames']}"
            f" ({facts['dropped_tail_frames']} tail frames dropped) -> {result.emb_path}"
        )
    if by_another_run:
        how = "embedded by another run meanwhile, skipped"
    elif facts.get("frames_from") == "one pass":
        how = "embedded in one pass with phase 1, kept"
    else:
        how = "outputs match the settings, skipped"
    return f"{how} ({result.n_windows} windows; --force redoes)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python VJEPA/encode.py",
        description="Embed rectified clips with V-JEPA 2: one mean-pooled embedding per sliding window, "
        "written as X_emb.npy (float32 [N, D]), X_ts.npy (window start times, s) and X_emb.json.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        default=[str(DEFAULT_FOLDER)],
        help=f"clips, or folders of clips (default: {DEFAULT_FOLDER})",
    )
    add_options(parser, EncodeSettings)
    # the one definition of --max-retries and --retry-failed, shared with phase 1 (bash run.sh's)
    add_options(parser, ScaleSettings, only=RETRY_OPTIONS)
    parser.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="output folder (default: beside each clip)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        progress = terminal_progress(unit="window", log_file=sys.stdout)
        settings = validate(from_args(EncodeSettings, args))
        retries = validate(from_args(ScaleSettings, args))
        clips = find_clips(args.inputs)
        _, failures = encode_clips(
            clips,
            settings,
            args.out,
            progress,
            max_retries=retries.max_retries,
            retry_failed=retries.retry_failed,
        )
        if failures and len(clips) > 1:
            rest = "; the others are done" if len(failures) < len(clips) else ""
            progress.error(f"{len(failures)} of {len(clips)} clips failed (see above){rest}")
        return EXIT_ERROR if failures else 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
