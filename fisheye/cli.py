"""`python -m fisheye`: fetch Egocentric-10K clips and rectify their fisheye; a thin shell over the pipeline.

Parse the settings (fisheye.settings), pick the source (the Hub with a token, a local folder, or the
built-in sample), run, report. Every expected failure is one line on stderr and a non-zero exit; finished
outputs are kept.
"""

from __future__ import annotations

import argparse

from egoclean.cli import EXIT_ERROR, run_main
from egoclean.config import HelpFormatter, add_options, from_args, validate
from egoclean.engine import RETRY_OPTIONS, ScaleSettings
from egoclean.progress import terminal_progress
from fisheye.pipeline import (
    choose_data,
    left_out,
    left_out_line,
    open_source,
    run_phase1,
    worker_output_dir,
)
from fisheye.settings import Phase1Settings

DESCRIPTION = (
    "Phase 1: download a worker's clips from the gated Hugging Face dataset builddotai/Egocentric-10K, undo "
    "the fisheye distortion, and keep only the rectified videos plus the pinhole camera they now follow "
    "(intrinsics.json). Without a token (HF_KEY or HF_TOKEN in .env), without --source and with no --worker "
    "or --clips chosen, it runs offline on the built-in sample (--sample asks for it in any case)."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m fisheye", description=DESCRIPTION, formatter_class=HelpFormatter
    )
    add_options(parser, Phase1Settings)
    # the one definition of --max-retries and --retry-failed (bash run.sh's, shared with phase 2): a clip
    # whose process dies under it is left out by the rerun after 1 + N such deaths (pipeline.run_phase1)
    add_options(parser, ScaleSettings, only=RETRY_OPTIONS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        progress = terminal_progress()
        settings = validate(from_args(Phase1Settings, args))  # every setting checked before any download
        retries = validate(from_args(ScaleSettings, args))
        settings = choose_data(settings, progress)
        source = open_source(settings, progress)
        manifest = run_phase1(
            settings, source, progress, max_retries=retries.max_retries, retry_failed=retries.retry_failed
        )
        folder = worker_output_dir(settings)
        print(
            f"done: {len(manifest['clips'])} rectified clip(s) in {folder} "
            f"(intrinsics.json, manifest.json, *_preview.jpg beside them)"
        )
        if failed := left_out(manifest, settings):
            progress.error(left_out_line(failed, folder))
            return EXIT_ERROR
        return 0

    return run_main(body)
