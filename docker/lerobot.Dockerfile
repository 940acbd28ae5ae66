# syntax=docker/dockerfile:1
# LeRobot training image, with the Trainyard runtime inside: a pod or a CHTC job starts training with no setup.
#
#   invoke docker.build --stack lerobot --tag you/lerobot-train:0.6.1 [--extras smolvla | pi,peft] [--config x.yaml]
#
# The build context is runs/docker/lerobot/ (prepared by the task): trainyard_runtime.pyz and train_wrapper.sh.
# LEROBOT_SPEC is the one install requirement, as the runtime would install it for the config's `lerobot.version`
# (helpers/runtime/lerobot_versions.py): 0.6 `lerobot[training,<extras>]==0.6.1`; 0.4.4's `pi` from its git tag.

ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
ARG UV_VERSION=0.13.8

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

FROM ${CUDA_IMAGE}

ARG LEROBOT_VERSION=0.6.1
ARG LEROBOT_SPEC=lerobot[training]==0.6.1
LABEL ai.trainyard.lerobot-version="${LEROBOT_VERSION}"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_NO_CACHE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH}

# Distribution packages: Python 3.12, ffmpeg for LeRobot's video decoding, git for the `pi` extra, a compiler for
# the few dependencies without wheels (evdev). Versions come with the CUDA base image's Ubuntu release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3 python3-dev build-essential git ffmpeg ca-certificates libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

COPY --from=uv /uv /uvx /usr/local/bin/

RUN uv venv --python /usr/bin/python3 /opt/venv \
    && uv pip install "${LEROBOT_SPEC}" huggingface_hub \
    && python -c "import lerobot"

# A non-root user (numeric, so it resolves without /etc/passwd on any host).
RUN useradd --create-home --uid 10001 --shell /bin/bash trainyard
COPY --chmod=0644 trainyard_runtime.pyz /opt/trainyard/trainyard_runtime.pyz
COPY --chmod=0755 train_wrapper.sh /opt/trainyard/train_wrapper.sh
ENV TRAINYARD_RUNTIME=/opt/trainyard/trainyard_runtime.pyz \
    TRAINYARD_SKIP_SETUP=1 \
    TRAINYARD_PYTHON=/opt/venv/bin/python

USER 10001
WORKDIR /home/trainyard
CMD ["bash"]
