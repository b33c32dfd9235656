"""The file-name contract between the phases: where phase 1 puts a worker's clips and what phase 2 writes
beside them. Both phases import these names; neither spells a file name of its own.

    OUT/factory_001/rectified_clip_1.mp4            phase 1: from factory001_worker001_00001
    OUT/factory_001/rectified_clip_1_preview.jpg    phase 1: before/after picture
    OUT/factory_001/intrinsics.json                 phase 1: the rectified pinhole camera
    OUT/factory_001/manifest.json                   phase 1: which source clip became which output, in order
    OUT/factory_001/rectified_clip_1_emb.npy        phase 2a: [N, D] window embeddings
    OUT/factory_001/rectified_clip_1_ts.npy         phase 2a: [N] window start times, s
    OUT/factory_001/rectified_clip_1_emb.json       phase 2a: the settings and facts behind them
    OUT/factory_001/rectified_clip_1_analysis.json  phase 2b: period, boundaries, repeats, anomalies, ...
    OUT/factory_001/rectified_clip_1_distance.npy   phase 2b: consecutive cosine distance [N-1]
    OUT/factory_001/rectified_clip_1_autocorr.npy   phase 2b: autocorrelation, lag 0..max
    OUT/factory_001/rectified_clip_1_diagnostics.png phase 2b: the clip's figure
    OUT/factory_001/joint_analysis.json             phase 2b: all clips of the worker together
    OUT/factory_001/report.html                     phase 2b: the clickable report
    OUT/factory_001/worker_002/...                  the same for another worker of that factory

Clips are ordered by clip index, never as text (rectified_clip_2 before rectified_clip_10): the manifest's
order when there is one, a natural sort of the file names otherwise.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from egoclean.files import is_partial

MANIFEST_FILE = "manifest.json"
CAMERA_FILE = "intrinsics.json"
EMB_SUFFIX, TS_SUFFIX, META_SUFFIX = "_emb.npy", "_ts.npy", "_emb.json"
ANALYSIS_SUFFIX = "_analysis.json"
EMB_SHA256 = "embedding_sha256"  # the analysis JSON's key for the X_emb.npy it was computed from
# A clip's analysis outputs by role (VJEPA/analyze.py writes them): derived from its embeddings alone
ANALYSIS_OUTPUTS = {
    "json": ANALYSIS_SUFFIX,
    "distance": "_distance.npy",
    "autocorr": "_autocorr.npy",
    "png": "_diagnostics.png",
}
JOINT_ANALYSIS_FILE = "joint_analysis.json"
REPORT_FILE = "report.html"  # phase 2b: the page a person clicks through (VJEPA/report.py)
DEFAULT_WORKER_DIR = "worker_001"  # the seed's worker writes straight into OUT/factory_XXX
DEFAULT_OUT = Path("data")  # phase 1's --out
DEFAULT_FOLDER = DEFAULT_OUT / "factory_001"  # the seed's worker's folder: phase 2's default input


def output_dir(out: Path, factory: str, worker: str) -> Path:
    """OUT/factory_001 for worker_001 (the seed's layout), OUT/factory_001/worker_002 for the others."""
    base = Path(out) / factory
    return base if worker == DEFAULT_WORKER_DIR else base / worker


def rectified_name(clip_index: int) -> str:
    """The phase-1 output name of dataset clip `clip_index`: rectified_clip_1.mp4."""
    return f"rectified_clip_{clip_index}.mp4"


def preview_name(video_name: str) -> str:
    return Path(video_name).stem + "_preview.jpg"


def embedding_paths(video: Path, out_dir: Path | None = None) -> tuple[Path, Path, Path]:
    """(X_emb.npy, X_ts.npy, X_emb.json) of clip X.mp4, beside it or in out_dir."""
    folder = Path(out_dir) if out_dir is not None else Path(video).parent
    stem = Path(video).stem
    return folder / f"{stem}{EMB_SUFFIX}", folder / f"{stem}{TS_SUFFIX}", folder / f"{stem}{META_SUFFIX}"


def analysis_paths(emb_path: Path, out_dir: Path | None = None) -> dict[str, Path]:
    """The analysis outputs of the embeddings X_emb.npy by role (ANALYSIS_OUTPUTS): X_analysis.json,
    X_distance.npy, X_autocorr.npy and X_diagnostics.png, beside the embeddings or in out_dir."""
    folder = Path(out_dir) if out_dir is not None else Path(emb_path).parent
    stem = stem_of_embedding(emb_path)
    return {role: folder / f"{stem}{suffix}" for role, suffix in ANALYSIS_OUTPUTS.items()}


def stem_of_embedding(emb_path: Path) -> str:
    """rectified_clip_1_emb.npy -> rectified_clip_1"""
    name = Path(emb_path).name
    return name[: -len(EMB_SUFFIX)] if name.endswith(EMB_SUFFIX) else Path(name).stem


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs as numbers (clip_2 < clip_10) and ignores case. re.split with a group
    alternates text and digits, text first, so keys always compare like with like."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name))


def natural_sorted(paths: list[Path]) -> list[Path]:
    return sorted(paths, key=lambda p: natural_key(p.name))


def manifest_clips(folder: Path) -> list[Path] | None:
    """The rectified clips that folder's manifest.json records, in clip-index order; None without a
    readable manifest. Entries whose file is missing are left out (the manifest may be ahead of a copy)."""
    path = Path(folder) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
        entries = manifest["clips"]
        indexed = sorted((int(key), entry["output"]) for key, entry in entries.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return [Path(folder) / name for _, name in indexed if (Path(folder) / name).is_file()]


def list_clips(folder: Path) -> list[Path]:
    """The folder's rectified clips in order: the manifest's when phase 1 wrote one, else every *.mp4
    (no temporary files) in natural order."""
    from_manifest = manifest_clips(folder)
    if from_manifest:
        return from_manifest
    return natural_sorted([p for p in Path(folder).glob("*.mp4") if not is_partial(p)])


def list_embeddings(folder: Path) -> list[Path]:
    """The folder's X_emb.npy files in clip order (the manifest's, then natural order for the rest)."""
    found = {p.name: p for p in Path(folder).glob(f"*{EMB_SUFFIX}") if not is_partial(p)}
    ordered = [embedding_paths(clip)[0] for clip in manifest_clips(folder) or []]
    first = [p for p in ordered if p.name in found]
    rest = natural_sorted([p for name, p in found.items() if p not in first])
    return first + rest
