# syntax=docker/dockerfile:1.7
# imagemesh Upscale service (ONNX Runtime / PIL, CPU by default).
#
# Build from the repository root after `make wheelhouse` (dependencies come from var/cache/wheelhouse,
# no network is needed during the build):
#   podman build -f docker/upscale.Dockerfile --build-arg BASE_IMAGE=localhost/imagemesh-base:bookworm .
# Models: mounted at /models (default), or baked in with --build-arg MODELS_SRC=var/models.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- dependencies: only pyproject.toml, constraints.txt and the wheelhouse index are inputs ----
FROM ${BASE_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /build
RUN python3 -m venv /opt/venv
COPY pyproject.toml constraints.txt docker/requirements.py ./
COPY var/cache/wheelhouse/INDEX /build/wheelhouse.index
RUN --mount=type=bind,source=var/cache/wheelhouse,target=/wheels \
    python3 requirements.py upscale > requirements.txt \
 && /opt/venv/bin/pip install --no-index --find-links=/wheels -c constraints.txt -r requirements.txt

# ---- runtime ----
FROM ${BASE_IMAGE} AS runtime
ARG MODELS_SRC=docker/no-models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    IMAGEMESH_HOST=0.0.0.0 \
    IMAGEMESH_GRPC_PORT=50054 \
    IMAGEMESH_METRICS_PORT=9104 \
    IMAGEMESH_VAR_DIR=/var/lib/imagemesh \
    IMAGEMESH_MODELS_DIR=/models
RUN (getent passwd 1000 >/dev/null || useradd --uid 1000 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin imagemesh) \
 && install -d -o 1000 -g 1000 /var/lib/imagemesh /var/lib/imagemesh/images
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
COPY ${MODELS_SRC} /models
COPY shared ./shared
COPY services/__init__.py ./services/__init__.py
COPY services/upscale ./services/upscale
RUN python -m compileall -q /app && rm -rf /tmp/* /tmp/.[!.]*
USER 1000:1000
VOLUME ["/var/lib/imagemesh", "/tmp"]
EXPOSE 50054 9104
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/bin/sh", "-c", "exec python -m shared.healthcheck 127.0.0.1:${IMAGEMESH_GRPC_PORT}"]
ENTRYPOINT ["python", "-m", "services.upscale"]
