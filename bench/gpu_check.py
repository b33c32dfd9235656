"""Every GPU measurement of EgoClean in one run, printed as one table (bench/gpu_check.sh runs it).

    python bench/gpu_check.py            # on a CUDA machine, ~5 minutes on one H200
    python bench/gpu_check.py --smoke    # on a CPU, tiny sizes: checks the script itself

Rows: V-JEPA 2 ViT-L windows/s, TFLOP/s and peak memory at batch 1-32 in bf16 and fp16 (SDPA kernel as
VJEPA/embedder.py picks it); each SDPA kernel alone at bf16 batch 8; NVDEC HEVC decode fps (PyAV hwaccel
cuda) where PyAV is installed; the torch yuv420p remap at 1080p (fisheye/remap_torch.py); NVDEC decode +
torch remap with the frames kept on the GPU (phase 1's --decode cuda, encode excluded); the one-pass clip
(`run.sh all --decode cuda`: NVDEC -> remap -> x264 and the ViT-L window stream) beside x264 alone, so
"bounded by the slowest stage" can be read off; the fraction of time the GPU was busy (nvidia-smi samples).
PyAV is not on the lent device machine (no internet there): bench/gpu_check.sh installs carried wheels.
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


def kernel_rows(device: torch.device, smoke: bool) -> list[str]:
    """Each attention kernel alone, bf16 at batch 8: is the one VJEPA/embedder.py picks the fastest?"""
    from transformers import VJEPA2Model

    config, frames = (smoke_config(), 8) if smoke else (vitl_config(), 64)
    kernels = ["default"] if smoke else ["cudnn", "flash", "efficient"]
    picked = pick_sdpa_backend(device)
    torch.manual_seed(0)
    model = VJEPA2Model._from_config(config, attn_implementation="sdpa", dtype=torch.bfloat16)
    model = model.to(device).eval()
    rows = []
    for kernel in kernels:
        try:
            r = time_batch(model, config, 8, frames, 1 if smoke else 5, kernel, fallbacks=False)
        except RuntimeError as err:  # "No available kernel": this GPU or build lacks it
            why = str(err).splitlines()[0][:60]
            rows.append(f"| SDPA {kernel} alone, bf16 batch 8 | cannot run | {why} |")
            continue
        note = "picked by VJEPA/embedder.py" if kernel == picked else ""
        rows.append(f"| SDPA {kernel} alone, bf16 batch 8 | {r['windows_per_s']:.2f} windows/s | {note} |")
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
    from egoclean.hwdecode import open_for_decode

    width, height, n = (192, 108, 30) if smoke else (1920, 1080, 300)
    with tempfile.TemporaryDirectory() as tmp:
        path = test_clip(Path(tmp) / "clip.mp4", width, height, n)
        container, chosen = open_for_decode(path, "auto")
        t0 = time.perf_counter()
        with container:
            frames = sum(1 for _ in container.decode(video=0))
        fps = frames / (time.perf_counter() - t0)
    return f"| HEVC decode {width}x{height} ({chosen}) | {fps:.0f} frames/s | |"


def test_clip(path: Path, width: int, height: int, n: int) -> Path:
    """An H.265 clip of `n` frames of noise-like content (a worst case for the decoder), 30 fps."""
    from fractions import Fraction

    from egoclean.video import VideoWriter

    rng = torch.Generator().manual_seed(0)
    base = torch.randint(0, 256, (height * 3 // 2, width), dtype=torch.uint8, generator=rng).numpy()
    with VideoWriter(path, width, height, Fraction(30), Fraction(1, 30), codec="h265", preset="ultrafast",
                     crf=28) as writer:  # fmt: skip
        for i in range(n):
            writer.write(base if i % 2 else 255 - base, pts=i)
    return path


def nvdec_remap_row(device: torch.device, smoke: bool) -> str:
    """Phase 1 with --decode cuda, encode excluded: NVDEC frames -> torch remap, all on the GPU."""
    from egoclean.hwdecode import pick_decoder
    from egoclean.video import decode
    from egoclean.yuv_torch import plane_tensors

    width, height, n = (192, 108, 30) if smoke else (1920, 1080, 600)
    calib = EGOCENTRIC_10K_CALIBRATION.scaled_to(width, height)
    remapper = TorchPlaneRemapper(calib, rectified_camera(calib, width, height), device)
    with tempfile.TemporaryDirectory() as tmp:
        path = test_clip(Path(tmp) / "clip.mp4", width, height, n)
        chosen = pick_decoder(path, "auto")
        t0 = time.perf_counter()
        for _, _, frame in decode(path, device=chosen):
            remapper.remap_planes(*(p.to(device) for p in plane_tensors(frame)))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        fps = n / (time.perf_counter() - t0)
    return (
        f"| decode ({chosen}) + torch remap {width}x{height} | {fps:.0f} frames/s | goal 600 fps on an H200 |"
    )


def one_pass_rows(device: torch.device, smoke: bool) -> list[str]:
    """The one-pass clip against x264 alone on the same frames: the pipeline is bounded by its slowest
    stage, and should come within 20% of it."""
    from transformers import VJEPA2Model

    from egoclean.video import VideoWriter, decode, plane_arrays, probe
    from fisheye.rectify import EncoderSettings, rectify_video
    from VJEPA.embedder import load_encoder
    from VJEPA.encode import StreamingClipEncoder
    from VJEPA.settings import EncodeSettings
    from VJEPA.tiny_model import save_tiny_model

    width, height, n = (192, 108, 90) if smoke else (1920, 1080, 900)
    calib = EGOCENTRIC_10K_CALIBRATION.scaled_to(width, height)
    camera = rectified_camera(calib, width, height)
    x264 = EncoderSettings("h264", 18, "veryfast")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = test_clip(folder / "clip.mp4", width, height, n)
        if smoke:
            model_dir = str(save_tiny_model(folder / "model"))
        else:  # ViT-L's architecture with random weights: the same FLOPs as the checkpoint
            torch.manual_seed(0)
            VJEPA2Model._from_config(vitl_config()).save_pretrained(folder / "model")
            model_dir = str(folder / "model")
        encoder = load_encoder(model_dir, str(device), "auto")
        settings = EncodeSettings(model=model_dir, window=8 if smoke else 64, batch_size=None)
        decode_mode = "cpu" if smoke else "cuda"
        info = probe(path)
        stream = StreamingClipEncoder(encoder, settings, info.fps, info.time_base, info.n_frames)
        with BusySampler() as sampler:
            t0 = time.perf_counter()
            stats = rectify_video(path, folder / "out.mp4", calib, camera, x264, on_frame=stream.push,
                                  decode=decode_mode)  # fmt: skip
            stream.finish(folder / "out.mp4")
            one_pass_fps = n / (time.perf_counter() - t0)
        frames = [frame for _, _, frame in decode(folder / "out.mp4")][:300]
        with VideoWriter(folder / "x264.mp4", width, height, info.rate, info.time_base) as writer:
            t0 = time.perf_counter()
            for i, frame in enumerate(frames):
                out = writer.new_frame()
                for dst, src in zip(plane_arrays(out), plane_arrays(frame), strict=True):
                    dst[:] = src
                writer.write(out, i)
        x264_fps = len(frames) / (time.perf_counter() - t0)
    busy = f"GPU busy {sampler.busy:.0%}" if sampler.busy is not None else "no nvidia-smi"
    return [
        f"| one-pass clip {width}x{height} ({stats.decoder} decode, {stats.remap} remap, {stats.encoder}, "
        f"model on {device}) | {one_pass_fps:.1f} frames/s | {busy} |",
        f"| libx264 veryfast alone on those frames | {x264_fps:.1f} frames/s | the one pass's CPU stage |",
    ]


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
    for row in kernel_rows(device, args.smoke):
        print(row, flush=True)
    print(remap_row(device, args.smoke), flush=True)
    print(nvdec_row(args.smoke), flush=True)
    print(nvdec_remap_row(device, args.smoke), flush=True)
    for row in one_pass_rows(device, args.smoke):
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
