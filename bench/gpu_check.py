"""Every GPU measurement of EgoClean in one run, printed as one table (bench/gpu_check.sh runs it).

    python bench/gpu_check.py            # on a CUDA machine, ~5 minutes on one H200
    python bench/gpu_check.py --smoke    # on a CPU, tiny sizes: checks the script itself

Rows: V-JEPA 2 ViT-L windows/s, TFLOP/s and peak memory at batch 1-32 in bf16 and fp16 (SDPA kernel as
VJEPA/embedder.py picks it); NVDEC HEVC decode fps (PyAV hwaccel cuda) where PyAV is installed; the torch
yuv420p remap at 1080p (fisheye/remap_torch.py); the fraction of time the GPU was busy (nvidia-smi samples).
The one-pass clip path (decode -> remap -> model without leaving the GPU) is not built yet: no row.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from bench.bench_model_gpu import DTYPES, TFLOP_PER_WINDOW, smoke_config, time_batch, vitl_config
from fisheye.camera import rectified_camera
from fisheye.remap_torch import TorchPlaneRemapper
from fisheye.sample import EGOCENTRIC_10K_CALIBRATION
from VJEPA.embedder import pick_sdpa_backend


class BusySampler:
    """Samples nvidia-smi's utilization.gpu every 0.2 s in a thread; mean busy fraction over the run."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        smi = shutil.which("nvidia-smi")
        while smi and not self._stop.is_set():
            out = subprocess.run(
                [smi, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if out.returncode == 0 and out.stdout.strip():
                self.samples.append(float(out.stdout.split()[0]) / 100)
            time.sleep(0.2)

    def __enter__(self) -> BusySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def busy(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def model_rows(device: torch.device, smoke: bool, batch_sizes: list[int]) -> list[str]:
    from transformers import VJEPA2Model

    config, frames = (smoke_config(), 8) if smoke else (vitl_config(), 64)
    backend = pick_sdpa_backend(device)
    rows = []
    for name, dtype in DTYPES.items():
        torch.manual_seed(0)
        model = VJEPA2Model._from_config(config, attn_implementation="sdpa", dtype=dtype).to(device).eval()
        for batch in batch_sizes:
            try:
                r = time_batch(model, config, batch, frames, 1 if smoke else 5, backend)
            except torch.OutOfMemoryError:
                rows.append(f"| ViT-L {name} batch {batch} | out of memory | |")
                torch.cuda.empty_cache()
                break
            rows.append(
                f"| ViT-L {name} {backend} batch {batch} | {r['windows_per_s']:.2f} windows/s, "
                f"{r['tflop_per_s']:.0f} TFLOP/s | peak {r['peak_gib']:.1f} GiB |"
            )
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def remap_row(device: torch.device, smoke: bool) -> str:
    width, height = (192, 108) if smoke else (1920, 1080)
    calib = EGOCENTRIC_10K_CALIBRATION.scaled_to(width, height)
    remapper = TorchPlaneRemapper(calib, rectified_camera(calib, width, height), device)
    frame = torch.randint(0, 256, (height * 3 // 2, width), dtype=torch.uint8, device=device)
    remapper(frame)
    n = 5 if smoke else 300
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(n):
        remapper(frame)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    fps = n / (time.perf_counter() - t0)
    goal = "goal, with decode: 600 fps on an H200"
    return f"| torch yuv420p remap {width}x{height} | {fps:.0f} frames/s | {goal} |"


def nvdec_row(smoke: bool) -> str:
    try:
        import av
    except ImportError:
        return "| NVDEC HEVC decode | not measured: PyAV is not installed on this machine | |"
    from fractions import Fraction

    from egoclean.hwdecode import open_for_decode
    from egoclean.video import VideoWriter

    width, height, n = (192, 108, 30) if smoke else (1920, 1080, 300)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        rng = torch.Generator().manual_seed(0)
        with VideoWriter(path, width, height, Fraction(30), Fraction(1, 30), codec="h265", preset="ultrafast",
                         crf=28) as writer:  # fmt: skip
            base = torch.randint(0, 256, (height * 3 // 2, width), dtype=torch.uint8, generator=rng).numpy()
            for i in range(n):
                writer.write(base if i % 2 else 255 - base, pts=i)
        container, chosen = open_for_decode(path, "auto")
        t0 = time.perf_counter()
        with container:
            frames = sum(1 for _ in container.decode(video=0))
        fps = frames / (time.perf_counter() - t0)
    del av
    return f"| HEVC decode {width}x{height} ({chosen}) | {fps:.0f} frames/s | |"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes: checks the script runs")
    args = parser.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        print("error: no CUDA device; run with --smoke to check the script on a CPU", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.smoke else "cuda")
    name = "CPU (smoke)" if args.smoke else torch.cuda.get_device_name(device)
    print(f"{name}, torch {torch.__version__}, {TFLOP_PER_WINDOW} TFLOP per ViT-L window\n")
    print("| measurement | result | note |")
    print("|---|---|---|")
    with BusySampler() as sampler:
        for row in model_rows(device, args.smoke, [1, 2] if args.smoke else [1, 2, 4, 8, 16, 32]):
            print(row, flush=True)
    busy = f"{sampler.busy:.0%}" if sampler.busy is not None else "no nvidia-smi"
    print(f"| GPU busy during the model rows | {busy} | nvidia-smi utilization.gpu, 0.2 s samples |")
    print(remap_row(device, args.smoke), flush=True)
    print(nvdec_row(args.smoke), flush=True)
    print("| one-pass clip (NVDEC -> remap -> model) | not built yet | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
