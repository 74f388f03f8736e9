"""Super-resolution engines: Real-ESRGAN animevideov3 on onnxruntime, Real-ESRGAN x4plus on ncnn.

An engine turns float32 RGB (HxWx3, 0..1) into float32 RGB at its native scale. Engines are built once when
the server is built (never at import, never per request); one that cannot load is kept, marked unavailable,
with the reason, so ListMethods can say why. The execution provider is chosen explicitly and checked after
the session is made: onnxruntime quietly drops to CPU when CUDA fails to load, and we refuse that.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.errors import ModelUnavailable

log = logging.getLogger("imagemesh.upscale.sr")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


@dataclass(frozen=True)
class SrSpec:
    id: str
    description: str
    native_scale: int
    engine: str  # "onnx" or "ncnn"
    files: tuple[str, ...]  # relative to the models dir


SPECS = (
    SrSpec("realesrgan-x4", "Real-ESRGAN animevideov3 x4 (SRVGGNetCompact, 621k params) on onnxruntime", 4, "onnx",
           ("realesrgan/realesr-animevideov3-x4.onnx",)),
    SrSpec("realesrgan-x2", "Real-ESRGAN animevideov3 x2 (the x4 network + bicubic 1/2) on onnxruntime", 2, "onnx",
           ("realesrgan/realesr-animevideov3-x2.onnx",)),
    SrSpec("realesrgan-x3", "Real-ESRGAN animevideov3 x3 (the x4 network + bicubic 3/4) on onnxruntime", 3, "onnx",
           ("realesrgan/realesr-animevideov3-x3.onnx",)),
    SrSpec("realesrgan-x4plus", "Real-ESRGAN x4plus (RRDBNet, 16.7M params, photos) on ncnn; seconds per tile on CPU",
           4, "ncnn", ("realesrgan/REALESRGAN_X4PLUS_UP4X.param", "realesrgan/REALESRGAN_X4PLUS_UP4X.bin")),
)


class SrEngine:
    """A loaded model, or the reason it could not be loaded."""

    def __init__(self, spec: SrSpec) -> None:
        self.spec = spec
        self.available = False
        self.reason = ""
        self.provider = ""
        self.device_class = "cpu"

    def run(self, rgb: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError


def resolve_providers(choice: str, available: list[str]) -> tuple[list[str], str]:
    """The provider list to ask onnxruntime for, or an error saying why the choice cannot be met."""
    choice = (choice or "auto").lower()
    if choice == "cpu":
        return [CPU], ""
    if choice == "cuda":
        if CUDA not in available:
            return [], f"sr_provider=cuda but this onnxruntime offers only {available} (install onnxruntime-gpu)"
        return [CUDA], ""
    if choice == "auto":
        return ([CUDA] if CUDA in available else [CPU]), ""
    return [], f"unknown sr_provider {choice!r}; use auto, cpu or cuda"


class OnnxSrEngine(SrEngine):
    def __init__(self, spec: SrSpec, models_dir: Path, provider_choice: str, threads: int) -> None:
        super().__init__(spec)
        path = models_dir / spec.files[0]
        if not path.is_file():
            self.reason = f"model file {path} is missing (run scripts/prepare_models.py)"
            return
        try:
            import onnxruntime as ort
        except ImportError:
            self.reason = "onnxruntime is not installed (pip install imagemesh[upscale])"
            return
        providers, error = resolve_providers(provider_choice, ort.get_available_providers())
        if error:
            self.reason = error
            return
        opts = ort.SessionOptions()
        if threads > 0:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as exc:  # noqa: BLE001 - a model that cannot load is reported, not fatal to the service
            self.reason = f"onnxruntime could not load {path.name}: {exc}"
            return
        actual = self.session.get_providers()[0]
        if actual != providers[0]:
            self.reason = f"asked onnxruntime for {providers[0]} but the session runs on {actual}; refusing to fall back"
            return
        self.provider = actual
        self.device_class = "cuda" if actual == CUDA else "cpu"
        self.available = True

    def run(self, rgb: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32)
        y = self.session.run(None, {"input": x})[0][0]
        return y.transpose(1, 2, 0)


class NcnnSrEngine(SrEngine):
    """x4plus on ncnn. Loading its 33 MB of weights takes seconds on a small CPU, so the files and the package
    are checked when the server is built and the net is loaded on first use (under a lock, in a worker thread)."""

    def __init__(self, spec: SrSpec, models_dir: Path, threads: int) -> None:
        super().__init__(spec)
        self.param, self.weights = (models_dir / f for f in spec.files)
        self.threads = threads
        self.net = None
        self._lock = threading.Lock()
        missing = [str(p) for p in (self.param, self.weights) if not p.is_file()]
        if missing:
            self.reason = f"model file(s) {', '.join(missing)} missing (run scripts/prepare_models.py)"
            return
        try:
            import ncnn
        except ImportError:
            self.reason = "the ncnn package is not installed (pip install imagemesh[upscale])"
            return
        self._ncnn = ncnn
        # CPU on purpose: Vulkan would need a device and driver we do not probe; the provider name says which.
        self.provider = "ncnn-cpu"
        self.available = True

    def _load(self):
        with self._lock:
            if self.net is None:
                net = self._ncnn.Net()
                net.opt.use_vulkan_compute = False
                if self.threads > 0:
                    net.opt.num_threads = self.threads
                if net.load_param(str(self.param)) != 0 or net.load_model(str(self.weights)) != 0:
                    self.available = False
                    self.reason = f"ncnn could not load {self.param.name}/{self.weights.name}"
                    raise ModelUnavailable(self.reason, model=self.spec.id)
                self.net = net
        return self.net

    def run(self, rgb: np.ndarray) -> np.ndarray:
        net = self.net or self._load()
        chw = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)
        extractor = net.create_extractor()
        # ncnn.Mat only wraps the buffer: `chw` must stay referenced until extract() has run.
        mat = self._ncnn.Mat(chw)
        extractor.input("data", mat)
        ret, out = extractor.extract("output")
        if ret != 0:
            raise RuntimeError(f"ncnn extract failed with code {ret}")
        result = np.array(out).transpose(1, 2, 0)
        del mat, chw
        return result


def load_engines(models_dir: Path, provider_choice: str, threads: int) -> dict[str, SrEngine]:
    engines: dict[str, SrEngine] = {}
    for spec in SPECS:
        if spec.engine == "onnx":
            engine: SrEngine = OnnxSrEngine(spec, models_dir, provider_choice, threads)
        else:
            engine = NcnnSrEngine(spec, models_dir, threads)
        if not engine.available:
            log.warning("super-resolution method %s unavailable: %s", spec.id, engine.reason)
        engines[spec.id] = engine
    return engines
