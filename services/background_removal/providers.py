"""ONNX execution providers, chosen explicitly and checked after the session is made.

onnxruntime quietly runs on CPU when the CUDA provider cannot load its libraries, and rembg picks providers by
itself; so the service asks for exactly what its settings say and reads back what the session really got.
"""

from __future__ import annotations

import onnxruntime as ort

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


class ProviderError(RuntimeError):
    """The asked provider cannot run here; the message says what to change."""


def requested_providers(choice: str) -> list[str]:
    available = ort.get_available_providers()
    if choice == "cpu":
        return [CPU]
    if choice == "cuda":
        if CUDA not in available:
            raise ProviderError(
                f"provider 'cuda' was asked but this onnxruntime has no {CUDA} (available: {', '.join(available)}); "
                "install onnxruntime-gpu on a CUDA machine, or set IMAGEMESH_PROVIDER=cpu")
        return [CUDA, CPU]  # CPU only for the few operators CUDA lacks; the session's first provider is checked
    if choice == "auto":
        return [CUDA, CPU] if CUDA in available else [CPU]
    raise ProviderError(f"unknown provider {choice!r}; use cpu, cuda or auto")


def active_provider(session: ort.InferenceSession, choice: str) -> str:
    """The provider the session really runs on; 'cuda' that ended on CPU is an error, never a quiet fallback."""
    active = session.get_providers()[0]
    if choice == "cuda" and active != CUDA:
        raise ProviderError(
            f"provider 'cuda' was asked but the session runs on {active} (CUDA/cuDNN libraries did not load; "
            "see onnxruntime's log above)")
    return active


def session_options(intra_op_threads: int, inter_op_threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(0, intra_op_threads)
    options.inter_op_num_threads = max(0, inter_op_threads)
    options.log_severity_level = 3
    return options


def device_class(provider: str) -> str:
    return "cuda" if provider == CUDA else "cpu"
