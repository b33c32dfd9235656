"""`python -m fisheye`: fetch Egocentric-10K clips and rectify their fisheye; a thin shell over the pipeline.

Parse the settings, pick the source (the Hub with a token, a local folder, or the built-in sample), run,
report. Every expected failure is one line on stderr and a non-zero exit; finished outputs are kept.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from egoclean.config import HelpFormatter
from egoclean.errors import AuthError, EgoCleanError
from fisheye.fetch import HubSource, LocalSource, ShardSource, WorkerRef, parse_clip_selection, resolve_token
from fisheye.pipeline import Phase1Settings, Progress, output_dir, run_phase1
from fisheye.rectify import EncoderSettings
from fisheye.sample import SampleSpec, write_sample_hub

DEFAULT_WORKER = "factory_001/worker_001"
DEFAULT_CLIPS = "00001,00002"  # the seed's proof-of-concept clips


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fisheye",
        description="Phase 1: download a worker's clips from the gated Hugging Face dataset "
        "builddotai/Egocentric-10K, undo the fisheye distortion, and keep only the rectified videos plus the "
        "pinhole camera they now follow (intrinsics.json). Without a token (HF_KEY or HF_TOKEN in .env) and "
        "without --source it runs offline on the built-in sample clip.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--worker", default=None, help=f"factory/worker to fetch, as on the Hub (default: {DEFAULT_WORKER})"
    )
    parser.add_argument(
        "--clips",
        default=None,
        help=f"clip indices: '00001,00002', '1-5' or 'all' (default: {DEFAULT_CLIPS})",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help="read tars from this local folder laid out like the Hub "
        "(FOLDER/factory_001/workers/worker_001/*.tar) instead of downloading",
    )
    parser.add_argument(
        "--sample",
        action="store_true",
        help="run on the built-in synthetic sample, offline, even if a token is set",
    )
    parser.add_argument("--out", type=Path, default=Path("data"), help="output folder")
    parser.add_argument(
        "--hfov",
        type=float,
        default=None,
        help="horizontal field of view of the rectified camera in degrees "
        "(default: the widest with no black pixel, about 94 for this lens)",
    )
    parser.add_argument("--codec", choices=("h264", "h265"), default="h264", help="output codec")
    parser.add_argument("--crf", type=int, default=18, help="x264/x265 constant rate factor (lower = better)")
    parser.add_argument(
        "--preset", default="veryfast", help="x264/x265 speed preset (ultrafast ... veryslow)"
    )
    parser.add_argument("--env-file", type=Path, default=Path(".env"), help="where to look for HF_KEY")
    return parser


def tqdm_progress() -> Progress:
    """Progress bars on a terminal, plain log lines only otherwise (quiet in CI)."""
    open_bars: list[tqdm] = []

    def new_bar(**kwargs: object) -> tqdm:
        while open_bars:
            open_bars.pop().close()
        bar = tqdm(disable=None, leave=False, dynamic_ncols=True, **kwargs)
        open_bars.append(bar)
        return bar

    def bytes_bar(label: str, total: int | None) -> Callable[[int], None]:
        bar = new_bar(desc=label, total=total, unit="B", unit_scale=True, unit_divisor=1024)

        def update(done: int) -> None:
            bar.update(done - bar.n)

        return update

    def frames_bar(label: str, total: int) -> Callable[[int], None]:
        return new_bar(desc=label, total=total, unit="frame").update

    def log(message: str) -> None:
        tqdm.write(message, file=sys.stderr)

    return Progress(log=log, bytes_bar=bytes_bar, frames_bar=frames_bar)


def prepare_sample(out: Path, progress: Progress) -> Path:
    """Render the built-in sample into OUT/sample/hub once; later runs reuse it."""
    hub = out / "hub"
    spec = SampleSpec()
    worker_dir = hub / spec.factory / "workers" / spec.worker
    if not (worker_dir / "intrinsics.json").is_file():
        total = sum(round(c.duration_s * spec.fps) for c in spec.clips)
        write_sample_hub(hub, spec, progress.frames_bar("render sample", total))
    return hub


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = tqdm_progress()
    try:
        clips = parse_clip_selection(args.clips or DEFAULT_CLIPS)
    except ValueError as err:
        print(f"error: --clips: {err}", file=sys.stderr)
        return 2
    try:
        out = args.out
        token = resolve_token(args.env_file)
        source: ShardSource
        if args.sample or (
            args.source is None and token is None and args.worker is None and args.clips is None
        ):
            if not args.sample:
                progress.log(
                    "no Hugging Face token (HF_KEY or HF_TOKEN in .env): running offline on the "
                    f"built-in sample clip, outputs under {out / 'sample'}"
                )
            out = out / "sample"
            source = LocalSource(prepare_sample(out, progress))
        elif args.source is not None:
            source = LocalSource(args.source)
        elif token is None:
            raise AuthError(
                "no Hugging Face token: put HF_KEY=hf_... in .env (create a read token at "
                "https://huggingface.co/settings/tokens), or pass --source DIR or --sample"
            )
        else:
            source = HubSource(token)
        settings = Phase1Settings(
            worker=args.worker or DEFAULT_WORKER,
            clips=clips,
            out=out,
            hfov_deg=args.hfov,
            encoder=EncoderSettings(codec=args.codec, crf=args.crf, preset=args.preset),
        )
        manifest = run_phase1(settings, source, progress)
    except EgoCleanError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # a malformed setting such as --worker or --hfov
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished clips are kept; run the same command again to resume", file=sys.stderr)
        return 130
    folder = output_dir(settings.out, WorkerRef.parse(settings.worker))
    print(
        f"done: {len(manifest['clips'])} rectified clip(s) in {folder} "
        f"(intrinsics.json, manifest.json, *_preview.jpg beside them)"
    )
    return 0
