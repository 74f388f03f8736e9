"""The model catalog: the configured generation models (a YAML file), their names, sources and limits.

Words used across services: the *catalog* is what is configured; *loaded* (loaded.py) is what is in memory.

An operator maps the names clients use (the seeds' `flux-1`, `imagen3`, `mystic`, ...) onto whatever checkpoints
the machine has. A source is a local folder (`path:`, relative to the models dir or absolute) or a hub id
(`hub:`, loaded with `from_pretrained`; HF_HUB_OFFLINE is honoured by huggingface_hub itself).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.generate import families
from services.generate.families import FAMILIES, FamilyName
from shared.errors import InvalidModel

# control, instruct_edit, style, style_transfer and segment: services/generate/control.py.
Operation = Literal["text_to_image", "image_to_image", "inpaint", "control", "instruct_edit", "style",
                    "style_transfer", "segment"]
# Names that mean "whatever the default model is".
DEFAULT_NAMES = frozenset({"", "auto", "default"})


class ModelEntry(BaseModel):
    """One registry entry; unknown keys are refused so that a typo in the YAML fails loudly at start."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    aliases: tuple[str, ...] = ()
    # Providers this model serves (dialects that pick by provider, e.g. Image Studio's "wavespeed"), the first
    # being the one it reports as its own.
    providers: tuple[str, ...] = ()
    description: str = ""
    path: str | None = None
    hub: str | None = None
    revision: str | None = None
    # Pipeline class name from diffusers, or "auto" (DiffusionPipeline reads model_index.json).
    pipeline: str = "auto"
    # The model family (families.py): how it is called and what its latents look like. "auto": the catalog
    # reads it from `pipeline`, else the checkpoint's model_index.json (a local folder, or the HF cache), else sd1.
    # A loaded pipeline of another family makes the entry FAILED.
    family: FamilyName | Literal["auto"] = "auto"
    dtype: Literal["float32", "float16", "bfloat16", "auto"] = "auto"
    operations: tuple[Operation, ...] = ("text_to_image", "image_to_image")
    preload: bool = False
    default_steps: int = 30
    min_steps: int = 1
    max_steps: int = 50
    default_guidance: float = 7.5
    min_guidance: float = 0.0
    max_guidance: float = 20.0
    default_width: int = 512
    default_height: int = 512
    min_size: int = 64
    max_size: int = 2048
    # Default: the family's (8 for SD 1.x and SDXL, 16 for SD3 and FLUX).
    size_multiple: int = 8
    # Hard cap on width * height (0 = max_size squared). Sizes derived from an aspect ratio keep the default
    # size's pixel count instead, as real checkpoints are trained at about one pixel count.
    max_pixels: int = 0
    # Default: the family's (FLUX takes none; the request's negative prompt is dropped with a note).
    supports_negative_prompt: bool = None  # type: ignore[assignment]  # filled in from the family
    # T5 tokens the text encoder reads (families with T5: sd3, flux); 0 = the family's default (256, 512).
    max_sequence_length: int = 0
    # False: the model takes no guidance (guidance-distilled, like FLUX.1-schnell); a requested guidance_scale
    # is ignored with a note and the model runs with `default_guidance`.
    uses_guidance: bool = True
    # What a steps or guidance_scale value outside the limits gets: "refuse" (INVALID_ARGUMENT) or "clamp" to
    # the nearest limit with a note (models whose limits are tighter than the dialects' documented defaults,
    # e.g. schnell's 1 to 4 steps against a dialect's default of 30).
    out_of_range: Literal["refuse", "clamp"] = "refuse"
    # An IP-Adapter folder (ip-adapter.safetensors + image_encoder/, relative to the models dir or absolute) loaded
    # onto the pipeline with load_ip_adapter: what the style and style_transfer operations need.
    ip_adapter: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _family_defaults(cls, data):
        # Only for a known family; an "auto" entry keeps what was given, so the catalog can validate it again
        # once it knows the family (model_fields_set is then exactly what the registry file said).
        if isinstance(data, dict):
            fam = FAMILIES.get(data.get("family", "auto"))
            if fam is not None:
                data = dict(data)
                if data.get("supports_negative_prompt") is None:
                    data["supports_negative_prompt"] = fam.negative_prompt
                if not data.get("max_sequence_length"):
                    data["max_sequence_length"] = fam.default_max_sequence_length
                data.setdefault("size_multiple", fam.size_multiple)
        return data

    @model_validator(mode="after")
    def _check(self) -> ModelEntry:
        if (self.path is None) == (self.hub is None):
            raise ValueError(f"model {self.id!r}: give exactly one of `path` or `hub`")
        if not (1 <= self.min_steps <= self.default_steps <= self.max_steps):
            raise ValueError(f"model {self.id!r}: need 1 <= min_steps <= default_steps <= max_steps")
        if self.size_multiple < 1 or self.min_size % self.size_multiple or self.max_size % self.size_multiple:
            raise ValueError(f"model {self.id!r}: min_size and max_size must be multiples of size_multiple")
        if not self.operations:
            raise ValueError(f"model {self.id!r}: list at least one operation")
        if {"style", "style_transfer"} & set(self.operations) and not self.ip_adapter:
            raise ValueError(f"model {self.id!r}: style operations need `ip_adapter`")
        if "segment" in self.operations and len(self.operations) > 1:
            raise ValueError(f"model {self.id!r}: a segmentation model does nothing else")
        if self.family == "auto":
            # Provisional (SD 1.x) until the catalog knows the family (Catalog resolves it, then validates again).
            if self.supports_negative_prompt is None:
                object.__setattr__(self, "supports_negative_prompt", True)
            return self
        fam = FAMILIES[self.family]
        if self.size_multiple % fam.size_multiple:
            raise ValueError(f"model {self.id!r}: {self.family} sizes are multiples of {fam.size_multiple}; "
                             f"size_multiple {self.size_multiple} is not")
        if self.max_sequence_length and fam.t5_tokenizer is None:
            raise ValueError(f"model {self.id!r}: max_sequence_length applies to families with a T5 encoder "
                             f"(sd3, flux), not {self.family}")
        if not 0 <= self.max_sequence_length <= 512:  # diffusers' SD3 and FLUX pipelines refuse more
            raise ValueError(f"model {self.id!r}: max_sequence_length must be 1 to 512")
        if self.supports_negative_prompt and not fam.negative_prompt:
            raise ValueError(f"model {self.id!r}: {self.family} pipelines take no negative prompt")
        return self

    def with_family(self, family: str) -> ModelEntry:
        """This entry validated again as `family` (family defaults filled in where the registry gave none)."""
        return ModelEntry.model_validate({**self.model_dump(include=self.model_fields_set), "family": family})

    @property
    def pixel_budget(self) -> int:
        return self.default_width * self.default_height

    @property
    def pixel_cap(self) -> int:
        return self.max_pixels or self.max_size * self.max_size

    @property
    def source(self) -> str:
        return self.path if self.path is not None else f"hub:{self.hub}"


class CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: str
    models: list[ModelEntry] = Field(min_length=1)


@dataclass(frozen=True)
class ResolvedSource:
    """Where from_pretrained loads an entry from: a local folder or a hub id."""

    location: str
    is_local: bool
    revision: str | None = None


class Catalog:
    """Entries by id with aliases resolved; case-insensitive, because clients spell `FLUX-1` and `flux-1`."""

    def __init__(self, entries: list[ModelEntry], default: str, models_dir: Path) -> None:
        self.models_dir = Path(models_dir)
        entries = [self._with_family(e) for e in entries]
        self.entries = {e.id: e for e in entries}
        self._names: dict[str, str] = {}
        self._spellings: list[str] = []
        for entry in entries:
            for name in (entry.id, *entry.aliases):
                key = name.lower()
                if key in self._names and self._names[key] != entry.id:
                    raise ValueError(f"name {name!r} is used by both {self._names[key]!r} and {entry.id!r}")
                if key in DEFAULT_NAMES:
                    raise ValueError(f"{name!r} is reserved for the default model")
                self._names[key] = entry.id
                self._spellings.append(name)
        if default.lower() not in self._names:
            raise ValueError(f"default model {default!r} is not in the registry")
        self.default_id = self._names[default.lower()]

    @classmethod
    def from_file(cls, path: Path, models_dir: Path) -> Catalog:
        try:
            raw = yaml.safe_load(Path(path).read_text())
            parsed = CatalogFile.model_validate(raw)
        except (OSError, yaml.YAMLError, ValidationError) as exc:
            raise ValueError(f"cannot read model registry {path}: {exc}") from exc
        return cls(parsed.models, parsed.default, models_dir)

    @property
    def default(self) -> ModelEntry:
        return self.entries[self.default_id]

    def supported_names(self) -> list[str]:
        return ["auto", *sorted(set(self._spellings))]

    def resolve(self, name: str) -> ModelEntry:
        key = name.strip().lower()
        if key in DEFAULT_NAMES:
            return self.default
        try:
            return self.entries[self._names[key]]
        except KeyError:
            supported = self.supported_names()
            raise InvalidModel(
                f"The specified model {name!r} is not supported; supported: {', '.join(supported)}",
                field="model", supported_models=supported,
            ) from None

    def local_path(self, path: str) -> Path:
        """A registry path: relative to the models dir, or absolute."""
        resolved = Path(path).expanduser()
        return resolved if resolved.is_absolute() else self.models_dir / resolved

    def _with_family(self, entry: ModelEntry) -> ModelEntry:
        if entry.family != "auto":
            return entry
        family = families.family_of_class(entry.pipeline) if entry.pipeline != "auto" else None
        family = family or self._family_from_model_index(entry) or "sd1"
        try:
            return entry.with_family(family)
        except ValidationError as exc:
            raise ValueError(f"model {entry.id!r} is a {family} model (from its pipeline class or model_index.json): "
                             f"{exc.errors()[0]['msg']}") from None

    def _family_from_model_index(self, entry: ModelEntry) -> str | None:
        """The family named by the checkpoint's model_index.json (`_class_name`), when it is on this machine."""
        source = self.source_of(entry)
        if source.is_local:
            index = Path(source.location) / "model_index.json"
        else:
            try:
                from huggingface_hub import try_to_load_from_cache

                cached = try_to_load_from_cache(source.location, "model_index.json", revision=source.revision)
            except Exception:  # noqa: BLE001 - no cache, odd id: the family stays unknown
                cached = None
            if not isinstance(cached, str):
                return None
            index = Path(cached)
        try:
            class_name = json.loads(index.read_text()).get("_class_name", "")
        except (OSError, ValueError, AttributeError):
            return None
        return families.family_of_class(class_name) if class_name else None

    def source_of(self, entry: ModelEntry) -> ResolvedSource:
        if entry.hub is not None:
            return ResolvedSource(entry.hub, False, entry.revision)
        path = Path(entry.path).expanduser()
        if not path.is_absolute():
            path = self.models_dir / path
        return ResolvedSource(str(path), True)
