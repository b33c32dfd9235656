"""Time the V-JEPA 2 ViT-L encoder on a GPU: windows/s, TFLOP/s and peak memory per batch size and dtype.

    python bench/bench_model_gpu.py                 # needs CUDA; random init, nothing downloaded
    python bench/bench_model_gpu.py --smoke         # tiny config on CPU: checks the script runs

The architecture matches facebook/vjepa2-vitl-fpc64-256 (hidden 1024, 24 layers, 16 heads, patch 16,
tubelet 2, crop 256, 64 frames); only the encoder runs (`get_vision_features`), with SDPA attention.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from transformers import VJEPA2Config, VJEPA2Model

from VJEPA.embedder import pick_sdpa_backend, sdpa_context
from VJEPA.tiny_model import tiny_config

TFLOP_PER_WINDOW = 11.57  # ViT-L encoder, one 64-frame 256 px window (its matmuls and attention)
BATCH_SIZES = (1, 2, 4, 8, 16, 32)
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def vitl_config() -> VJEPA2Config:
    return VJEPA2Config(
        crop_size=256,
        frames_per_clip=64,
        tubelet_size=2,
        patch_size=16,
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        mlp_ratio=4.0,
    )


def smoke_config() -> VJEPA2Config:
    """The tests' tiny model: checks the script end to end on a CPU in seconds."""
    return tiny_config()


def time_batch(
    model: VJEPA2Model,
    config: VJEPA2Config,
    batch_size: int,
    frames: int,
    repeats: int,
    backend: str,
    fallbacks: bool = True,
) -> dict:
    """Mean windows/s, TFLOP/s and peak GiB of `repeats` calls after a warm-up; fallbacks=False runs the
    `backend` kernel alone (RuntimeError where it cannot run)."""
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    pixels = torch.randn(
        batch_size, frames, 3, config.crop_size, config.crop_size, device=device, dtype=dtype
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode(), sdpa_context(backend, fallbacks):
        model.get_vision_features(pixels).mean(dim=1)  # warm-up: kernels chosen, memory allocated
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            model.get_vision_features(pixels).mean(dim=1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - t0) / repeats
    windows_per_s = batch_size / seconds
    peak_gib = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {
        "windows_per_s": windows_per_s,
        "tflop_per_s": windows_per_s * TFLOP_PER_WINDOW,
        "peak_gib": peak_gib,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES))
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per setting, after one warm-up")
    parser.add_argument("--smoke", action="store_true", help="tiny config on CPU, to check the script runs")
    parser.add_argument(
        "--backend", default="auto", choices=("auto", "cudnn", "flash", "efficient", "default"),
        help="SDPA kernel; auto = what VJEPA/embedder.py picks for this GPU",
    )  # fmt: skip
    args = parser.parse_args()

    if args.smoke:
        device, config, frames = torch.device("cpu"), smoke_config(), 8
    elif torch.cuda.is_available():
        device, config, frames = torch.device("cuda"), vitl_config(), 64
    else:
        print(
            "error: no CUDA device; this benchmark times the ViT-L on a GPU (use --smoke to check it on CPU)"
        )
        return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (smoke: tiny config)"
    backend = pick_sdpa_backend(device) if args.backend == "auto" else args.backend
    print(f"{name}, torch {torch.__version__}, SDPA {backend}, {frames} frames at {config.crop_size} px\n")
    print("| dtype | batch | windows/s | TFLOP/s | peak memory (GiB) |")
    print("|---|---:|---:|---:|---:|")
    for dtype_name in args.dtypes:
        torch.manual_seed(0)
        model = VJEPA2Model._from_config(config, attn_implementation="sdpa", dtype=DTYPES[dtype_name])
        model = model.to(device).eval()
        assert model.config._attn_implementation == "sdpa"
        for batch_size in args.batch_sizes:
            try:
                row = time_batch(model, config, batch_size, frames, args.repeats, backend)
            except torch.OutOfMemoryError:
                print(f"| {dtype_name} | {batch_size} | out of memory | | |")
                torch.cuda.empty_cache()
                break
            print(
                f"| {dtype_name} | {batch_size} | {row['windows_per_s']:.2f} | {row['tflop_per_s']:.1f} |"
                f" {row['peak_gib']:.2f} |"
            )
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.smoke:
        print("\n(smoke run: TFLOP/s assumes the ViT-L's 11.57 TFLOP per window and means nothing here)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
