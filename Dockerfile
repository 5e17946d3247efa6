# syntax=docker/dockerfile:1
# Two targets from one set of files:
#   api     ONNX Runtime serving, no torch (docker build --target api .)
#   worker  adds torch for retraining jobs (docker build --target worker .)
# GPU hosts: --build-arg ORT_PACKAGE=onnxruntime-gpu for the api, and a CUDA torch build for
# the worker (the default torch wheel on PyPI is the CUDA one; TORCH_INDEX_URL may point at
# a CPU-only wheel index for small CPU images).
# The pip lines are the Makefile's: same constraints file, same extras.
ARG BASE=python:3.11-slim

FROM ${BASE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /srv
RUN useradd --uid 10001 --create-home gan && mkdir -p /data && chown gan /data
COPY requirements/constraints.txt requirements/constraints.txt
COPY pyproject.toml README.md ./
COPY core core
COPY app app
COPY training training

FROM base AS api
ARG ORT_PACKAGE=onnxruntime
RUN pip install -c requirements/constraints.txt ".[redis]" \
 && if [ "$ORT_PACKAGE" != onnxruntime ]; then pip uninstall -y onnxruntime && pip install "$ORT_PACKAGE"; fi
COPY --chown=gan models models
USER gan
ENV GAN_MODELS_DIR=/srv/models GAN_DATA_DIR=/data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status != 200)"]
CMD ["python", "-m", "uvicorn", "--factory", "app.main:create_app", "--host", "0.0.0.0", "--port", "8000", "--no-access-log"]

FROM api AS worker
ARG TORCH_INDEX_URL=""
USER root
RUN pip install -c requirements/constraints.txt ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} ".[train,redis]"
USER gan
HEALTHCHECK NONE
CMD ["python", "-m", "app.jobs.worker"]
