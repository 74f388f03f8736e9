"""The tiny SDXL, SD3 and FLUX pipelines prepare_models builds (scripts/tiny_families.py): offline, deterministic,
reloadable through from_pretrained as their family's pipeline, with a T5 tokenizer trained in code."""

from __future__ import annotations

import json

import pytest

from scripts import prepare_models as pm
from scripts import tiny_families as tf

VOCAB = "clip/bpe_simple_vocab_16e6.txt.gz"
# name -> (pipeline class, latent channels, denoiser input channels)
EXPECTED = {
    "tiny-sdxl": ("StableDiffusionXLPipeline", 4, 4),
    "tiny-sd3": ("StableDiffusion3Pipeline", 16, 16),
    "tiny-flux-dev": ("FluxPipeline", 16, 64),  # 16 channels packed 2x2
    "tiny-flux-schnell": ("FluxPipeline", 16, 64),
}


def test_t5_tokenizer_is_trained_in_code_the_same_every_time(prepared_models):
    first = tf._t5_vocab(str(prepared_models / VOCAB))
    tf._t5_vocab.cache_clear()
    assert tf._t5_vocab(str(prepared_models / VOCAB)) == first
    tokenizer = tf.build_t5_tokenizer(prepared_models / VOCAB)
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    ids = tokenizer("A photo of an astronaut riding a horse, 85mm").input_ids
    assert ids[-1] == 1 and 2 not in ids  # closed by </s>, nothing unknown
    assert tokenizer.decode(ids, skip_special_tokens=True) == "A photo of an astronaut riding a horse, 85mm"


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_family_reloads_as_its_pipeline_from_the_prepared_folder(prepared_models, name):
    import diffusers

    cls, latent_channels, in_channels = EXPECTED[name]
    pipe = diffusers.DiffusionPipeline.from_pretrained(prepared_models / name)
    assert type(pipe).__name__ == cls
    assert pipe.vae.config.latent_channels == latent_channels and pipe.vae_scale_factor == 8
    denoiser = getattr(pipe, "unet", None) or pipe.transformer
    assert denoiser.config.in_channels == in_channels
    if name.startswith("tiny-flux"):
        assert denoiser.config.guidance_embeds == (name == "tiny-flux-dev")
        assert type(pipe.tokenizer_2).__name__ == "T5Tokenizer" and len(pipe.tokenizer_2) == len(
            tf.build_t5_tokenizer(prepared_models / VOCAB))
    if name == "tiny-sdxl":
        assert pipe.text_encoder_2.config.projection_dim == 32 and pipe.unet.config.cross_attention_dim == 64


def test_a_rebuild_gives_the_same_files(prepared_models, tmp_path):
    name = "tiny-flux-schnell"
    built = tf.build_family_pipeline(tmp_path / name, prepared_models / VOCAB, **tf.FAMILY_MODELS[name])
    stamped = json.loads((prepared_models / name / pm.STAMP).read_text())["outputs"]
    assert {rel: pm.sha256_file(built / rel) for rel in stamped} == stamped
