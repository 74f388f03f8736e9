"""The social optimizer: one image cropped (or letterboxed) to many platform formats, each at its exact size and
under its platform's file-size limit. The catalogue is data (platforms.yaml), loaded when the server is built."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from PIL import Image, ImageDraw

from services.upscale import saliency
from services.upscale.lanczos import lanczos_resize
from shared import images
from shared.errors import ImageTooLarge, InvalidArgument

BUILTIN_CATALOGUE = Path(__file__).with_name("platforms.yaml")
CROP_MODES = ("smart", "center", "fit")
ALIASES = {"x": "twitter", "x/twitter": "twitter", "fb": "facebook", "ig": "instagram", "yt": "youtube"}
JPEG_QUALITIES = (90, 85, 80, 75, 70, 60, 50, 40, 30, 20)
MB = 1024 * 1024
KEEP_PADDING = 1.2


@dataclass(frozen=True)
class SafeZone:
    top: float = 0.0
    bottom: float = 0.0
    left: float = 0.0
    right: float = 0.0


@dataclass(frozen=True)
class PlatformFormat:
    platform: str
    platform_name: str
    id: str
    display_name: str
    width: int
    height: int
    ratio: str
    safe_zone: SafeZone
    file_type: str  # "jpeg", "png" or "webp"
    file_types: tuple[str, ...]  # what the platform accepts
    max_size_bytes: int
    description: str = ""


class Catalogue:
    def __init__(self, formats: list[PlatformFormat]) -> None:
        self.formats = formats
        self.platforms = list(dict.fromkeys(f.platform for f in formats))

    @classmethod
    def load(cls, path: str | Path = BUILTIN_CATALOGUE) -> Catalogue:
        data = yaml.safe_load(Path(path).read_text())
        formats = []
        for platform, spec in data["platforms"].items():
            for item in spec["formats"]:
                fmt = PlatformFormat(
                    platform=platform, platform_name=spec["name"], id=item["id"],
                    display_name=item["display_name"], width=int(item["width"]), height=int(item["height"]),
                    ratio=str(item["ratio"]), safe_zone=SafeZone(**item.get("safe_zone", {})),
                    file_type=item["file_type"].lower(), file_types=tuple(t.lower() for t in spec["file_types"]),
                    max_size_bytes=int(float(item["max_size_mb"]) * MB), description=item.get("description", ""),
                )
                _check_ratio(fmt)
                formats.append(fmt)
        return cls(formats)

    def platform_formats(self, platform: str) -> list[PlatformFormat]:
        if not platform:
            return list(self.formats)
        key = ALIASES.get(platform.lower(), platform.lower())
        found = [f for f in self.formats if f.platform == key]
        if not found:
            raise InvalidArgument(f"unknown platform {platform!r}; supported: {', '.join(self.platforms)}",
                                  field="platform", supported=self.platforms)
        return found

    def select(self, platforms: list[str], names: list[str]) -> list[PlatformFormat]:
        pool = [f for p in (platforms or [""]) for f in self.platform_formats(p)]
        if not names:
            return pool
        chosen = []
        for name in names:
            key = name.lower()
            matches = [f for f in pool if key in (f.id.lower(), f.display_name.lower(), f"{f.platform}/{f.id}")]
            if not matches:
                raise InvalidArgument(f"unknown format {name!r} for {', '.join(platforms) or 'any platform'}; "
                                      f"known: {', '.join(sorted({f.id for f in pool}))}", field="formats")
            chosen.extend(m for m in matches if m not in chosen)
        return chosen


def _check_ratio(fmt: PlatformFormat) -> None:
    w, h = (float(x) for x in fmt.ratio.split(":"))
    if abs((w / h) / (fmt.width / fmt.height) - 1) > 0.02:
        raise ValueError(f"platforms catalogue: {fmt.platform}/{fmt.id} is {fmt.width}x{fmt.height}, not {fmt.ratio}")


@dataclass
class SocialRequest:
    image: Image.Image
    platforms: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    crop_mode: str = "smart"
    focal: tuple[float, float] | None = None
    overlay: bool = False
    output_format: str = ""  # "" = the format's file type
    background: tuple[int, ...] | None = None


@dataclass
class SocialOutput:
    format: PlatformFormat
    image: Image.Image
    data: bytes
    media_type: str
    quality: int
    notes: list[str]
    # The window taken from the source (left, top, right, bottom in source pixels; past the edges = filled bars).
    source_box: tuple[int, int, int, int] = (0, 0, 0, 0)


def optimize(request: SocialRequest, catalogue: Catalogue) -> list[SocialOutput]:
    mode = (request.crop_mode or "smart").lower()
    if mode not in CROP_MODES:
        raise InvalidArgument(f"unknown crop_mode {mode!r}; supported: {', '.join(CROP_MODES)}", field="crop_mode")
    if request.focal is not None and not all(0.0 <= v <= 1.0 for v in request.focal):
        raise InvalidArgument("focal point coordinates must be between 0 and 1", field="focal_x")
    formats = catalogue.select(request.platforms, request.formats)
    source = images.normalize_mode(request.image)
    subject_notes: list[str] = []
    subject = _find_subject(source, request.focal, subject_notes) if mode == "smart" else None
    outputs = []
    for fmt in formats:
        notes = [subject.source, *subject_notes] if subject else []
        box = (0, 0, source.width, source.height)
        if mode == "fit":
            framed = _letterbox(source, fmt, request.background, request.output_format, notes)
        else:
            box = crop_box(source.width, source.height, fmt, subject)
            framed = _crop(source, fmt, box, request.background, notes)
        if request.overlay:
            framed = draw_safe_zone(framed, fmt.safe_zone)
            notes.append("safe-zone overlay drawn (margins shaded, safe area outlined)")
        data, media_type, quality = encode_within(framed, fmt, request.output_format, notes)
        outputs.append(SocialOutput(fmt, framed, data, media_type, quality, notes, box))
    return outputs


def _find_subject(img: Image.Image, focal: tuple[float, float] | None, notes: list[str]) -> saliency.Subject:
    """Where the subject is, in this order: a caller's focal point (their intent); detected faces (people are
    kept whole); the subject mask a background removal left in the image's alpha (a cut-out); saliency; centre.
    No workflow runs background removal before its social step, so the alpha of the image given is the only
    mask source."""
    if focal is not None:
        return saliency.Subject(focal, None, "focal point given by the caller")
    people, reason = saliency.from_faces(img)
    if reason:
        notes.append(reason)
    return (people or saliency.from_alpha(img) or saliency.from_saliency(img)
            or saliency.Subject((0.5, 0.5), None, "nothing stands out: centred crop"))


def crop_box(src_w: int, src_h: int, fmt: PlatformFormat, subject: saliency.Subject | None) -> tuple[int, int, int, int]:
    """The largest window of the format's aspect inside the source, around the subject (or centred). A subject's
    `keep` box (faces) is never cut: when it cannot fit that window, the window grows past the picture's edges
    (the caller fills the outside) just enough to hold it."""
    aspect = fmt.width / fmt.height
    if src_w / src_h > aspect:
        crop_w, crop_h = min(src_w, max(1, round(src_h * aspect))), src_h
    else:
        crop_w, crop_h = src_w, min(src_h, max(1, round(src_w / aspect)))
    fx, fy = subject.focal if subject else (0.5, 0.5)
    boxes = [b for b in ((subject.box, subject.keep) if subject else ()) if b is not None]
    keep = subject.keep if subject else None
    if keep is not None:
        grow = max((keep[2] - keep[0]) * src_w / crop_w, (keep[3] - keep[1]) * src_h / crop_h)
        if grow > 1:
            grow *= KEEP_PADDING  # bars are coming anyway: leave the faces some room
            crop_w, crop_h = math.ceil(crop_w * grow), math.ceil(crop_h * grow)
            if abs(crop_w / crop_h - aspect) > 1e-9:  # keep the exact aspect after rounding up
                crop_w, crop_h = max(crop_w, math.ceil(crop_h * aspect)), max(crop_h, math.ceil(crop_w / aspect))
    left = _place(src_w, crop_w, fx * src_w, [(b[0] * src_w, b[2] * src_w) for b in boxes],
                  (fmt.safe_zone.left, fmt.safe_zone.right))
    top = _place(src_h, crop_h, fy * src_h, [(b[1] * src_h, b[3] * src_h) for b in boxes],
                 (fmt.safe_zone.top, fmt.safe_zone.bottom))
    return left, top, left + crop_w, top + crop_h


def _place(length: int, window: int, focal: float, extents: list[tuple[float, float]],
           margins: tuple[float, float]) -> int:
    """Start of a window along one axis: centred on the focal point, moved as little as possible so the first
    subject extent that can sit inside the safe zone (or at least inside the window) does, and kept inside the
    image. A window longer than the image is centred on the focal point as far as the image allows."""
    start = focal - window / 2
    if window >= length:
        return round(min(max(start, length - window), 0))
    placed = False
    for lo, hi in extents:
        for m_lo, m_hi in (margins, (0.0, 0.0)):
            inner_lo, inner_hi = window * m_lo, window * (1 - m_hi)
            if hi - lo <= inner_hi - inner_lo:
                start = min(max(start, hi - inner_hi), lo - inner_lo)
                placed = True
                break
        if placed:
            break
    return round(min(max(start, 0), length - window))


def _crop(img: Image.Image, fmt: PlatformFormat, box: tuple[int, int, int, int], background,
          notes: list[str]) -> Image.Image:
    left, top, right, bottom = box
    if left < 0 or top < 0 or right > img.width or bottom > img.height:
        region = Image.new(img.mode, (right - left, bottom - top), _fill(img, background))
        region.paste(img, (-left, -top))
        notes.append(f"the faces do not fit a {fmt.ratio} crop of this picture: it is framed whole with bars "
                     f"(window {right - left}x{bottom - top} over a {img.width}x{img.height} picture)")
    else:
        region = img.crop(box)
    if region.width < fmt.width:
        notes.append(f"crop {region.width}x{region.height} upscaled x{fmt.width / region.width:.2f} with Lanczos")
    return lanczos_resize(region, fmt.width, fmt.height)


def _fill(img: Image.Image, background) -> tuple[int, ...]:
    """The bars' colour: the caller's background, else transparent for a picture with alpha, else black."""
    if background is None:
        background = (0, 0, 0, 0) if img.mode == "RGBA" else (0, 0, 0, 255)
    colour = tuple(background) + (255,) * (4 - len(background))
    return colour if img.mode == "RGBA" else colour[:3]


def _letterbox(img: Image.Image, fmt: PlatformFormat, background, output_format: str,
               notes: list[str]) -> Image.Image:
    scale = min(fmt.width / img.width, fmt.height / img.height)
    inner = lanczos_resize(img, max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    kind = (output_format or fmt.file_type).lower()
    if background is None:
        background = (0, 0, 0, 0) if kind in ("png", "webp") else (0, 0, 0, 255)
    colour = tuple(background) + (255,) * (4 - len(background))
    canvas = Image.new("RGBA", (fmt.width, fmt.height), colour)
    canvas.alpha_composite(inner.convert("RGBA"), ((fmt.width - inner.width) // 2, (fmt.height - inner.height) // 2))
    notes.append(f"letterboxed: image {inner.width}x{inner.height} centred on #{''.join(f'{c:02x}' for c in colour)}")
    return canvas if img.mode == "RGBA" or colour[3] < 255 else canvas.convert("RGB")


def draw_safe_zone(img: Image.Image, zone: SafeZone) -> Image.Image:
    base = img.convert("RGBA")
    w, h = base.size
    inner = (round(zone.left * w), round(zone.top * h), w - round(zone.right * w) - 1, h - round(zone.bottom * h) - 1)
    shade = Image.new("RGBA", base.size, (255, 0, 0, 70))
    ImageDraw.Draw(shade).rectangle(inner, fill=(0, 0, 0, 0))
    ImageDraw.Draw(shade).rectangle(inner, outline=(255, 255, 255, 200), width=max(2, w // 400))
    out = Image.alpha_composite(base, shade)
    return out if img.mode == "RGBA" else out.convert("RGB")


def encode_within(img: Image.Image, fmt: PlatformFormat, output_format: str,
                  notes: list[str]) -> tuple[bytes, str, int]:
    """Encode in the asked (else the format's) file type, under the platform's size limit: JPEG/WebP quality is
    lowered stepwise; PNG is palette-reduced, then re-encoded as JPEG if the platform accepts it."""
    kind = (output_format or fmt.file_type).lower().replace("jpg", "jpeg")
    limit = fmt.max_size_bytes
    if kind == "png":
        data, media = images.encode(img, "PNG")
        if len(data) <= limit:
            return data, media, 0
        quantized = img.quantize(256, method=Image.Quantize.FASTOCTREE)
        buf = io.BytesIO()
        quantized.save(buf, "PNG", optimize=True)
        if buf.tell() <= limit:
            notes.append(f"PNG over {limit // MB} MB: reduced to a 256-colour palette")
            return buf.getvalue(), "image/png", 0
        if "jpeg" not in fmt.file_types:
            raise ImageTooLarge(f"cannot fit {fmt.platform}/{fmt.id} under {limit} bytes as PNG", field="image")
        notes.append(f"PNG over {limit // MB} MB even with a palette: encoded as JPEG instead")
        kind = "jpeg"
    if kind not in ("jpeg", "webp"):
        raise InvalidArgument(f"unsupported output format {kind!r}", field="output_format")
    for quality in JPEG_QUALITIES:
        data, media = images.encode(img, kind.upper(), quality)
        if len(data) <= limit:
            if quality != JPEG_QUALITIES[0]:
                notes.append(f"{kind.upper()} quality lowered to {quality} to stay under {limit / MB:g} MB")
            return data, media, quality
    raise ImageTooLarge(f"cannot fit {fmt.platform}/{fmt.id} under {limit} bytes even at quality "
                        f"{JPEG_QUALITIES[-1]}", field="image", max_bytes=limit)

