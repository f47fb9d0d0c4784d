# syntax=docker/dockerfile:1
# Self-hosted chat: the Gradio UI and the service routes on one port, llama.cpp compiled in.
#
#   docker build -t chat .
#   docker run -p 7860:7860 -e CHAT_MODEL=org/repo:*Q4_K_M.gguf -v chat-models:/data chat
#
# Settings are environment variables (see the README's table); the model is the embedded
# SmolLM2 unless CHAT_MODEL names a GGUF path or a Hub reference (downloaded into /data/hf).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: compile llama.cpp (llama-cpp-python) and install every requirement into a venv ---
FROM ${PYTHON_IMAGE} AS builder
# Portable CPU code by default; e.g. --build-arg CMAKE_ARGS="-DGGML_CUDA=on" on a CUDA base image.
ARG CMAKE_ARGS="-DGGML_NATIVE=OFF"
ENV CMAKE_ARGS=${CMAKE_ARGS} \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements.txt .
# The same install step CI runs.
RUN pip install -r requirements.txt

# --- runtime: the venv, the app and a non-root user ---
FROM ${PYTHON_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin chat \
    && mkdir -p /data/hf \
    && chown -R chat:chat /data
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY --chown=chat:chat app.py ./
COPY --chown=chat:chat chat ./chat
COPY --chown=chat:chat prompts ./prompts
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    HF_HOME=/data/hf \
    CHAT_HOST=0.0.0.0 \
    CHAT_PORT=7860 \
    CHAT_MODEL="" \
    CHAT_LOG_FORMAT=json \
    CHAT_FEEDBACK_LOG=/data/feedback.jsonl
USER 10001:10001
VOLUME ["/data"]
EXPOSE 7860
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CHAT_PORT', '7860'), timeout=4)"]
CMD ["python", "app.py"]
