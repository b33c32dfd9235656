"""One small record per finished (or failed) clip, written last: the unit of resume and of the manifest.

    OUT/factory_001/.records/rectified_clip_1.json

A record is renamed into place only after the clip's outputs are verified, so a record means "these outputs
are complete". Clips finishing in parallel (two runs, many Ray tasks) each write their own record and never
race on a shared file; manifest.json is derived from the records (under a lock, see fisheye.pipeline).

    {"version": 1, "status": "done", "key": "00001", "output": "rectified_clip_1.mp4",
     "settings_hash": "3f2a...",
     "settings": {...}, "entry": {... the manifest entry: source, sizes, frame counts ...},
     "attempts": 1, "run_id": "host-123-ab12cd34", "finished_at": 1764683000.0}
    {"version": 1, "status": "failed", "output": "rectified_clip_3.mp4", "reason": "...", "attempts": 3, ...}

A rerun does a clip again when it has no record, a failure record, a record made with other settings
(another settings_hash), or when its output file is gone or has another size.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from egoclean.files import is_partial, write_json

RECORDS_DIR = ".records"
RECORD_VERSION = 1
DONE, FAILED = "done", "failed"
SKIPPED = "skipped"  # a clip another run finished: not a record's status, a stage's answer


def settings_hash(settings: dict) -> str:
    """A short, stable hash of the settings that shape the outputs."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def record_path(folder: Path, output_name: str) -> Path:
    return Path(folder) / RECORDS_DIR / (Path(output_name).stem + ".json")


def write_record(
    folder: Path,
    output_name: str,
    status: str,
    settings: dict,
    *,
    key: str | None = None,
    entry: dict | None = None,
    reason: str | None = None,
    attempts: int = 1,
    run_id: str | None = None,
) -> dict:
    """Write (atomically) and return the record of one clip."""
    record = {
        "version": RECORD_VERSION,
        "status": status,
        "key": key,
        "output": output_name,
        "settings_hash": settings_hash(settings),
        "settings": settings,
        "entry": entry,
        "reason": reason,
        "attempts": attempts,
        "run_id": run_id,
        "finished_at": round(time.time(), 3),
    }
    write_json(record_path(folder, output_name), record)
    return record


def read_record(folder: Path, output_name: str) -> dict | None:
    try:
        record = json.loads(record_path(folder, output_name).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("version") == RECORD_VERSION else None


def read_records(folder: Path) -> list[dict]:
    """Every readable record of the folder (temporary files skipped)."""
    records = []
    for path in sorted((Path(folder) / RECORDS_DIR).glob("*.json")):
        if is_partial(path):
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a damaged record only costs redoing its clip
        if isinstance(record, dict) and record.get("version") == RECORD_VERSION:
            records.append(record)
    return records


def is_done(record: dict | None, folder: Path, settings: dict) -> bool:
    """The record says done, with these settings, and its output is on disk with the recorded size."""
    if not record or record.get("status") != DONE or record.get("settings_hash") != settings_hash(settings):
        return False
    entry = record.get("entry") or {}
    output = Path(folder) / record["output"]
    return output.is_file() and output.stat().st_size == entry.get("size_bytes")
