# syntax=docker/dockerfile:1.7
# imagemesh BackgroundRemoval service (rembg on ONNX Runtime, CPU by default).
#
# Build from the repository root after `make wheelhouse` (dependencies come from var/cache/wheelhouse,
# no network is needed during the build):
#   podman build -f docker/background-removal.Dockerfile --build-arg BASE_IMAGE=localhost/imagemesh-base:bookworm .
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
    python3 requirements.py background-removal > requirements.txt \
 && /opt/venv/bin/pip install --no-index --find-links=/wheels -c constraints.txt -r requirements.txt

# ---- runtime ----
FROM ${BASE_IMAGE} AS runtime
ARG MODELS_SRC=docker/no-models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    U2NET_HOME=/models \
    IMAGEMESH_HOST=0.0.0.0 \
    IMAGEMESH_GRPC_PORT=50053 \
    IMAGEMESH_METRICS_PORT=9103 \
    IMAGEMESH_VAR_DIR=/var/lib/imagemesh \
    IMAGEMESH_MODELS_DIR=/models
RUN (getent passwd 1000 >/dev/null || useradd --uid 1000 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin imagemesh) \
 && install -d -o 1000 -g 1000 /var/lib/imagemesh /var/lib/imagemesh/images
COPY --from=deps /opt/venv /opt/venv
# Warm numba's cache for pymatting at build time (30 s per start otherwise) and seed the writable cache
# directory from it when Python starts (see docker/numba_cache_seed.py).
COPY docker/numba_cache_seed.py /opt/venv/lib/imagemesh_numba_cache_seed.py
RUN site_packages="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
 && mv /opt/venv/lib/imagemesh_numba_cache_seed.py "$site_packages/" \
 && echo "import imagemesh_numba_cache_seed" > "$site_packages/imagemesh-numba-cache-seed.pth" \
 && NUMBA_CACHE_DIR=/opt/numba-cache python -c "import rembg" \
 && chmod -R a+rX /opt/numba-cache
WORKDIR /app
COPY ${MODELS_SRC} /models
COPY shared ./shared
COPY services/__init__.py ./services/__init__.py
COPY services/background_removal ./services/background_removal
RUN python -m compileall -q /app && rm -rf /tmp/* /tmp/.[!.]*
USER 1000:1000
VOLUME ["/var/lib/imagemesh", "/tmp"]
EXPOSE 50053 9103
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/bin/sh", "-c", "exec python -m shared.healthcheck 127.0.0.1:${IMAGEMESH_GRPC_PORT}"]
ENTRYPOINT ["python", "-m", "services.background_removal"]
