# syntax=docker/dockerfile:1.7
# imagemesh Generate service (diffusers on PyTorch; CUDA runtime base by default).
#
# Production (GPU): the default BASE_IMAGE is NVIDIA's CUDA *runtime* image (no compilers, no headers).
# It ships no Python, so the `base` stage installs Ubuntu's python3 (3.12): build the wheelhouse with a
# Python 3.12 interpreter (`make wheelhouse WHEELHOUSE_PYTHON=python3.12 WHEELHOUSE_PYTHON_VERSION=3.12`),
# which takes PyPI's CUDA build of torch==2.13.0.
# Here (no GPU, no registry): the CPU variant of this same file is built on the local Debian base:
#   podman build -f docker/generate.Dockerfile --build-arg BASE_IMAGE=localhost/imagemesh-base:bookworm .
# Models: mounted at /models (default), or baked in with --build-arg MODELS_SRC=var/models.
ARG BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

# ---- base: the given image plus a Python interpreter when it has none (the CUDA runtime image) ----
FROM ${BASE_IMAGE} AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The distribution's python3 follows the base image's release; pinning its exact version here would
# break on every base image update, so DL3008 is waived for this one conditional install.
# hadolint ignore=DL3008
RUN if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip' 2>/dev/null; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
      && rm -rf /var/lib/apt/lists/*; \
    fi

# ---- dependencies: only pyproject.toml, constraints.txt and the wheelhouse index are inputs ----
FROM base AS deps
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /build
RUN python3 -m venv /opt/venv
COPY pyproject.toml constraints.txt docker/requirements.py ./
COPY var/cache/wheelhouse/INDEX /build/wheelhouse.index
RUN --mount=type=bind,source=var/cache/wheelhouse,target=/wheels \
    python3 requirements.py generate > requirements.txt \
 && /opt/venv/bin/pip install --no-index --find-links=/wheels -c constraints.txt -r requirements.txt

# ---- runtime ----
FROM base AS runtime
ARG MODELS_SRC=docker/no-models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    HF_HOME=/tmp/huggingface \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    IMAGEMESH_HOST=0.0.0.0 \
    IMAGEMESH_GRPC_PORT=50052 \
    IMAGEMESH_METRICS_PORT=9102 \
    IMAGEMESH_VAR_DIR=/var/lib/imagemesh \
    IMAGEMESH_MODELS_DIR=/models
RUN (getent passwd 1000 >/dev/null || useradd --uid 1000 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin imagemesh) \
 && install -d -o 1000 -g 1000 /var/lib/imagemesh /var/lib/imagemesh/images
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
COPY ${MODELS_SRC} /models
COPY shared ./shared
COPY services/__init__.py ./services/__init__.py
COPY services/generate ./services/generate
RUN python -m compileall -q /app && rm -rf /tmp/* /tmp/.[!.]*
USER 1000:1000
VOLUME ["/var/lib/imagemesh", "/tmp"]
EXPOSE 50052 9102
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
  CMD ["/bin/sh", "-c", "exec python -m shared.healthcheck 127.0.0.1:${IMAGEMESH_GRPC_PORT}"]
ENTRYPOINT ["python", "-m", "services.generate"]
