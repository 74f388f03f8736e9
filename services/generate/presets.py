"""Style presets (prompt templates)."""

from __future__ import annotations

from shared.errors import InvalidArgument

# Templates from the dialects: Freepik's `style`, Image Studio's `style_preset`, CyberImage's enrich styles.
STYLE_PRESETS: dict[str, str] = {
    "photorealistic": "{prompt}, photorealistic, highly detailed photograph, natural lighting, sharp focus, 8k",
    "photographic": "{prompt}, professional photograph, 35mm, natural lighting, sharp focus",
    "realistic": "{prompt}, realistic, lifelike details, true-to-life colours, high resolution",
    "cinematic": "{prompt}, cinematic still, dramatic lighting, shallow depth of field, film grain",
    "anime": "{prompt}, anime style, vibrant colours, clean line art, studio anime key visual",
    "fantasy": "{prompt}, epic fantasy art, ethereal atmosphere, magical lighting, richly detailed, concept art",
    "cyberpunk": "{prompt}, cyberpunk, neon lights, rain-slicked streets, futuristic city, high contrast",
    "sci-fi": "{prompt}, science fiction, futuristic technology, sleek design, cinematic lighting",
    "digital-art": "{prompt}, digital art, detailed illustration, artstation",
    "comic-book": "{prompt}, comic book style, bold ink outlines, halftone shading",
    "3d-model": "{prompt}, 3d render, octane render, studio lighting, high detail",
    "pixel-art": "{prompt}, pixel art, 16-bit, limited palette",
    "line-art": "{prompt}, clean line art, black ink on white",
    "watercolor": "{prompt}, watercolour painting, soft washes, paper texture",
    "oil-painting": "{prompt}, oil painting, visible brushstrokes, rich colours",
    "enhance": "{prompt}, highly detailed, sharp focus, professional quality, beautiful composition",
}
_PRESET_ALIASES = {"photo": "photographic", "scifi": "sci-fi", "sci_fi": "sci-fi", "3d": "3d-model",
                   "digital_art": "digital-art", "comic": "comic-book", "watercolour": "watercolor"}
NO_PRESET = frozenset({"", "none", "auto"})

def apply_style(prompt: str, preset: str) -> tuple[str, str]:
    """(effective prompt, canonical preset name); an unknown preset is INVALID_ARGUMENT listing the known ones."""
    key = preset.strip().lower()
    if key in NO_PRESET:
        return prompt, ""
    key = _PRESET_ALIASES.get(key, key)
    if key not in STYLE_PRESETS:
        supported = sorted(STYLE_PRESETS)
        raise InvalidArgument(f"unknown style_preset {preset!r}; supported: {', '.join(supported)}",
                              field="style_preset", supported=supported)
    return STYLE_PRESETS[key].format(prompt=prompt), key
