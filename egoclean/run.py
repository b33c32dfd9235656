"""The whole job, top to bottom: `bash run.sh [auto|1|2|all]` runs this (`python -m egoclean`).

    1. choose the data: the Hub with a token, a --source folder, or the built-in sample (offline, said so)
    2. phase 1 (fisheye): fetch, extract, rectify          -> OUT/factory_001/rectified_clip_*.mp4
    3. phase 2 (VJEPA): V-JEPA 2 embeddings, then analysis  -> *_emb.npy, *_analysis.json, *_diagnostics.png
With `all` the two phases share one pass over each clip: every fisheye frame is decoded and remapped once,
and the rectified frame goes to the encoder and, before it is encoded, to V-JEPA 2 (no encode-decode loss,
no second decode). `1` then `2` is the two-pass path: phase 2 reads the rectified mp4s.

This module and egoclean/scale.py (the same stages over many workers) stand above both phases: they import
fisheye and VJEPA; nothing else in egoclean does, and the phases never import each other.
Every option comes from the phases' settings classes; `bash run.sh --help` lists them with their defaults.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from egoclean.cli import EXIT_ERROR, run_main
from egoclean.config import HelpFormatter, add_options, from_args, validate
from egoclean.engine import RETRY_OPTIONS, ScaleSettings
from egoclean.errors import SettingError
from egoclean.progress import Progress, terminal_progress
from egoclean.scale import one_pass_tap, run_scale
from fisheye.pipeline import (
    choose_data,
    left_out,
    left_out_line,
    open_source,
    run_phase1,
    worker_output_dir,
)
from fisheye.settings import Phase1Settings
from VJEPA.phase2 import run_phase2
from VJEPA.settings import DEFAULT_MODEL, EncodeSettings
from VJEPA.structure import StructureParams

COMMANDS = ("auto", "1", "2", "all")
STAND_IN_DIR = "tiny-vjepa2-random-init"  # under OUT/sample: the sample's stand-in model

DESCRIPTION = """\
EgoClean turns raw Egocentric-10K fisheye video into rectified clips (phase 1) and V-JEPA 2 temporal
structure: cycles, repeats, anomalies, with plots (phase 2).

commands:
  auto   (the default) with a Hugging Face token (HF_KEY or HF_TOKEN in .env): phase 1 on the chosen
         clips; without one: both phases on the built-in sample (two clips), offline
  1      phase 1 only: download, extract, rectify
  2      phase 2 only: V-JEPA 2 embeddings + analysis of the phase 1 outputs (use a GPU)
  all    both phases, in one pass over each clip: every rectified frame goes to V-JEPA 2 before it is
         encoded (no second decode, no encoder loss); then the analysis
  test   run the test suite (pytest); arguments after -- go to pytest (bash run.sh test -- -k camera)"""

EPILOG = """\
examples:
  bash run.sh                                   # sample (no token) or the two POC clips (token)
  bash run.sh all --clips all                   # a whole worker, both phases (on a GPU box)
  bash run.sh 2 --batch-size 16 --crop three    # phase 2 again with other settings

environment: PYTHON (default python3), VENV (default .venv), EGOCLEAN_NO_INSTALL=1 to use VENV as it is."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="bash run.sh",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("command", nargs="?", default="auto", choices=COMMANDS, help="what to run")
    add_options(parser.add_argument_group("phase 1 options (fetch and rectify)"), Phase1Settings)
    # one --decode for both phases (phase 1's option): where each clip is decoded, whichever phase reads it
    add_options(
        parser.add_argument_group("phase 2 options (V-JEPA 2 embeddings)"), EncodeSettings, skip=("decode",)
    )
    add_options(parser.add_argument_group("phase 2 analysis options"), StructureParams)
    retries = parser.add_argument_group("retries, both phases (a clip that fails, or kills its process)")
    add_options(retries, ScaleSettings, only=RETRY_OPTIONS)
    add_options(
        parser.add_argument_group("scale-out options (docs/SCALE.md)"), ScaleSettings, skip=RETRY_OPTIONS
    )
    return parser


def shown(path: Path) -> Path:
    """A path as short as it can be: relative to the working folder when it lies inside it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def stand_in_model(phase1: Phase1Settings, encode: EncodeSettings, progress: Progress) -> EncodeSettings:
    """On the sample, the default ViT-L is replaced by a tiny random-init stand-in unless its weights and a
    GPU are here (one ViT-L window takes ~91 s on 2 CPU cores); a model chosen by hand is always kept."""
    if not phase1.sample or encode.model != DEFAULT_MODEL:
        return encode
    from VJEPA.tiny_model import pick_model  # torch: only when phase 2 runs

    model, reason = pick_model(encode.model, phase1.out / STAND_IN_DIR)
    progress.log(reason)
    return replace(encode, model=model)


def run_scaled(
    command: str,
    phase1: Phase1Settings,
    encode: EncodeSettings,
    params: StructureParams,
    scale: ScaleSettings,
    progress: Progress,
) -> int:
    """Phase 1 (and 2 with `all`) for every selected worker on the chosen engine (egoclean.scale)."""
    if command == "2":
        raise SettingError(
            "--engine ray and --workers run phase 1 (command 1) or both phases (all); after `1`, `all` "
            "embeds the clips phase 1 made without fetching them again. For phase 2 of one folder, run "
            "`bash run.sh 2` without them"
        )
    embed = stand_in_model(phase1, encode, progress) if command == "all" else None
    result = run_scale(phase1, scale, embed, params, progress)
    return EXIT_ERROR if result.failures else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        progress = terminal_progress()
        # Every setting is checked before anything is downloaded or written.
        phase1 = validate(from_args(Phase1Settings, args))
        encode = validate(from_args(EncodeSettings, args))
        params = validate(from_args(StructureParams, args))
        scale = validate(from_args(ScaleSettings, args))
        phase1 = choose_data(phase1, progress)
        command = args.command if args.command != "auto" else ("all" if phase1.sample else "1")
        if scale.engine != "local" or scale.workers is not None:
            return run_scaled(command, phase1, encode, params, scale, progress)
        folder = worker_output_dir(phase1)
        encoder, tap, failed = None, None, {}
        not_embedded: list[str] = []  # phase 2's failure lines
        if command in ("2", "all"):
            encode = stand_in_model(phase1, encode, progress)
        if command == "all":  # one pass: the model embeds each clip while phase 1 makes it
            from VJEPA.encode import load_encoder_for  # torch: only when phase 2 runs

            encoder = load_encoder_for(encode)
            tap = one_pass_tap(encoder, encode, progress)
        if command in ("1", "all"):
            also = f", embedding each clip in the same pass ({encode.model})" if tap else ""
            progress.log(f"phase 1: fetch and rectify -> {folder}{also}")
            # In one pass a clip's embedding runs inside phase 1's attempt: a death there is counted once,
            # as phase 1's, and phase 2 below finds that clip embedded (or, left out, not made at all)
            source = open_source(phase1, progress)
            manifest = run_phase1(phase1, source, progress, tap, scale.max_retries, scale.retry_failed)
            failed = left_out(manifest, phase1)  # said again at the end: phase 2 goes on without them
        if command in ("2", "all"):
            progress.log(f"phase 2: V-JEPA 2 embeddings ({encode.model}) and temporal structure -> {folder}")
            result = run_phase2(
                folder, encode, params, progress, encoder, scale.max_retries, scale.retry_failed
            )
            progress.log("results (open the report in a browser):")
            for path in result.outputs:
                progress.log(f"  {shown(path)}")
            if not_embedded := result.failures:
                progress.error(f"{len(not_embedded)} clip(s) could not be embedded (see above)")
        if failed:  # after phase 2's line: both are said, whichever phase left clips out
            progress.error(left_out_line(failed, folder))
        return EXIT_ERROR if failed or not_embedded else 0

    return run_main(body)
