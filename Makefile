# One source of installs: the Dockerfile runs the same pip lines against the
# same constraints file, so what `make test` proves is what the image ships.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --disable-pip-version-check -q -c requirements/constraints.txt
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install serve test lint browser kserve-client screenshots train classifier scores bench load fuzz audit clean
.PHONY: image image-gpu image-test kubectl haproxy scale-test

install: $(VENV)/.installed

# The Pythons the pinned packages have wheels for (requirements/constraints.txt), checked
# before .venv is made: another one fails here, saying so, not halfway through pip.
PYTHON_OK := (3, 11) <= sys.version_info[:2] <= (3, 13)

$(VENV)/.installed: $(VENV)/.serving
	$(PIP) -e ".[train,redis,test]" -e "./client[torch,tar]"
	touch $@

# What serving needs and no more (the api image's set: no torch, no test tools). Without torch
# the service serves and refuses retraining jobs with a 503 that says how to add them.
$(VENV)/.serving: pyproject.toml requirements/constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if $(PYTHON_OK) else "error: $(PYTHON) is Python %d.%d; gan-serve needs 3.11, 3.12 or 3.13 (make PYTHON=python3.12 ...)" % sys.version_info[:2])'
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip setuptools wheel
	$(PIP) -e ".[redis]"
	touch $@

# "python -m": an engine process starts without running the launcher script again
# (app/serving/engine_process.py). After `make install`, this serves with retraining too.
serve: $(VENV)/.serving
	$(BIN)/python -m app --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check core app training client tests benchmarks examples
	$(BIN)/ruff format --check core app training client tests benchmarks examples
	$(BIN)/mypy

test: install lint browser kubectl kserve-client
	$(BIN)/python -m pytest

# KServe's v2 client, unmodified, for tests/app/oip/test_kserve_client.py: a venv of its own,
# as its pins conflict with ours (requirements/kserve.txt).
kserve-client: .venv-kserve/.installed

.venv-kserve/.installed: requirements/kserve.txt
	$(PYTHON) -m venv .venv-kserve
	.venv-kserve/bin/pip install --disable-pip-version-check -q -r requirements/kserve.txt
	touch $@

# Debian's Chromium for the playground's browser test (Playwright drives it; Playwright's own
# browser download is never used). Without it that test skips, and fails under CI=true.
browser:
	@test -x /usr/bin/chromium || { export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
	  echo "warning: chromium could not be installed: the browser test will skip (fail under CI=true)"

# A kubectl for `kubectl kustomize` in tests/test_kubernetes.py: any one on PATH, else Debian's
# (package kubernetes-client: kubectl 1.20, kustomize v2.0.3, which the manifests are written
# for). Without it that test skips, and fails under CI=true.
kubectl:
	@command -v kubectl >/dev/null || { export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq kubernetes-client >/dev/null; } || \
	  echo "warning: kubectl could not be installed: the Kubernetes test will skip (fail under CI=true)"

# The scaled-out shape on loopback (tests/scale, 1.5 to 3 minutes on 2 cores): Debian's
# HAProxy running deploy/haproxy/haproxy.cfg before three api replicas, two workers and Redis.
scale-test: install haproxy
	$(BIN)/python -m pytest -m scale tests/scale

# Debian's HAProxy (the compose deployment's haproxy:2.6 image runs the same 2.6 branch).
haproxy:
	@test -x /usr/sbin/haproxy || { export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq haproxy >/dev/null; } || \
	  { echo "error: haproxy could not be installed (apt-get install haproxy, as root):" \
	    "make scale-test needs it" >&2; exit 1; }

# docs/playground-*.png from the committed models; the job shown is cancelled, publishing nothing.
screenshots: install browser
	$(BIN)/python -m pytest tests/app/test_playground.py -m screenshots

# The committed evaluation classifier, then the two committed models: both at once, one
# thread each, as the committed runs were (float results depend on the thread count).
# Each run's exact command, config and thread count land in its manifest.
classifier: install
	$(BIN)/python -m training classifier --out training/classifier

train: install
	mkdir -p runs
	OMP_NUM_THREADS=1 $(BIN)/python -m training train --config training/configs/mlp-hinge.toml \
	  --name mnist-gan --out models/ > runs/mnist-gan.log 2>&1 & gan=$$!; \
	OMP_NUM_THREADS=1 $(BIN)/python -m training train --config training/configs/cdcgan.toml \
	  --name mnist-cdcgan --out models/ > runs/mnist-cdcgan.log 2>&1 & cdcgan=$$!; \
	wait $$gan && wait $$cdcgan

# The usefulness scores (training/usefulness.py) of every committed version, written into its
# model.json beside the command: one version at a time, one thread (the small classifiers'
# float results depend on the thread count). About 30 s a conditional version, 3 s otherwise.
scores: install
	for version in models/*/[0-9]*; do \
	  OMP_NUM_THREADS=1 $(BIN)/python -m training score $$version || exit 1; done

bench: install
	$(BIN)/python -m benchmarks.serving
	$(BIN)/python -m benchmarks.projection
	$(BIN)/python -m benchmarks.exports

# 64 concurrent clients against a server on loopback: only 200 and 503, flat memory.
load: install
	$(BIN)/python -m benchmarks.load

# The schema fuzzer of `make test`, 500 examples per operation instead of 25.
fuzz: install
	FUZZ_EXAMPLES=500 $(BIN)/python -m pytest tests/app/test_fuzz.py

# Known vulnerabilities in the pinned dependencies (PyPI's advisory data; needs the network).
# --strict: a package that cannot be looked up fails the audit instead of passing unchecked.
audit: install
	$(BIN)/pip-audit --strict --no-deps --disable-pip -r requirements/constraints.txt

# The api and worker images (BuildKit: Docker 23+, or DOCKER_BUILDKIT=1 with docker.io 20.10).
# IMAGE_ARGS: more docker build flags (--build-arg BASE=..., TORCH_INDEX_URL=..., a CA secret).
DOCKER ?= docker
IMAGE_ARGS ?=
image:
	for target in api worker; do DOCKER_BUILDKIT=1 $(DOCKER) build --target $$target \
	  -t gan-serve:$$target$(IMAGE_SUFFIX) $(IMAGE_ARGS) . || exit 1; done

# CUDA base, onnxruntime-gpu and PyPI's CUDA torch: gan-serve:api-gpu, gan-serve:worker-gpu.
image-gpu:
	$(MAKE) image IMAGE_SUFFIX=-gpu IMAGE_ARGS="--build-arg FLAVOR=gpu $(IMAGE_ARGS)"

# Builds both images on a private Docker engine (root: dockerd from docker.io, base image from
# mmdebstrap) and runs them against Redis on loopback (tests/image/conftest.py).
image-test: install
	$(BIN)/python -m pytest -m image tests/image

clean:
	rm -rf $(VENV) .venv-kserve .pytest_cache .mypy_cache .ruff_cache .hypothesis runs
