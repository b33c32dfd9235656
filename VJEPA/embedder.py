"""Load a V-JEPA 2 encoder through transformers and turn streamed window batches into embeddings.

One embedding per window = the mean of all its patch tokens from `model.get_vision_features` (the encoder
only; the predictor never runs): [T/2 * (crop/16)^2, D] -> [D]. With crop mode "three" the three crops are
embedded separately and their embeddings averaged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub.utils import logging as hub_logging
from transformers import AutoConfig, AutoModel, VJEPA2VideoProcessor
from transformers.utils import logging as hf_logging

from egoclean.errors import EgoCleanError
from egoclean.video import Frame
from VJEPA.preprocess import CropMode, PreprocessSpec
from VJEPA.stream import StreamStats, iter_window_batches

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ModelError(EgoCleanError):
    """The model's weights cannot be found, or the model does not fit the preprocessing or settings."""


@dataclass
class Encoder:
    """A loaded V-JEPA 2 model in eval mode, with what preprocessing it needs."""

    model: Any  # transformers.VJEPA2Model; typed loosely: its get_vision_features is not in torch stubs
    model_id: str  # Hub id or local folder, as given
    random_init: bool  # True for a test model with random weights (config flag egoclean_random_init)
    spec: PreprocessSpec
    tubelet_size: int
    hidden_size: int
    device: torch.device
    dtype: torch.dtype
    sdpa_backend: str  # the attention kernel asked for: cudnn, flash, efficient, or "default" (CPU, MPS)
    n_tokens_per_window: Callable[[int], int]  # frames per window -> tokens per window and view


# Attention is 57% of ViT-L's FLOPs at 8,192 tokens (docs/SCALE.md): the kernel decides throughput.
# cuDNN's fused attention is the fastest on Hopper, flash on Ampere and Ada; older cards get the
# memory-efficient kernel. CPU and MPS keep PyTorch's own choice.
SDPA_BY_ARCH = ((9, "cudnn"), (8, "flash"), (0, "efficient"))


def pick_sdpa_backend(device: torch.device) -> str:
    if device.type != "cuda":
        return "default"
    major, _ = torch.cuda.get_device_capability(device)
    return next(name for min_major, name in SDPA_BY_ARCH if major >= min_major)


def sdpa_context(backend: str, fallbacks: bool = True) -> Any:
    """A context manager under which scaled_dot_product_attention tries `backend` first, then the
    memory-efficient kernel, then the math one (or only `backend` with fallbacks=False, which raises where
    it cannot run: for measuring one kernel); "default" changes nothing."""
    from contextlib import nullcontext

    if backend == "default":
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kernel = {
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
    }[backend]
    kernels = [kernel, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH] if fallbacks else [kernel]
    # set_priority: without it the list only enables kernels and PyTorch's own order (flash, efficient,
    # math, cudnn) picks among them, so "cudnn" would run the efficient kernel.
    return sdpa_kernel(kernels, set_priority=True)


# Bytes of activation memory per window token at batch 1, a conservative bound for ViT-L inference: the
# MLP's 4x-wide hidden state plus the residual stream and attention output, times 2 for allocator slack.
ACTIVATION_BYTES_PER_TOKEN_PER_DIM = 2 * (4 + 3)
GPU_MEMORY_MARGIN_BYTES = 2 << 30  # left free for the CUDA context, cuDNN workspaces and the decoder
MAX_AUTO_BATCH = 64


def auto_batch_size(encoder: Encoder, window: int, n_views: int) -> int:
    """Windows per model call that fit in the GPU's free memory (8 off the GPU, where memory is not the
    limit and larger batches only add latency)."""
    if encoder.device.type != "cuda":
        return 8
    free_bytes, _ = torch.cuda.mem_get_info(encoder.device)
    element = torch.finfo(encoder.dtype).bits // 8
    per_window = (
        n_views * encoder.n_tokens_per_window(window) * encoder.hidden_size
        * ACTIVATION_BYTES_PER_TOKEN_PER_DIM * element
    )  # fmt: skip
    return max(1, min(MAX_AUTO_BATCH, (free_bytes - GPU_MEMORY_MARGIN_BYTES) // per_window))


def resolve_device(name: str = "auto") -> torch.device:
    """Device for a name: auto = cuda if available, then mps, then cpu; else torch.device(name)."""
    if name != "auto":
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ModelError(
                f"--device {name}: no CUDA GPU is visible to PyTorch here; use --device auto or cpu"
            )
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise ModelError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ModelError(f"--device {name}: Apple's MPS is not available here; use --device auto or cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """Dtype for a name: auto = bfloat16 on a CUDA GPU that has it (Ampere and newer: fp16's range without
    its overflow risk, at the same speed), float16 on older GPUs, float32 elsewhere."""
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name not in DTYPES:
        raise ModelError(f"dtype {name!r} is not one of {sorted(DTYPES)} or auto")
    return DTYPES[name]


def _looks_local(model_id: str) -> bool:
    return Path(model_id).exists() or model_id.startswith((".", "/", "~")) or model_id.count("/") > 1


def _how_to_get(model_id: str) -> str:
    if _looks_local(model_id):
        return f"model folder {model_id}: not found or has no config.json; pass --model a saved model folder"
    return (
        f"model {model_id} is not in the Hugging Face cache and cannot be downloaded here: run "
        f"`huggingface-cli download {model_id}` on a machine with internet (or copy its cache), "
        "or pass --model /path/to/folder"
    )


def load_preprocess_spec(model_id: str, crop_size: int) -> PreprocessSpec:
    """Size, mean and std from the model's processor config if any, else the defaults for `crop_size`."""
    try:
        processor = VJEPA2VideoProcessor.from_pretrained(model_id)
    except (OSError, ValueError):
        return PreprocessSpec.for_crop(crop_size)
    processor_crop = processor.crop_size.height
    if processor.crop_size.width != processor_crop or processor.size.shortest_edge is None:
        raise ModelError(
            f"{model_id}: processor config wants a non-square crop or no shortest edge; not supported"
        )
    return PreprocessSpec(
        crop_size=processor_crop,
        shortest_edge=processor.size.shortest_edge,
        mean=tuple(processor.image_mean),
        std=tuple(processor.image_std),
    )


def load_encoder(model_id: str, device: str = "auto", dtype: str = "auto", compile: bool = False) -> Encoder:
    """Load a V-JEPA 2 checkpoint (Hub id or local folder) with SDPA attention, in eval mode.

    Raises ModelError when no weights are reachable, when the checkpoint is not V-JEPA 2, or when its
    processor's crop size differs from the model's crop size (RoPE positions come from config.crop_size).
    """
    hf_logging.disable_progress_bar()
    hub_logging.set_verbosity_error()  # its retry lines: the ModelError below says it all
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    if _looks_local(model_id) and not (Path(model_id).expanduser() / "config.json").is_file():
        raise ModelError(_how_to_get(model_id))
    try:
        # The cache first: no network round trip (or retries when offline) for a model already downloaded.
        config = AutoConfig.from_pretrained(model_id, local_files_only=True)
    except (OSError, ValueError):
        try:
            config = AutoConfig.from_pretrained(model_id)
        except (OSError, ValueError) as err:
            raise ModelError(_how_to_get(model_id)) from err
    if config.model_type != "vjepa2":
        raise ModelError(f"{model_id} is a {config.model_type!r} model, not V-JEPA 2 (vjepa2)")
    spec = load_preprocess_spec(model_id, config.crop_size)
    if spec.crop_size != config.crop_size:
        raise ModelError(
            f"{model_id}: processor crops {spec.crop_size} px but the model's RoPE positions are built for "
            f"{config.crop_size} px (config.crop_size); fix the processor config to match"
        )
    try:
        model = AutoModel.from_pretrained(model_id, attn_implementation="sdpa", dtype=torch_dtype)
    except (OSError, ValueError) as err:
        raise ModelError(_how_to_get(model_id)) from err
    model.to(torch_device).eval()
    if compile:  # one-off compile time for faster steady state; worth it for a whole worker, not a clip
        model.get_vision_features = torch.compile(model.get_vision_features, dynamic=False)
    patches_per_frame = (config.crop_size // config.patch_size) ** 2
    return Encoder(
        model=model,
        model_id=model_id,
        random_init=bool(getattr(config, "egoclean_random_init", False)),
        spec=spec,
        tubelet_size=config.tubelet_size,
        hidden_size=config.hidden_size,
        device=torch_device,
        dtype=torch_dtype,
        sdpa_backend=pick_sdpa_backend(torch_device),
        n_tokens_per_window=lambda frames: frames // config.tubelet_size * patches_per_frame,
    )


def embed_pixels(encoder: Encoder, pixels: torch.Tensor) -> torch.Tensor:
    """[B, V, T, 3, crop, crop] -> float32 [B, D] on the host: mean over tokens, then over the V crops."""
    n_windows, n_views, n_frames, _, height, width = pixels.shape
    crop = encoder.spec.crop_size
    if (height, width) != (crop, crop):
        raise ModelError(f"input is {height}x{width} px but the model wants {crop}x{crop} (config.crop_size)")
    if n_frames % encoder.tubelet_size:
        raise ModelError(
            f"window of {n_frames} frames is not a multiple of the tubelet size {encoder.tubelet_size}"
        )
    try:
        with torch.inference_mode(), sdpa_context(encoder.sdpa_backend):
            tokens = encoder.model.get_vision_features(pixels.flatten(0, 1))  # [B*V, tokens, D]
            embeddings = tokens.mean(dim=1, dtype=torch.float32).view(n_windows, n_views, -1).mean(dim=1)
    except torch.OutOfMemoryError as err:
        if encoder.device.type == "cuda":
            torch.cuda.empty_cache()  # the next clip starts from a clean pool
        smaller = max(1, n_windows // 2)
        raise ModelError(
            f"{encoder.device} ran out of memory on a batch of {n_windows} window(s) x {n_views} view(s) "
            f"of {n_frames} frames: use --batch-size {smaller}, or auto, or free the GPU of other work"
        ) from err
    return embeddings.cpu()


@dataclass(frozen=True)
class WindowEmbeddings:
    """embeddings: float32 [N, D]; start_indices: int64 [N]; start_times_s: float64 [N]; stream stats."""

    embeddings: np.ndarray
    start_indices: np.ndarray
    start_times_s: np.ndarray
    stats: StreamStats


def embed_frames(
    encoder: Encoder,
    frames: Iterable[Frame],
    window: int,
    stride_frames: int,
    frame_step: int = 1,
    crop_mode: CropMode = "center",
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> WindowEmbeddings:
    """Embed every full window of `frames`; `progress(n)` is called with the windows done after each batch."""
    stats = StreamStats()
    chunks: list[np.ndarray] = []
    starts: list[np.ndarray] = []
    times_s: list[np.ndarray] = []
    batches = iter_window_batches(
        frames,
        encoder.spec,
        window,
        stride_frames,
        frame_step,
        crop_mode,
        batch_size,
        encoder.device,
        encoder.dtype,
        stats,
    )
    for batch in batches:
        chunks.append(embed_pixels(encoder, batch.pixels).numpy())
        starts.append(batch.start_indices)
        times_s.append(batch.start_times_s)
        if progress is not None:
            progress(len(batch.start_indices))
    dim = encoder.hidden_size
    return WindowEmbeddings(
        embeddings=np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32),
        start_indices=np.concatenate(starts) if starts else np.zeros(0, np.int64),
        start_times_s=np.concatenate(times_s) if times_s else np.zeros(0, np.float64),
        stats=stats,
    )


def model_description(encoder: Encoder) -> dict[str, object]:
    """What the JSON sidecar records about the model."""
    return {
        "model": encoder.model_id,
        "random_init": encoder.random_init,
        "hidden_size": encoder.hidden_size,
        "crop_size": encoder.spec.crop_size,
        "shortest_edge": encoder.spec.shortest_edge,
        "dtype": str(encoder.dtype).removeprefix("torch."),
        "device": str(encoder.device),
        "sdpa_backend": encoder.sdpa_backend,
    }


__all__ = [
    "Encoder",
    "ModelError",
    "WindowEmbeddings",
    "embed_frames",
    "embed_pixels",
    "load_encoder",
    "load_preprocess_spec",
    "model_description",
    "resolve_device",
    "resolve_dtype",
]
