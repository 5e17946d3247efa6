# Two targets from one file, in two flavours (BuildKit: docker 23+, or DOCKER_BUILDKIT=1):
#   api     ONNX Runtime serving, no torch     docker build --target api -t gan-serve:api .
#   worker  adds torch for retraining jobs     docker build --target worker -t gan-serve:worker .
#   --build-arg FLAVOR=gpu: the same targets on CUDA_BASE, with onnxruntime-gpu and PyPI's CUDA
#   torch (make image-gpu); the host needs the NVIDIA Container Toolkit (README, Deployment).
# Dependencies install before the code, so a code change rebuilds only the last layers. The
# pip lines are the Makefile's: the same constraints file, the same pyproject extras.
# Builds behind a TLS-intercepting proxy: --secret id=ca,src=<CA bundle> and --build-arg
# PIP_CERT=/run/secrets/ca; a secret is mounted for one RUN and stored in no layer.
ARG BASE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7
# CUDA 13 with cuDNN 9: what onnxruntime-gpu 1.31 and PyPI's torch 2.13 are built against.
ARG CUDA_BASE=nvidia/cuda:13.0.3-cudnn-runtime-ubuntu24.04@sha256:14f6d08d1cd4a96effbfe3101d0b56326f552c199d05e4979ee0bd616df5811b
ARG FLAVOR=cpu

# tini is PID 1: it forwards docker stop's SIGTERM and reaps the engine and training children.
FROM ${BASE} AS system-cpu
RUN command -v tini >/dev/null || { apt-get update && apt-get install -y --no-install-recommends \
    tini && rm -rf /var/lib/apt/lists/*; }

FROM ${CUDA_BASE} AS system-gpu
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv tini \
 && rm -rf /var/lib/apt/lists/*

FROM system-${FLAVOR} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH \
    GAN_MODELS_DIR=/srv/models GAN_DATA_DIR=/data
# A venv: one install path on every base (Debian's and Ubuntu's Pythons refuse system installs).
RUN python3 -m venv /opt/venv \
 && useradd --uid 10001 --create-home gan && mkdir -p /data && chown gan /data
WORKDIR /srv
ENTRYPOINT ["/usr/bin/tini", "--"]

# pyproject's dependency lists as requirement files: the install layers below are rebuilt when
# these lists or the pins change, not with the rest of pyproject.toml.
FROM runtime AS requirements
ARG FLAVOR
COPY pyproject.toml /tmp/
RUN python -c 'import tomllib; p = tomllib.load(open("/tmp/pyproject.toml", "rb"))["project"]; \
extras = p["optional-dependencies"]; \
open("/tmp/serving.txt", "w").write("\n".join(p["dependencies"] + extras["redis"])); \
open("/tmp/train.txt", "w").write("\n".join(extras["train"]))' \
 && if [ "$FLAVOR" = gpu ]; then sed -i 's/^onnxruntime\b/onnxruntime-gpu/' /tmp/serving.txt; fi

FROM runtime AS api-deps
ARG PIP_CERT
COPY requirements/constraints.txt requirements/
COPY --from=requirements /tmp/serving.txt requirements/
RUN --mount=type=secret,id=ca \
    pip install -c requirements/constraints.txt -r requirements/serving.txt

FROM api-deps AS worker-deps
ARG FLAVOR
ARG PIP_CERT
# PyPI's torch is the CUDA build (GBs of NVIDIA libraries): CPU images take PyTorch's CPU
# index, GPU images PyPI. TORCH_INDEX_URL replaces either (a mirror; make image-test serves
# this machine's CPU wheel on loopback).
ARG TORCH_INDEX_URL=""
COPY --from=requirements /tmp/train.txt requirements/
RUN --mount=type=secret,id=ca \
    index=${TORCH_INDEX_URL:-$([ "$FLAVOR" = gpu ] || echo https://download.pytorch.org/whl/cpu)}; \
    pip install -c requirements/constraints.txt ${index:+--extra-index-url "$index"} \
      -r requirements/train.txt

# The code as a wheel, built once for both targets; the context is mounted, never copied.
FROM runtime AS wheel
ARG PIP_CERT
RUN --mount=type=secret,id=ca --mount=type=bind,target=/tmp/src,rw \
    pip wheel --no-deps --wheel-dir /tmp/wheel /tmp/src

FROM api-deps AS api
RUN --mount=type=bind,from=wheel,source=/tmp/wheel,target=/tmp/wheel \
    pip install --no-deps /tmp/wheel/*.whl
# The starting model repository, read only: jobs publish into GAN_DATA_DIR (/data/models).
COPY models models
USER gan
ENV PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["python", "-c", \
  "import os, sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ['PORT'], timeout=2).status != 200)"]
# python -m app listens on $PORT; SIGTERM (from tini): in-flight requests finish, then it exits.
CMD ["python", "-m", "app", "--host", "0.0.0.0"]

FROM worker-deps AS worker
RUN --mount=type=bind,from=wheel,source=/tmp/wheel,target=/tmp/wheel \
    pip install --no-deps /tmp/wheel/*.whl
COPY models models
USER gan
# SIGTERM: the running job checkpoints and goes back on the queue (app/jobs/worker.py).
CMD ["python", "-m", "app.jobs.worker"]
