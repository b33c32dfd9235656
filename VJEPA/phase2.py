"""Phase 2 for one folder of rectified clips, from Python: embed every clip, then analyse them together.

    from VJEPA.phase2 import run_phase2
    result = run_phase2(Path("data/factory_001"), EncodeSettings(), StructureParams())

The same flow as `python VJEPA/encode.py FOLDER` followed by `python VJEPA/analyze.py FOLDER --joint`;
`bash run.sh 2` calls it. Clips come in clip order (egoclean.layout.list_clips: the manifest's).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from egoclean.engine import DEFAULT_MAX_RETRIES
from egoclean.errors import InputError
from egoclean.layout import list_clips, stem_of_embedding
from egoclean.progress import Progress
from VJEPA.analyze import analyze_clips_jointly
from VJEPA.embedder import Encoder
from VJEPA.encode import EncodeResult, encode_clips
from VJEPA.settings import EncodeSettings
from VJEPA.structure import StructureParams


@dataclass
class Phase2Result:
    encoded: list[EncodeResult]
    failures: list[str]  # one line per clip that could not be embedded
    analysis: dict  # analyze_clips_jointly's result
    outputs: list[Path]  # the files a person looks at first: the report, then figures and JSON


def run_phase2(
    folder: Path,
    settings: EncodeSettings,
    params: StructureParams | None = None,
    progress: Progress | None = None,
    encoder: Encoder | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    retry_failed: bool = False,
) -> Phase2Result:
    """Embed every rectified clip in `folder` with V-JEPA 2, then analyse each and all together (the
    joint analysis). Clips that fail to embed are reported and left out of the analysis. Clips whose
    embeddings match the settings (made earlier, or in one pass with phase 1) are not embedded again.
    encoder: a model already loaded (else `settings.model` is loaded).
    max_retries, retry_failed: a clip whose embedding killed the process 1 + max_retries times in a row
    (over reruns) is left out, unless retry_failed forgets those deaths (VJEPA.encode.encode_clips)."""
    progress = progress or Progress()
    clips = list_clips(folder)
    if not clips:
        raise InputError(f"{folder}: no rectified clips; run phase 1 first (bash run.sh 1)")
    encoded, failures = encode_clips(clips, settings, None, progress, encoder, max_retries, retry_failed)
    if not encoded:
        raise InputError(f"{folder}: no clip could be embedded (see the errors above)")
    emb_paths = [r.emb_path for r in encoded]
    params = params or StructureParams()
    analysis = analyze_clips_jointly(emb_paths, None, params)
    for line in analysis["left_out"]:
        progress.log(f"warning: {line}")
    outputs = [Path(analysis["outputs"]["report"])]
    for clip in analysis["per_clip"]:
        outputs += [Path(clip["outputs"]["png"]), Path(clip["outputs"]["json"])]
        progress.log(f"{stem_of_embedding(Path(clip['source']))}: {clip['summary']}")
    outputs += [Path(analysis["outputs"]["png"]), Path(analysis["outputs"]["json"])]
    return Phase2Result(encoded=encoded, failures=failures, analysis=analysis, outputs=outputs)
