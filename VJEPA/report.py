"""Phase 2 report: one self-contained HTML page per output folder that a person can click through.

    python -m VJEPA.report data/factory_001          # reads *_analysis.json (+ joint_analysis.json)

Writes FOLDER/report.html and FOLDER/report_thumbs/*.jpg (one still per anomaly, its middle frame). The
page needs no network: its script and style are inlined, the clips' mp4s are linked by relative path, and
the data sits in the page as one JSON block. Per clip it shows the video, a timeline of cycle boundaries,
repeats, change points and anomalies (click to seek), the self-similarity matrix (click (i, j): play time
i, show time j beside it), the anomaly list with thumbnails (keys n / p: next / previous anomaly), the
cycle table when the analysis has one, and the clip's facts; on top, all clips end to end with the
cross-clip matches.

Scale: a worker with 50 clips of 20 minutes (1,200 windows each) gives a page of a few MB. The only
per-clip matrix is the self-similarity, block-averaged to at most MAX_SSM cells a side and stored as
uint8 base64 (40 kB for 200 x 200); clips are drawn only when scrolled near (IntersectionObserver).
Pure numpy and PyAV here: no torch, no OpenCV.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from egoclean.cli import run_main
from egoclean.config import HelpFormatter
from egoclean.errors import EgoCleanError, InputError
from egoclean.files import atomic_output, file_sha256, remove_dead_partials
from egoclean.layout import (
    ANALYSIS_SUFFIX,
    EMB_SHA256,
    EMB_SUFFIX,
    JOINT_ANALYSIS_FILE,
    REPORT_FILE,
    TS_SUFFIX,
    natural_key,
    stem_of_embedding,
)
from egoclean.video import frame_at, probe

THUMB_DIR = "report_thumbs"
RESUME_ONLY_FACTS = ("source_size", "source_mtime_ns")
MAX_SSM = 200  # cells a side of the similarity image in the page
THUMB_WIDTH = 240  # px; the list shows them at about 160 px, so this stays sharp on a 1.5x screen
POSTER_WIDTH = 640  # px; the player's still before it plays (about 700 px wide on a laptop)
ASSETS = Path(__file__).with_name("report_assets")


# ----------------------------------------------------------------------------------------------------------
# Naming and finding files


def clip_name(record: dict[str, Any]) -> str:
    """rectified_clip_3 from a record whose `source` is .../rectified_clip_3_emb.npy."""
    return stem_of_embedding(Path(str(record.get("source", "clip"))))


def _candidates(folder: Path, record: dict[str, Any], filename: str) -> list[Path]:
    """Where a clip's sibling file may be: the report folder first (it travels with the page), then beside
    the embedding the record names (analysis written with --out elsewhere)."""
    found = [folder / filename]
    source = record.get("source")
    if source:
        found.append(Path(str(source)).with_name(filename))
    return found


def _first_existing(paths: Sequence[Path]) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def find_video(folder: Path, record: dict[str, Any]) -> Path | None:
    name = clip_name(record)
    paths = _candidates(folder, record, f"{name}.mp4")
    encoder_source = (record.get("encoder") or {}).get("source")
    if encoder_source:
        paths.append(Path(str(encoder_source)))
    return _first_existing(paths)


def relative_url(target: Path, folder: Path) -> str:
    """A relative URL from the page in `folder` to `target` (each segment percent-encoded)."""
    try:
        rel = Path(os.path.relpath(target.resolve(), folder.resolve()))
    except ValueError:  # another drive on Windows: an absolute file URL is the only way
        return target.resolve().as_uri()
    return "/".join(quote(part) for part in rel.parts)


# ----------------------------------------------------------------------------------------------------------
# Self-similarity, thumbnails


def similarity_image(emb: np.ndarray, max_size: int = MAX_SSM) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cosine self-similarity of the L2-normalised rows, block-averaged to at most max_size a side.

    The mean of S over a block of k x k windows equals (mean of those rows) . (mean of those rows), so no
    N x N matrix is formed. Cells are stored as their rank: value v means the similarity lies between
    levels[v] and levels[v + 1] (levels: 257 quantiles). One strong anomaly would otherwise squeeze the
    cycle's contrast into a handful of the 256 steps, as it would a linear colour scale (the PNG equalises
    its colours for the same reason). Returns (image uint8 [M, M], first window of each block [M], levels).
    """
    u = np.asarray(emb, dtype=np.float64)
    u = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-30)
    k = max(1, math.ceil(len(u) / max_size))
    starts = np.arange(0, len(u), k)
    means = np.add.reduceat(u, starts, axis=0) / np.diff(np.append(starts, len(u)))[:, None]
    sim = means @ means.T
    levels = np.quantile(sim, np.linspace(0.0, 1.0, 257))
    image = np.clip(np.searchsorted(levels, sim, side="right") - 1, 0, 255).astype(np.uint8)
    return image, starts, levels


def write_thumbnail(video: Path, time_s: float, path: Path, width: int = THUMB_WIDTH) -> bool:
    """Write the still at `time_s` to `path` (JPEG, atomically); False when the video cannot give it."""
    from PIL import Image  # Pillow comes with matplotlib

    try:
        rgb = frame_at(video, time_s, width)
    except (EgoCleanError, OSError):
        return False
    if rgb is None:
        return False
    with atomic_output(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="JPEG", quality=82)
    return True


# ----------------------------------------------------------------------------------------------------------
# The page's data


def _round(value: Any, digits: int = 3) -> Any:
    """Floats rounded (the page shows tenths of a second; full precision would double its size)."""
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _round(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v, digits) for v in value]
    return value


def _duration_s(record: dict[str, Any], video: Path | None, ts: np.ndarray | None) -> float:
    """Clip length: the encoder's frame count, else the video's header, else the last window's end."""
    encoder = record.get("encoder") or {}
    if encoder.get("n_frames") and encoder.get("fps"):
        return float(encoder["n_frames"]) / float(encoder["fps"])
    if video is not None:
        try:
            duration = probe(video).duration_s
            if duration > 0:
                return duration
        except EgoCleanError:
            pass
    stride = float(record.get("stride_s") or 1.0)
    if ts is not None and len(ts):
        return float(ts[-1]) + stride
    return float(record.get("n_windows") or 0) * stride


def _load_optional(path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None


def clip_data(folder: Path, record: dict[str, Any], thumbs: bool = True) -> dict[str, Any]:
    """Everything the page shows for one clip, JSON-ready; writes the anomaly thumbnails."""
    name = clip_name(record)
    video = find_video(folder, record)
    emb = _load_optional(_first_existing(_candidates(folder, record, name + EMB_SUFFIX)))
    ts = _load_optional(_first_existing(_candidates(folder, record, name + TS_SUFFIX)))
    stride = float(record.get("stride_s") or 1.0)
    if emb is not None and (emb.ndim != 2 or len(emb) == 0):
        emb = None
    if ts is None and emb is not None:
        ts = np.arange(len(emb)) * stride
    ssm = None
    if emb is not None and ts is not None and len(ts) == len(emb):
        image, starts, levels = similarity_image(emb)
        ssm = {
            "size": len(starts),
            "t": [round(float(ts[i]), 3) for i in starts],
            "levels": [round(float(v), 5) for v in levels],
            "b64": base64.b64encode(image.tobytes()).decode("ascii"),
        }
    duration = _duration_s(record, video, ts)

    def still(filename: str, time_s: float, width: int = THUMB_WIDTH) -> str | None:
        """URL of a still of the video at time_s, written unless an up-to-date one is there already."""
        if not thumbs or video is None:
            return None
        path = folder / THUMB_DIR / filename
        fresh = path.is_file() and path.stat().st_mtime_ns >= video.stat().st_mtime_ns
        if fresh or write_thumbnail(video, time_s, path, width):
            return f"{THUMB_DIR}/{quote(path.name)}"
        return None

    anomalies = []
    for k, span in enumerate(record.get("anomalies") or []):
        middle = (float(span["start_s"]) + float(span["end_s"])) / 2
        # the time is in the name: a rerun that finds other anomalies never shows a stale still
        thumb = still(f"{name}_anomaly_{k}_{round(middle * 1000)}ms.jpg", middle)
        anomalies.append({**span, **({"thumb": thumb} if thumb else {})})
    keys = ("n_windows", "stride_s", "period_s", "period_confidence", "n_cycles", "boundaries_s")
    data: dict[str, Any] = {
        "name": name,
        "video": relative_url(video, folder) if video is not None else None,
        # the player shows this until it plays: with preload="metadata" it would otherwise stay black
        "poster": still(f"{name}_poster.jpg", 0.1 * duration, POSTER_WIDTH),
        "duration_s": duration,
        **{k: record.get(k) for k in keys},
        "change_points_s": record.get("change_points_s") or [],
        "repeats": record.get("repeats") or [],
        "anomalies": anomalies,
        # the facts a person reads; the file's size and mtime only serve encode.py's resume check
        "encoder": {k: v for k, v in (record.get("encoder") or {}).items() if k not in RESUME_ONLY_FACTS},
        "ssm": ssm,
    }
    for optional in ("cycles", "cycle_duration_s"):  # written by newer analyses only
        if optional in record:
            data[optional] = record[optional]
    return _round(data)


def joint_data(joint_record: dict[str, Any] | None, names: Sequence[str]) -> dict[str, Any] | None:
    """The cross-clip matches between clips that are on the page."""
    if not joint_record:
        return None
    known = set(names)
    matches = [m for m in joint_record.get("matches") or [] if m["clip_a"] in known and m["clip_b"] in known]
    return _round({"match_threshold": joint_record.get("match_threshold"), "matches": matches})


# ----------------------------------------------------------------------------------------------------------
# The page


def embed_json(data: Any) -> str:
    """JSON safe inside <script type="application/json">: no `</`, `<!--` or `]]>` can appear.

    Escaping every <, > and & as \\u00XX keeps the JSON valid (JSON.parse reads them back); U+2028/9
    are escaped too so the text is also valid as a JavaScript literal.
    """
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _asset(name: str) -> str:
    text = (ASSETS / name).read_text(encoding="utf-8")
    if re.search(r"</(script|style)", text, re.IGNORECASE):  # would end the inline block early
        raise ValueError(f"{ASSETS / name} contains a closing </script or </style tag")
    return text


def render_page(title: str, data: dict[str, Any]) -> str:
    """The whole HTML document (style and script inline)."""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
{_asset("report.css")}
</style>
</head>
<body>
<header class="top">
<h1>{html.escape(title)}</h1>
<p class="hint">Click any mark to seek. Keys: <kbd>n</kbd> / <kbd>p</kbd> next / previous anomaly,
<kbd>←</kbd> <kbd>→</kbd> on a timeline: previous / next mark, <kbd>Space</kbd>: play or pause.</p>
</header>
<main id="report"><noscript>This report needs JavaScript.</noscript></main>
<script type="application/json" id="report-data">{embed_json(data)}</script>
<script>
{_asset("report.js")}
</script>
</body>
</html>
"""


def write_report(folder: Path, clip_records: list[dict], joint_record: dict | None = None) -> Path:
    """Write folder/report.html (and its anomaly thumbnails) for one worker; returns the page's path.

    clip_records: the per-clip analysis JSON records as analyze.py writes them (their `source` names the
    embedding; the video is rectified_clip_N.mp4 in `folder` or beside the embedding). joint_record: the
    content of joint_analysis.json, if any. Clips appear in natural order of their names.
    """
    folder = Path(folder)
    for swept in (folder, folder / THUMB_DIR):
        remove_dead_partials(swept)  # killed runs' temporary files (a live run's are kept)
    records = sorted(clip_records, key=lambda r: natural_key(clip_name(r)))
    clips = [clip_data(folder, r) for r in records]
    names = [c["name"] for c in clips]
    data = {"folder": folder.resolve().name, "clips": clips, "joint": joint_data(joint_record, names)}
    title = f"EgoClean report: {_worker_title(folder)}"
    path = folder / REPORT_FILE
    with atomic_output(path) as tmp:
        tmp.write_text(render_page(title, data), encoding="utf-8")
    return path


def _worker_title(folder: Path) -> str:
    """factory_001 or factory_001/worker_007, from the folder layout phase 1 writes."""
    parts = folder.resolve().parts
    return "/".join(parts[-2:]) if parts[-1].startswith("worker_") else parts[-1]


# ----------------------------------------------------------------------------------------------------------
# Command line


def read_folder(folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None, list[str]]:
    """The per-clip records (*_analysis.json, not joint_analysis.json) and the joint record of a folder,
    without what is out of date (outdated, current_joint), and one line per thing left out."""
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder; give the folder analyze.py wrote to")
    records, left_out = [], []
    rerun = f"rerun python VJEPA/analyze.py {folder} --joint"
    for path in sorted(folder.glob(f"*{ANALYSIS_SUFFIX}"), key=lambda p: natural_key(p.name)):
        if path.name == JOINT_ANALYSIS_FILE:
            continue
        record = _read_json(path)
        why = outdated(folder, record)
        if why is None:
            records.append(record)
        else:
            left_out.append(f"{path}: {why}; left out of the report ({rerun})")
    if not records and left_out:
        raise InputError(f"{folder}: every analysis there is out of date ({left_out[0]})")
    if not records:
        raise InputError(f"{folder}: no *{ANALYSIS_SUFFIX} file; run python VJEPA/analyze.py {folder} first")
    joint_path = folder / JOINT_ANALYSIS_FILE
    joint, changed = current_joint(_read_json(joint_path) if joint_path.is_file() else None, records)
    if changed:
        left_out.append(
            f"{joint_path}: made before {', '.join(changed)} was analysed again; its matches with "
            f"{'them' if len(changed) > 1 else 'it'} are left out of the report ({rerun})"
        )
    return records, joint, left_out


def outdated(folder: Path, record: dict[str, Any]) -> str | None:
    """Why an analysis record no longer describes its clip: the X_emb.npy it was computed from (its
    SHA-256 is in the record) is gone, or another since (the clip was embedded again). None when it is
    current, or when the record is from before analyses named their embeddings."""
    digest = record.get(EMB_SHA256)
    if not digest:
        return None
    name = clip_name(record)
    emb = _first_existing(_candidates(folder, record, name + EMB_SUFFIX))  # the one the page would show
    if emb is None:
        return f"its embeddings ({name}{EMB_SUFFIX}) are gone: embed the clip again (python VJEPA/encode.py)"
    try:
        if file_sha256(emb) == digest:
            return None
    except OSError as err:
        return f"{emb} cannot be read ({err.strerror or err})"
    return f"{emb} has changed since it was analysed (the clip was embedded again)"


def current_joint(
    joint: dict[str, Any] | None, records: list[dict[str, Any]]
) -> tuple[dict[str, Any] | None, list[str]]:
    """The joint record without the matches of clips whose analysis is newer than it (their embeddings
    differ from those the joint analysis used), and the names of those clips."""
    if joint is None:
        return None, []
    now = {clip_name(r): r.get(EMB_SHA256) for r in records}
    used = {clip_name(c): c.get(EMB_SHA256) for c in joint.get("clips") or [] if isinstance(c, dict)}
    changed = sorted((name for name in used if name in now and used[name] != now[name]), key=natural_key)
    if not changed:
        return joint, []
    matches = [m for m in joint.get("matches") or [] if not {m.get("clip_a"), m.get("clip_b")} & set(changed)]
    return {**joint, "matches": matches}, changed


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc}); rerun python VJEPA/analyze.py") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object; rerun python VJEPA/analyze.py")
    return data


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m VJEPA.report",
        description="Write FOLDER/report.html from the analysis in FOLDER.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "folder", type=Path, help="a folder holding *_analysis.json (and joint_analysis.json)"
    )
    args = parser.parse_args(argv)

    def body() -> int:
        records, joint, left_out = read_folder(args.folder)
        for line in left_out:
            print(f"warning: {line}", file=sys.stderr)
        try:
            print(write_report(args.folder, records, joint))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:  # hand-edited, or old
            raise InputError(
                f"{args.folder}: an analysis file there is not one analyze.py wrote "
                f"({err.__class__.__name__}: {err}); rerun python VJEPA/analyze.py {args.folder} --joint"
            ) from err
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
