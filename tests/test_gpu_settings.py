"""The GPU settings of phase 2, checked on the CPU where they have a CPU meaning, and on CUDA only where a
GPU is present (those tests skip cleanly here)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from VJEPA.embedder import auto_batch_size, load_encoder, pick_sdpa_backend, resolve_dtype, sdpa_context
from VJEPA.encode import encode_clip
from VJEPA.settings import EncodeSettings

HAS_CUDA = torch.cuda.is_available()


def test_cpu_keeps_float32_and_the_default_attention():
    assert resolve_dtype("auto", torch.device("cpu")) is torch.float32
    assert pick_sdpa_backend(torch.device("cpu")) == "default"


def test_auto_batch_off_the_gpu_is_the_plain_default(tiny_model_dir):
    encoder = load_encoder(str(tiny_model_dir), device="cpu")
    assert auto_batch_size(encoder, window=4, n_views=1) == 8


def test_batch_size_auto_is_recorded_and_gives_the_same_embeddings(tiny_model_dir, test_clip, tmp_path):
    encoder = load_encoder(str(tiny_model_dir), device="cpu")
    fixed = encode_clip(test_clip, encoder, EncodeSettings(window=4, batch_size=3), tmp_path / "a")
    auto = encode_clip(test_clip, encoder, EncodeSettings(window=4, batch_size=None), tmp_path / "b")
    facts = json.loads(auto.json_path.read_text())
    assert facts["batch_size"] == 8 and facts["sdpa_backend"] == "default"
    np.testing.assert_allclose(np.load(fixed.emb_path), np.load(auto.emb_path), atol=1e-5)


@pytest.mark.parametrize("backend", ["default", "efficient"])
def test_sdpa_context_does_not_change_the_result_on_cpu(backend):
    q = torch.randn(1, 2, 16, 8)
    with sdpa_context("default"):
        expected = torch.nn.functional.scaled_dot_product_attention(q, q, q)
    if backend != "default" and not HAS_CUDA:
        pytest.skip("the efficient kernel is a CUDA kernel")
    with sdpa_context(backend):
        got = torch.nn.functional.scaled_dot_product_attention(q, q, q)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("backend", ["cudnn", "flash", "efficient"])
def test_sdpa_context_puts_the_chosen_kernel_first_and_restores_the_order(backend):
    # Enabling a kernel is not enough: PyTorch's own order (flash, efficient, math, cudnn) picks among the
    # enabled ones, so cuDNN's kernel would never run on Hopper. The order is what the dispatcher reads.
    from torch.nn.attention import SDPBackend

    wanted = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
              "efficient": SDPBackend.EFFICIENT_ATTENTION}[backend]  # fmt: skip
    before = torch._C._get_sdp_priority_order()
    with sdpa_context(backend):
        assert torch._C._get_sdp_priority_order()[0] == int(wanted)
        assert torch.backends.cuda.math_sdp_enabled()  # the last fallback stays on
    with sdpa_context(backend, fallbacks=False):
        assert torch._C._get_sdp_priority_order()[0] == int(wanted)
        assert not torch.backends.cuda.math_sdp_enabled()
    assert torch._C._get_sdp_priority_order() == before
    assert torch.backends.cuda.math_sdp_enabled()


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_cuda_encoder_matches_cpu_and_records_its_choices(tiny_model_dir, test_clip, tmp_path):
    cpu = load_encoder(str(tiny_model_dir), device="cpu")
    gpu = load_encoder(str(tiny_model_dir), device="cuda", dtype="float32")
    settings = EncodeSettings(window=4, batch_size=None)
    a = np.load(encode_clip(test_clip, cpu, settings, tmp_path / "cpu").emb_path)
    b = np.load(encode_clip(test_clip, gpu, settings, tmp_path / "gpu").emb_path)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.999
    assert resolve_dtype("auto", torch.device("cuda")) in (torch.bfloat16, torch.float16)
    assert pick_sdpa_backend(torch.device("cuda")) in ("cudnn", "flash", "efficient")


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_compiled_encoder_matches_eager(tiny_model_dir, test_clip, tmp_path):
    eager = load_encoder(str(tiny_model_dir), device="cuda", dtype="float32")
    compiled = load_encoder(str(tiny_model_dir), device="cuda", dtype="float32", compile=True)
    settings = EncodeSettings(window=4)
    a = np.load(encode_clip(test_clip, eager, settings, tmp_path / "eager").emb_path)
    b = np.load(encode_clip(test_clip, compiled, settings, tmp_path / "compiled").emb_path)
    np.testing.assert_allclose(a, b, atol=1e-3)


# --- --decode: NVDEC frames go to the model without leaving the GPU ------------------------------------


def test_tensor_frames_are_swscales_frames_and_embed_the_same(tiny_model_dir, test_clip):
    """The NVDEC path's conversion and stream input (egoclean.hwdecode.iter_rgb_tensors), run on the CPU:
    the same RGB as the CPU reader, bit for bit, so the same embeddings."""
    from egoclean.hwdecode import iter_rgb_tensors
    from egoclean.video import iter_frames
    from VJEPA.embedder import embed_frames

    tensors = list(iter_rgb_tensors(test_clip, "cpu", device="cpu"))  # "cuda" for a model on a GPU
    arrays = list(iter_frames(test_clip, "rgb24"))
    assert [(f.index, f.pts, f.time_s) for f in tensors] == [(f.index, f.pts, f.time_s) for f in arrays]
    assert all(np.array_equal(t.data.numpy(), a.data) for t, a in zip(tensors, arrays, strict=True))
    encoder = load_encoder(str(tiny_model_dir), device="cpu")
    from_tensors = embed_frames(encoder, tensors, window=4, stride_frames=15, batch_size=3)
    from_arrays = embed_frames(encoder, arrays, window=4, stride_frames=15, batch_size=3)
    np.testing.assert_array_equal(from_tensors.embeddings, from_arrays.embeddings)
    np.testing.assert_array_equal(from_tensors.start_times_s, from_arrays.start_times_s)


def test_decode_auto_with_a_cpu_model_decodes_on_the_cpu_and_says_so(tiny_model_dir, test_clip, tmp_path):
    encoder = load_encoder(str(tiny_model_dir), device="cpu")
    result = encode_clip(test_clip, encoder, EncodeSettings(window=4, decode="auto"), tmp_path)
    assert json.loads(result.json_path.read_text())["decoder"] == "cpu"


def test_decode_cuda_with_a_cpu_model_is_one_line(tiny_model_dir, test_clip, tmp_path, capsys):
    from VJEPA.encode import main

    code = main([str(test_clip), "--model", str(tiny_model_dir), "--device", "cpu", "--decode", "cuda",
                 "--window", "4", "--out", str(tmp_path)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--decode cuda: the model is on cpu" in err[0], err
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_nvdec_frames_embed_like_cpu_frames(tiny_model_dir, test_clip, tmp_path):
    gpu = load_encoder(str(tiny_model_dir), device="cuda", dtype="float32")
    cpu_frames = encode_clip(test_clip, gpu, EncodeSettings(window=4, decode="cpu"), tmp_path / "a")
    nvdec = encode_clip(test_clip, gpu, EncodeSettings(window=4, decode="cuda"), tmp_path / "b")
    assert json.loads(nvdec.json_path.read_text())["decoder"] == "cuda"
    a, b = np.load(cpu_frames.emb_path), np.load(nvdec.emb_path)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.999  # NVDEC's and FFmpeg's HEVC/H.264 decoders agree to the bit on a valid stream


@pytest.mark.parametrize("compile", [False, True])
def test_every_embedding_entry_point_honours_compile(tiny_model_dir, compile):
    """--compile reaches the model on phase 2, on the one pass and on the scale-out's embedding actors
    (which once loaded it without). Only the wrapping is checked: compiling needs a C compiler."""
    from egoclean.engine import ScaleSettings
    from egoclean.scale import EmbedClip, Job
    from fisheye.settings import Phase1Settings
    from VJEPA.encode import load_encoder_for

    settings = EncodeSettings(model=str(tiny_model_dir), device="cpu", compile=compile)
    actor = EmbedClip(Job(Phase1Settings(), ScaleSettings(), settings, run_id="test"))
    for encoder in (load_encoder_for(settings), actor.encoder):
        wrapped = hasattr(encoder.model.get_vision_features, "_torchdynamo_orig_callable")
        assert wrapped is compile


def test_an_embedding_that_raises_anything_fails_its_clip_alone(tiny_model_dir, test_clip, tmp_path,
                                                                monkeypatch):  # fmt: skip
    """A CUDA error is a RuntimeError, not ours: the scale-out's embedding actor records it against the clip
    (Ray Data would otherwise end the whole run over it)."""
    import shutil

    from egoclean.engine import ScaleSettings
    from egoclean.scale import CLIP_ROW, EmbedClip, Job
    from fisheye.settings import Phase1Settings
    from VJEPA import encode

    def illegal_access(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(encode, "encode_clip", illegal_access)
    settings = EncodeSettings(model=str(tiny_model_dir), device="cpu")
    actor = EmbedClip(Job(Phase1Settings(), ScaleSettings(), settings, run_id="test"))
    shutil.copy(test_clip, tmp_path / "rectified_clip_1.mp4")
    row = CLIP_ROW | {"status": "done", "folder": str(tmp_path), "output": "rectified_clip_1.mp4",
                      "staging": str(tmp_path / ".staging")}  # fmt: skip
    out = actor(row)
    assert out["status"] == "failed" and out["reason"] == (
        "embed: RuntimeError: CUDA error: an illegal memory access was encountered"
    )
    assert not out["stop"]  # this clip alone: the run goes on


def test_the_sample_stand_in_is_saved_whole_or_not_at_all(tmp_path, monkeypatch):
    """A first sample run killed while saving the stand-in once left a folder with config.json and no
    weights, which every later run took for finished and failed to load."""
    from transformers import VJEPA2VideoProcessor

    from VJEPA.tiny_model import pick_model

    folder = tmp_path / "sample" / "tiny-vjepa2-random-init"
    with monkeypatch.context() as patched:

        def killed(*args, **kwargs):
            raise KeyboardInterrupt

        patched.setattr(VJEPA2VideoProcessor, "save_pretrained", killed)  # after the model's files
        with pytest.raises(KeyboardInterrupt):
            pick_model("facebook/vjepa2-vitl-fpc64-256", folder)
    assert not folder.exists() and not list(folder.parent.iterdir())  # nothing half-made left
    folder.mkdir()
    (folder / "config.json").write_text("{}")  # what the old non-atomic save left behind
    chosen, why = pick_model("facebook/vjepa2-vitl-fpc64-256", folder)
    assert chosen == str(folder) and "RANDOM-INIT" in why
    assert load_encoder(chosen, device="cpu").random_init
