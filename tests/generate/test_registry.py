"""The registry file, names, presets and sizing: plain Python, no server."""

from __future__ import annotations

import pytest

from services.generate import presets, sizing
from services.generate.catalog import Catalog, ModelEntry
from services.generate.settings import DEFAULT_MODELS_FILE
from shared.errors import InvalidArgument, InvalidModel
from tests.generate.conftest import MODELS_DIR, tiny_entry, write_registry

# Each seed name maps to the family it names; the others to the tiny SD 1.x default.
SEED_NAMES = {
    "flux-1": "tiny-flux-dev", "flux-2": "tiny-flux-dev", "flux-abliterated": "tiny-flux-dev",
    "flux-dev": "tiny-flux-dev", "FLUX-1": "tiny-flux-dev", "black-forest-labs/FLUX.1-dev": "tiny-flux-dev",
    "black-forest-labs/FLUX.1-schnell": "tiny-flux-schnell",
    "sd-3.5": "tiny-sd3", "sd3.5-large": "tiny-sd3", "stabilityai/stable-diffusion-3.5-large": "tiny-sd3",
    "core": "tiny-sdxl", "ultra": "tiny-sdxl",
    "imagen3": "tiny-sd", "mystic": "tiny-sd", "classic-fast": "tiny-sd", "auto": "tiny-sd", "": "tiny-sd",
    "tiny-sd": "tiny-sd",
}


@pytest.fixture(scope="module")
def default_registry() -> Catalog:
    return Catalog.from_file(DEFAULT_MODELS_FILE, MODELS_DIR)


@pytest.mark.parametrize("name", SEED_NAMES)
def test_default_registry_maps_the_seeds_names_onto_their_family(default_registry, name):
    assert default_registry.resolve(name).id == SEED_NAMES[name]


def test_default_registry_families(default_registry):
    families = {e.id: e.family for e in default_registry.entries.values()}
    assert {families[i] for i in ("tiny-sd", "tiny-sd-b", "tiny-sd-inpaint")} == {"sd1"}
    assert (families["tiny-sdxl"], families["tiny-sd3"], families["tiny-flux-dev"],
            families["tiny-flux-schnell"]) == ("sdxl", "sd3", "flux", "flux")


def test_default_registry_has_a_second_model_and_an_inpaint_model(default_registry):
    assert default_registry.resolve("tiny-sd-b").id == "tiny-sd-b"
    inpaint = default_registry.resolve("tiny-sd-inpaint")
    assert inpaint.operations == ("inpaint",) and inpaint.pipeline == "StableDiffusionInpaintPipeline"
    source = default_registry.source_of(default_registry.default)
    assert source.is_local and source.location == str(MODELS_DIR / "tiny-sd")


def test_unknown_model_lists_the_supported_ones(default_registry):
    with pytest.raises(InvalidModel) as info:
        default_registry.resolve("invalid-model")
    supported = info.value.metadata["supported_models"].split(",")
    assert {"auto", "flux-1", "imagen3", "mystic", "tiny-sd-b"} <= set(supported)
    assert info.value.reason == "INVALID_MODEL" and info.value.metadata["field"] == "model"


def test_hub_sources_and_bad_files(tmp_path):
    registry = Catalog([ModelEntry(id="turbo", hub="stabilityai/sd-turbo", revision="main")], "turbo", tmp_path)
    source = registry.source_of(registry.default)
    assert (source.location, source.is_local, source.revision) == ("stabilityai/sd-turbo", False, "main")
    with pytest.raises(ValueError, match="exactly one of"):
        ModelEntry(id="x", path="a", hub="b/c")
    with pytest.raises(ValueError, match="used by both"):
        Catalog([ModelEntry(id="a", path="a", aliases=("x",)), ModelEntry(id="b", path="b", aliases=("X",))],
                 "a", tmp_path)
    bad = write_registry(tmp_path, [tiny_entry("a", "a", colour="blue")])
    with pytest.raises(ValueError, match="colour"):
        Catalog.from_file(bad, tmp_path)


@pytest.mark.parametrize("text", ["wide", "0:1", "10:1", "16-9"])
def test_bad_aspect_ratios(text):
    with pytest.raises(InvalidArgument) as info:
        sizing.parse_aspect_ratio(text)
    assert info.value.metadata["field"] == "aspect_ratio"


def test_style_presets_template_the_prompt():
    for style in ("photorealistic", "anime", "fantasy", "cyberpunk", "realistic", "sci-fi", "enhance"):
        text, name = presets.apply_style("a castle", style)
        assert text.startswith("a castle, ") and name == style
    assert presets.apply_style("a castle", "none") == ("a castle", "")
    assert presets.apply_style("a castle", "photo")[1] == "photographic"


def test_device_choice():
    import torch

    from services.generate.device import choose_device, default_budget

    auto = choose_device("auto")
    assert auto.available
    assert auto.name == ("cuda:0" if torch.cuda.is_available() else
                         "mps" if torch.backends.mps.is_available() else "cpu")
    cpu = choose_device("cpu")
    assert (cpu.name, cpu.kind) == ("cpu", "cpu") and default_budget(cpu) == cpu.total_memory // 2
    assert not choose_device("tpu").available
    missing = choose_device(f"cuda:{torch.cuda.device_count() + 7}")
    assert not missing.available and "not available" in missing.error
