"""A tiny random-init V-JEPA 2 saved like a real checkpoint, for CPU runs and tests (no download).

It loads through the very same `--model PATH` / `from_pretrained` path as facebook/vjepa2-vitl-fpc64-256;
its config carries `egoclean_random_init = True` so outputs made with it say so.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from transformers import VJEPA2Config, VJEPA2Model, VJEPA2VideoProcessor
from transformers.utils import logging as hf_logging

from egoclean.files import output_error, partial_path

TINY_CROP_SIZE = 32


def tiny_config() -> VJEPA2Config:
    """32 px crops, 2 layers of width 64: a few milliseconds per window on a CPU."""
    config = VJEPA2Config(
        crop_size=TINY_CROP_SIZE,
        patch_size=16,
        frames_per_clip=4,
        tubelet_size=2,
        hidden_size=64,
        num_attention_heads=4,
        num_hidden_layers=2,
        mlp_ratio=2.0,
        pred_hidden_size=32,
        pred_num_attention_heads=2,
        pred_num_hidden_layers=1,
        pred_num_mask_tokens=2,
    )
    config.egoclean_random_init = True  # saved into config.json; read back by the embedder
    return config


def save_tiny_model(folder: Path, seed: int = 0) -> Path:
    """Build the tiny model with torch seeded by `seed`, save it and its processor config to `folder`.

    The same seed gives byte-identical weights. Returns `folder`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VJEPA2Model(tiny_config())
    hf_logging.disable_progress_bar()  # a one-file save needs no progress bar in the run's log
    model.save_pretrained(folder)
    VJEPA2VideoProcessor(crop_size=TINY_CROP_SIZE).save_pretrained(folder)
    return folder


def is_saved_model(folder: Path) -> bool:
    """A complete save: its config and its weights."""
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def save_stand_in(folder: Path) -> None:
    """save_tiny_model into a temporary folder renamed into place once complete: save_pretrained writes
    config.json before the weights, so a run killed mid-save would leave a folder that looks finished. An
    incomplete folder (from before) is replaced; one that another run completed meanwhile is kept."""
    folder = Path(folder)
    tmp = partial_path(folder)
    try:
        save_tiny_model(tmp)
        if folder.exists() and not is_saved_model(folder):
            shutil.rmtree(folder)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not is_saved_model(folder):  # not another run's complete save: a real failure
                raise
    except OSError as err:
        raise output_error(folder, err) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def pick_model(model_id: str, folder: Path) -> tuple[str, str]:
    """For the offline sample run: `model_id` if its weights are usable here, else the tiny stand-in.

    Usable: a local folder, or a Hub id already in the local cache, and a GPU to run it on (one ViT-L window
    takes ~91 s on 2 CPU cores). Returns (model to use, one line saying why).
    """
    from huggingface_hub import try_to_load_from_cache

    on_gpu = torch.cuda.is_available() or torch.backends.mps.is_available()
    present = Path(model_id).is_dir() or isinstance(try_to_load_from_cache(model_id, "config.json"), str)
    if present and on_gpu:
        return model_id, f"using {model_id} (real weights found locally)"
    why = "no GPU here" if present else f"no {model_id} weights are available offline"
    if not is_saved_model(folder):
        save_stand_in(folder)
    return str(folder), (
        f"{why}: the sample run uses a small RANDOM-INIT V-JEPA 2 stand-in ({folder}); its embeddings show "
        "the pipeline working, not real V-JEPA 2 features"
    )
