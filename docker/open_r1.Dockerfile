# syntax=docker/dockerfile:1
# Open R1 GRPO image (vLLM + flash-attn, seed 004), with the Trainyard runtime inside.
#
#   invoke docker.build --stack open_r1 --tag you/open-r1-train:latest [--build-arg OPEN_R1_REF=<commit>]
#
# Open R1's README pins vLLM 0.8.5.post1 (it brings torch 2.6.0) and Python 3.11; flash-attn is installed without
# build isolation against that torch (a CUDA devel image, so it can compile when no prebuilt wheel matches).
# The build context is runs/docker/open_r1/ (prepared by the task): trainyard_runtime.pyz and train_wrapper.sh.
# The checkout is /opt/open-r1, the working directory: its recipes/ and src/ are where the trainer expects them.

ARG CUDA_IMAGE=nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04
ARG UV_VERSION=0.13.8

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

FROM ${CUDA_IMAGE}

ARG VLLM_VERSION=0.8.5.post1
ARG FLASH_ATTN_VERSION=2.7.4.post1
ARG OPEN_R1_REPO=https://github.com/huggingface/open-r1.git
ARG OPEN_R1_REF=main
ARG MAX_JOBS=8

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_NO_CACHE=1 \
    UV_PYTHON_INSTALL_DIR=/opt/uv-python \
    GIT_LFS_SKIP_SMUDGE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH}

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git git-lfs ca-certificates build-essential ninja-build \
    && rm -rf /var/lib/apt/lists/*

COPY --from=uv /uv /uvx /usr/local/bin/

RUN uv venv --python 3.11 /opt/venv \
    && uv pip install "vllm==${VLLM_VERSION}" setuptools wheel packaging \
    && MAX_JOBS="${MAX_JOBS}" uv pip install --no-build-isolation "flash-attn==${FLASH_ATTN_VERSION}"

RUN git clone "${OPEN_R1_REPO}" /opt/open-r1 \
    && git -C /opt/open-r1 checkout "${OPEN_R1_REF}"
WORKDIR /opt/open-r1
RUN uv pip install -e ".[dev]" \
    && python -c "import open_r1, vllm, flash_attn"

# A non-root user (numeric, so it resolves without /etc/passwd on any host).
RUN useradd --create-home --uid 10001 --shell /bin/bash trainyard
COPY --chmod=0644 trainyard_runtime.pyz /opt/trainyard/trainyard_runtime.pyz
COPY --chmod=0755 train_wrapper.sh /opt/trainyard/train_wrapper.sh
ENV TRAINYARD_RUNTIME=/opt/trainyard/trainyard_runtime.pyz \
    TRAINYARD_SKIP_SETUP=1 \
    TRAINYARD_PYTHON=/opt/venv/bin/python

USER 10001
CMD ["bash"]
