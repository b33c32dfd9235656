"""Phase 2b: temporal structure (period, boundaries, repeats, anomalies) from V-JEPA 2 window embeddings.

    python VJEPA/analyze.py                          # every *_emb.npy in data/factory_001/
    python VJEPA/analyze.py data/factory_001/rectified_clip_1_emb.npy --min-period-s 6
    python VJEPA/analyze.py data/factory_001/ --joint   # also one analysis across all clips of the worker

For each X_emb.npy (with X_ts.npy and, optionally, X_emb.json beside it) this writes, beside the clip or
in --out: X_diagnostics.png, X_analysis.json, X_distance.npy (consecutive cosine distance, [N-1]) and
X_autocorr.npy (autocorrelation, lag 0..max). The math and every threshold are in docs/METHODS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from egoclean.cli import run_main
from egoclean.config import HelpFormatter, add_options, from_args, validate
from egoclean.errors import InputError
from egoclean.files import (
    atomic_output,
    check_writable,
    file_sha256,
    remove_dead_partials,
    save_npy,
    write_json,
)
from egoclean.layout import (
    DEFAULT_FOLDER,
    EMB_SHA256,
    EMB_SUFFIX,
    META_SUFFIX,
    TS_SUFFIX,
    analysis_paths,
    list_embeddings,
    stem_of_embedding,
)
from VJEPA import plots, report
from VJEPA.structure import ClipAnalysis, StructureParams, analyze, analyze_joint, duration_summary

MIN_WINDOWS = 4  # fewer give no period, no change score and no anomaly scale


class ClipTooShortError(InputError):
    """A clip with too few windows to analyse: left out of a folder's analysis, an error on its own."""


RERUN = "rerun python VJEPA/encode.py --force on the clip"  # --force: its sidecar may still match

# ----------------------------------------------------------------------------------------------------------
# Reading


def find_embeddings(paths: Sequence[str]) -> list[Path]:
    """Expand folders (every *_emb.npy inside, not recursive, in clip order: egoclean.layout) and check that
    files are _emb.npy files."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = list_embeddings(path)
            if not inside:
                raise InputError(
                    f"{path}: no *{EMB_SUFFIX} file in this folder; run python VJEPA/encode.py first"
                )
            found += inside
        elif not path.exists():
            raise InputError(
                f"{path}: no such file or folder; give a folder or an *{EMB_SUFFIX} file, "
                "or embed the clips first (python VJEPA/encode.py)"
            )
        elif not path.name.endswith(EMB_SUFFIX):
            raise InputError(f"{path}: not an embedding file; give a folder or an *{EMB_SUFFIX} file")
        else:
            found.append(path)
    return found


def clip_stem(emb_path: Path) -> str:
    return stem_of_embedding(emb_path)


def _load_array(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{path}: missing; {RERUN}")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy file ({exc}); {RERUN}") from exc


class Clip(NamedTuple):
    """One clip's embeddings as load_clip read them."""

    emb: np.ndarray  # float32 [N, D]
    ts: np.ndarray  # float64 [N], window start times, s
    meta: dict[str, Any] | None  # X_emb.json, when there is one
    emb_sha256: str  # of the X_emb.npy file read: the analysis records which embeddings it came from


def load_clip(emb_path: Path) -> Clip:
    """Read and check X_emb.npy [N, D], X_ts.npy [N] and the optional X_emb.json of one clip."""
    # hashed before it is read: should encode replace the file in between, the analysis is marked as
    # coming from the older embeddings (and the report leaves it out), never the other way round
    try:
        emb_sha256 = file_sha256(emb_path)
    except OSError:  # missing or unreadable: _load_array says which, in one line
        emb_sha256 = ""
    emb = _load_array(emb_path)
    ts_path = emb_path.with_name(clip_stem(emb_path) + TS_SUFFIX)
    if emb.ndim != 2 or emb.shape[0] == 0 or emb.shape[1] == 0:
        raise InputError(f"{emb_path}: expected a 2-D array [windows, dim], got shape {emb.shape}; {RERUN}")
    real = np.issubdtype(emb.dtype, np.floating) or np.issubdtype(emb.dtype, np.integer)  # not complex
    if not real or not np.all(np.isfinite(emb)):
        raise InputError(f"{emb_path}: holds NaN, inf or non-numbers; {RERUN}")
    if len(emb) < MIN_WINDOWS:
        raise ClipTooShortError(
            f"{emb_path}: only {len(emb)} windows, the analysis needs at least {MIN_WINDOWS}: the clip is "
            "too short (a shorter --stride-s when encoding gives more windows)"
        )
    if not np.all(np.any(emb != 0, axis=1)):  # not the norm: it under- or overflows at extreme values
        raise InputError(f"{emb_path}: a window's embedding is all zeros; {RERUN}")
    largest = float(np.abs(emb).max())
    if largest > float(np.finfo(np.float32).max):
        raise InputError(f"{emb_path}: values up to {largest:.3g}, beyond float32; {RERUN}")
    ts = _load_array(ts_path)
    if ts.ndim != 1:
        raise InputError(
            f"{ts_path}: expected a 1-D array of window start times, got shape {ts.shape}; {RERUN}"
        )
    if not np.issubdtype(ts.dtype, np.number) or not np.all(np.isfinite(ts)):
        raise InputError(f"{ts_path}: holds NaN, inf or non-numbers; {RERUN}")
    if len(ts) != len(emb):
        raise InputError(
            f"{ts_path}: {len(ts)} timestamps but {emb_path.name} has {len(emb)} windows; {RERUN}"
        )
    if np.any(np.diff(ts) <= 0):
        raise InputError(f"{ts_path}: timestamps are not strictly increasing; {RERUN}")
    meta_path = emb_path.with_name(clip_stem(emb_path) + META_SUFFIX)
    meta = None
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{meta_path}: not valid JSON ({exc}); delete it or {RERUN}") from exc
        if not isinstance(meta, dict):
            raise InputError(f"{meta_path}: expected a JSON object; delete it or {RERUN}")
    return Clip(emb.astype(np.float32, copy=False), ts.astype(np.float64), meta, emb_sha256)


# ----------------------------------------------------------------------------------------------------------
# Writing (each file under a temporary name, renamed when complete)


def _save_npy(path: Path, array: np.ndarray) -> Path:
    save_npy(path, array)
    return path


def _save_json(path: Path, record: dict[str, Any]) -> Path:
    write_json(path, record)
    return path


def _save_png(path: Path, figure: Any) -> Path:
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        plots.save_figure(figure, handle)
    return path


def json_safe(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None: JSON has no NaN (json.dumps would write
    the non-standard token NaN, which strict readers reject)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def analysis_record(
    analysis: ClipAnalysis,
    emb_path: Path,
    params: StructureParams,
    meta: dict[str, Any] | None,
    emb_sha256: str | None = None,
) -> dict[str, Any]:
    """The JSON written for one clip. emb_sha256: of the X_emb.npy analysed (the report leaves out an
    analysis whose embeddings have changed since)."""
    record: dict[str, Any] = {
        "source": str(emb_path),
        **({EMB_SHA256: emb_sha256} if emb_sha256 else {}),
        "n_windows": analysis.n_windows,
        "stride_s": analysis.stride_s,
        "period_s": analysis.period.period_s,
        "period_confidence": analysis.period.period_confidence,
        "autocorr_excludes_anomalies": analysis.autocorr_excludes_anomalies,
        "n_cycles": analysis.n_cycles,
        "boundaries_s": analysis.boundaries_s,
        "change_points_s": analysis.change_points_s,
        "repeats": [dataclasses.asdict(span) for span in analysis.repeats],
        "anomalies": [dataclasses.asdict(span) for span in analysis.anomalies],
        "anomaly_rule": analysis.anomaly_rule,
        "cycles": [dataclasses.asdict(cycle) for cycle in analysis.cycles],
        "cycle_duration_s": duration_summary(analysis.cycles),
        "thresholds": analysis.thresholds,
        "params": dataclasses.asdict(params),
    }
    if meta is not None:
        record["encoder"] = meta
    return json_safe(record)


def write_clip_outputs(
    analysis: ClipAnalysis, emb_path: Path, out_dir: Path, record: dict[str, Any]
) -> dict[str, Path]:
    """Write one clip's analysis outputs (egoclean.layout.analysis_paths); `record`: its analysis_record."""
    paths = analysis_paths(emb_path, out_dir)
    return {
        "json": _save_json(paths["json"], record),
        "distance": _save_npy(paths["distance"], analysis.distance),
        "autocorr": _save_npy(paths["autocorr"], analysis.autocorr),
        "png": _save_png(paths["png"], plots.clip_figure(analysis, clip_stem(emb_path))),
    }


def _output_dir(emb_path: Path, out: Path | None) -> Path:
    return _ensure_dir(out if out is not None else emb_path.parent)


def _ensure_dir(out_dir: Path) -> Path:
    check_writable(out_dir)
    return out_dir


# ----------------------------------------------------------------------------------------------------------
# Python entry points


def analyze_clip(
    emb_path: str | Path, out_dir: str | Path | None = None, params: StructureParams | None = None
) -> dict[str, Any]:
    """Analyse one X_emb.npy, write its outputs, return the JSON record plus an "outputs" map of paths."""
    params = params or StructureParams()
    emb_path = Path(emb_path)
    clip = load_clip(emb_path)
    analysis = analyze(clip.emb, clip.ts, params)
    folder = _output_dir(emb_path, _opt_path(out_dir))
    remove_dead_partials(folder)  # killed runs' temporary files (a live run's are kept)
    record = analysis_record(analysis, emb_path, params, clip.meta, clip.emb_sha256)
    outputs = write_clip_outputs(analysis, emb_path, folder, record)
    return {
        **record,
        "summary": plots.summary_line(analysis),
        "outputs": {k: str(v) for k, v in outputs.items()},
    }


def load_analysable(
    emb_paths: Sequence[str | Path],
) -> tuple[list[Path], list[Clip], list[str]]:
    """(paths, load_clip of each, one line per clip left out): of several clips, one too short to analyse
    is left out, not the folder's analysis; a single one, or every one, is the error."""
    paths, clips, left_out = [], [], []
    for path in map(Path, emb_paths):
        try:
            clips.append(load_clip(path))
            paths.append(path)
        except ClipTooShortError as err:
            if len(emb_paths) == 1:
                raise
            left_out.append(f"{err}; left out of the analysis")
    if not clips:
        raise InputError(f"every clip is too short to analyse ({left_out[0]})")
    return paths, clips, left_out


def analyze_clips_jointly(
    emb_paths: Sequence[str | Path], out_dir: str | Path | None = None, params: StructureParams | None = None
) -> dict[str, Any]:
    """Analyse several clips of one worker together; per-clip outputs plus joint_analysis.json/.png."""
    params = params or StructureParams()
    paths, clips, left_out = load_analysable(emb_paths)  # every input checked before anything is written
    if len({clip.emb.shape[1] for clip in clips}) != 1:
        dims = ", ".join(f"{p.name}: {clip.emb.shape[1]}" for p, clip in zip(paths, clips, strict=True))
        raise InputError(f"embedding dimensions differ ({dims}); encode all clips with the same model")
    joint = analyze_joint([clip.emb for clip in clips], [clip.ts for clip in clips], params)
    for folder in dict.fromkeys(_output_dir(path, _opt_path(out_dir)) for path in paths):
        remove_dead_partials(folder)  # killed runs' temporary files (a live run's are kept)
    per_clip = []
    for path, clip, analysis in zip(paths, clips, joint.clips, strict=True):
        record = analysis_record(analysis, path, params, clip.meta, clip.emb_sha256)
        outputs = write_clip_outputs(analysis, path, _output_dir(path, _opt_path(out_dir)), record)
        per_clip.append({**record, "summary": plots.summary_line(analysis), "outputs": outputs})
    common = _opt_path(out_dir) or Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
    names = [clip_stem(p) for p in paths]
    joint_record = {
        "sources": [str(p) for p in paths],
        "match_threshold": joint.match_threshold,
        "matches": [
            {**dataclasses.asdict(m), "clip_a": names[m.clip_a], "clip_b": names[m.clip_b]}
            for m in joint.matches
        ],
        "clips": [
            {k: v for k, v in r.items() if k not in ("params", "outputs", "summary")} for r in per_clip
        ],
        # every clip's cycles, deviations against the medoid of all the worker's cycles
        "cycles": [
            {"clip": name, **dataclasses.asdict(cycle)}
            for name, clip_cycles in zip(names, joint.cycles, strict=True)
            for cycle in clip_cycles
        ],
        "cycle_duration_s": duration_summary([c for clip_cycles in joint.cycles for c in clip_cycles]),
        "left_out": left_out,  # clips too short to analyse, one line each
        "params": dataclasses.asdict(params),
    }
    joint_record = json_safe(joint_record)
    _ensure_dir(common)
    json_path = _save_json(common / "joint_analysis.json", joint_record)
    png_path = _save_png(common / "joint_diagnostics.png", plots.joint_figure(joint, names))
    clip_records = [{k: v for k, v in r.items() if k not in ("outputs", "summary")} for r in per_clip]
    report_path = report.write_report(common, clip_records, joint_record)
    for r in per_clip:
        r["outputs"] = {k: str(v) for k, v in r["outputs"].items()}
    joint_outputs = {"report": str(report_path), "json": str(json_path), "png": str(png_path)}
    return {**joint_record, "per_clip": per_clip, "outputs": joint_outputs}


def _opt_path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


# ----------------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python VJEPA/analyze.py",
        description=__doc__.split("\n\n")[0]
        + " Reads X_emb.npy + X_ts.npy written by VJEPA/encode.py; writes a diagnostic figure, a JSON "
        "summary and the raw signals beside each clip.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "paths",
        nargs="*",
        default=[str(DEFAULT_FOLDER)],
        help="folders (every *_emb.npy inside) or *_emb.npy files",
    )
    parser.add_argument(
        "--joint", action="store_true", help="also analyse all clips together (joint_analysis.json/.png)"
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: beside each clip)")
    add_options(parser, StructureParams)  # one option per setting, help and default from the field
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        params = validate(from_args(StructureParams, args))
        emb_paths = find_embeddings(args.paths)
        if args.joint:
            result = analyze_clips_jointly(emb_paths, args.out, params)
            for line in result["left_out"]:
                print(f"warning: {line}", file=sys.stderr)
            for clip in result["per_clip"]:
                print(f"{clip_stem(Path(clip['source']))}: {clip['n_windows']} windows, {clip['summary']}")
                print("  " + "  ".join(clip["outputs"].values()))
            print(f"joint: {len(result['matches'])} cross-clip matches")
            print("  " + "  ".join(result["outputs"].values()))
            return 0
        usable, _, left_out = load_analysable(emb_paths)  # every input checked before writing anything
        for line in left_out:
            print(f"warning: {line}", file=sys.stderr)
        records = []
        for path in usable:
            result = analyze_clip(path, args.out, params)
            print(f"{clip_stem(path)}: {result['n_windows']} windows, {result['summary']}")
            print("  " + "  ".join(result["outputs"].values()))
            records.append(result)
        folder = Path(records[0]["outputs"]["json"]).parent
        if all(Path(r["outputs"]["json"]).parent == folder for r in records):  # one folder: one page
            print(f"report: {report.write_report(folder, records)}")
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
