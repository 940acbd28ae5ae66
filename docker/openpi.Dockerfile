# syntax=docker/dockerfile:1
# openpi training image (pi0 / pi0.5, JAX) for the CHTC GPU Lab and pods, with the Trainyard runtime inside.
#
#   invoke docker.build --stack openpi --tag you/openpi_train:latest \
#       --build-arg OPENPI_REPO=https://github.com/<you>/openpi.git --build-arg OPENPI_REF=<commit>
#
# Your own train configs (e.g. pi05_collab) live in your openpi fork: build from it with OPENPI_REPO/OPENPI_REF.
# The build context is runs/docker/openpi/ (prepared by the task): trainyard_runtime.pyz and train_wrapper.sh.
# The checkout is /opt/openpi (OPENPI_DIR); its environment is synced at build time and never changed at run time
# (UV_NO_SYNC / UV_FROZEN), so a job running under any uid can use it read-only.

ARG CUDA_IMAGE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04
ARG UV_VERSION=0.13.8

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

FROM ${CUDA_IMAGE}

ARG OPENPI_REPO=https://github.com/Physical-Intelligence/openpi.git
ARG OPENPI_REF=main

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_PYTHON_INSTALL_DIR=/opt/uv-python \
    GIT_LFS_SKIP_SMUDGE=1 \
    OPENPI_DIR=/opt/openpi

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git git-lfs ca-certificates build-essential clang ffmpeg \
    && rm -rf /var/lib/apt/lists/*

COPY --from=uv /uv /uvx /usr/local/bin/

RUN git clone --recurse-submodules "${OPENPI_REPO}" /opt/openpi \
    && git -C /opt/openpi checkout "${OPENPI_REF}" \
    && git -C /opt/openpi submodule update --init --recursive

WORKDIR /opt/openpi
RUN uv sync --frozen --no-cache \
    && uv pip install --no-cache -e . \
    && .venv/bin/python -c "import openpi.training.config"

# A non-root user (numeric, so it resolves without /etc/passwd on any host).
RUN useradd --create-home --uid 10001 --shell /bin/bash trainyard
COPY --chmod=0644 trainyard_runtime.pyz /opt/trainyard/trainyard_runtime.pyz
COPY --chmod=0755 train_wrapper.sh /opt/trainyard/train_wrapper.sh
ENV TRAINYARD_RUNTIME=/opt/trainyard/trainyard_runtime.pyz \
    TRAINYARD_SKIP_SETUP=1 \
    TRAINYARD_PYTHON=/opt/openpi/.venv/bin/python \
    UV_NO_SYNC=1 \
    UV_FROZEN=1 \
    UV_CACHE_DIR=/tmp/uv-cache \
    XLA_PYTHON_CLIENT_MEM_FRACTION=0.9

USER 10001
CMD ["bash"]
