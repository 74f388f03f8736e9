"""Plain-Python pieces of the gateway: limit parsing, key parsing, alias lookup, enrichment, edit shaping."""

from __future__ import annotations

import pytest

from gateway import enrich, translate
from gateway.catalogues import load_catalogues
from gateway.security import Limit, parse_keys
from gateway.settings import GatewaySettings
from services.generate.settings import DEFAULT_TEMPLATES_FILE
from services.generate.sizing import load_templates
from shared.errors import InvalidArgument
from shared.gen.imagemesh.v1 import generate_service_pb2 as gen_pb


@pytest.mark.parametrize("text,count,window", [("10/minute", 10, 60), ("1000/hour", 1000, 3600), ("10/day", 10, 86400),
                                               ("5 / 2 seconds", 5, 2), ("30/minutes", 30, 60)])
def test_limit_parse(text, count, window):
    assert Limit.parse(text) == Limit(count, window)


@pytest.mark.parametrize("text", ["ten/minute", "10", "10/fortnight", ""])
def test_limit_parse_rejects(text):
    with pytest.raises(ValueError):
        Limit.parse(text)


def test_every_documented_bucket_parses():
    for text in GatewaySettings().resolved_rate_limits.values():
        Limit.parse(text)


def test_parse_keys():
    keys = parse_keys(" key1:alice , key2:bob,lonely ")
    assert keys["key1"] == "alice" and keys["key2"] == "bob"
    assert keys["lonely"].startswith("key_") and len(keys) == 3


def test_alias_lookup_is_case_insensitive_and_lists_names():
    listing = gen_pb.ListModelsResponse(models=[
        gen_pb.ModelInfo(id="tiny-sd", aliases=["flux-1", "Imagen3"], is_default=True),
        gen_pb.ModelInfo(id="tiny-sd-b", aliases=["qwen-image"])], default_model="tiny-sd")
    assert translate.find_model(listing, "IMAGEN3").id == "tiny-sd"
    assert translate.find_model(listing, "qwen-image").id == "tiny-sd-b"
    assert translate.find_model(listing, "mystic") is None
    assert translate.model_names(listing) == ["tiny-sd", "flux-1", "Imagen3", "tiny-sd-b", "qwen-image"]
    assert translate.default_model(listing).id == "tiny-sd"


@pytest.fixture(scope="module")
def catalogues():
    return load_catalogues(GatewaySettings().resolved_catalogue_dir)


def test_enrichment_is_deterministic(catalogues):
    text, style = enrich.enrich(catalogues, "a castle on a hill", "fantasy")
    assert style == "fantasy" and text.startswith("a majestic fantasy scene of castle on a hill, ")
    assert enrich.enrich(catalogues, "a castle on a hill", "fantasy")[0] == text
    with pytest.raises(InvalidArgument):
        enrich.enrich(catalogues, "x", "baroque")


def test_templates_are_consistent(catalogues):
    ids = [t["id"] for t in catalogues.templates]
    assert len(ids) == len(set(ids))
    for template in catalogues.templates:
        assert template["recommended_provider"] in catalogues.providers["providers"]
        assert template["quality"] in ("draft", "standard", "premium")
    # Sizes are Generate's: every catalogue template names one of its size templates.
    assert set(ids) <= set(load_templates(DEFAULT_TEMPLATES_FILE))


