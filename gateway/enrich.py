"""Prompt enrichment and template lookup from the catalogues: deterministic text, no model."""

from __future__ import annotations

import re
from typing import Any

from gateway.catalogues import Catalogues
from shared.errors import InvalidArgument


def enrich(catalogues: Catalogues, prompt: str, style: str | None) -> tuple[str, str]:
    """(enriched prompt, style used) for CyberImage's /enrich; an unknown style lists the known ones."""
    styles = catalogues.styles["styles"]
    name = (style or catalogues.styles.get("default_style", "enhance")).strip().lower()
    if name not in styles:
        raise InvalidArgument(f"Unknown style '{style}'. Available styles: {', '.join(styles)}", field="style",
                              supported_styles=list(styles))
    spec = styles[name]
    core = prompt.strip().rstrip(".,")
    # "a castle" + prefix "a majestic fantasy scene of" reads badly with a doubled article; drop the prompt's own.
    if spec.get("prefix"):
        core = re.sub(r"^(a|an|the)\s+", "", core, flags=re.IGNORECASE)
    parts = [f"{spec['prefix']} {core}".strip(), spec.get("suffix", "")]
    return ", ".join(part for part in parts if part), name


def enhance(catalogues: Catalogues, prompt: str, style_preset: str | None, quality: str | None) -> str:
    """Image Studio's enhance_prompt: the prompt with its style preset's and quality's phrasing appended."""
    extras = [catalogues.styles.get("presets", {}).get(style_preset or "", ""),
              catalogues.styles.get("quality", {}).get(quality or "standard", "")]
    return ", ".join([prompt.strip(), *(extra for extra in extras if extra)])


def find_templates(catalogues: Catalogues, *, platform: str | None = None, category: str | None = None,
                   query: str | None = None) -> list[dict[str, Any]]:
    found = []
    for template in catalogues.templates:
        if platform and template["platform"] != platform.lower():
            continue
        if category and template["category"] != category.lower():
            continue
        if query and query.lower() not in _haystack(template):
            continue
        found.append(template)
    return found


def recommend(catalogues: Catalogues, use_case: str, platform: str | None = None) -> list[dict[str, Any]]:
    """Templates ranked by how many words of the use case they mention (use cases first, then the rest)."""
    words = {w for w in re.findall(r"[a-z0-9]+", use_case.lower()) if len(w) > 2}
    scored = []
    for template in find_templates(catalogues, platform=platform):
        use_cases = " ".join(template.get("use_cases", [])).lower()
        score = sum(3 for w in words if w in use_cases) + sum(1 for w in words if w in _haystack(template))
        if score:
            scored.append((-score, template["id"], template))
    return [template for *_, template in sorted(scored, key=lambda item: item[:2])]


def _haystack(template: dict[str, Any]) -> str:
    return " ".join([template["id"], template["name"], template["description"], template["platform"],
                     template["category"], *template.get("use_cases", [])]).lower()


def template(catalogues: Catalogues, template_id: str) -> dict[str, Any]:
    for item in catalogues.templates:
        if item["id"] == template_id:
            return item
    from shared.errors import NotFound

    raise NotFound(f"Template '{template_id}' not found", field="template_id")
