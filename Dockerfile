# Optimus inside NVIDIA Triton Inference Server (NGC image: tritonserver + Python backend + CUDA).
#   docker build -t optimus-triton .
#   docker run --gpus all --rm -p 8000:8000 -p 8001:8001 -p 8002:8002 optimus-triton
#   docker run --gpus all --rm -p 8000-8002:8000-8002 optimus-triton optimus serve --mode bd
ARG TRITON_TAG=25.01-py3
FROM nvcr.io/nvidia/tritonserver:${TRITON_TAG}

# The image's Python is the one its Python-backend stub embeds: install into it (Ubuntu marks it
# externally managed). torch's default Linux wheel bundles its CUDA runtime; numpy stays < 2 (DESIGN §7).
ENV PIP_BREAK_SYSTEM_PACKAGES=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /opt/optimus
COPY . .
RUN python3 -m pip install -e . && python3 -c "import optimus_backend.serve, torch; print(torch.__version__)"

# `optimus serve` runs the image's own tritonserver and backends (not the wheel's) on all interfaces.
ENV OPTIMUS_TRITONSERVER=/opt/tritonserver/bin/tritonserver OPTIMUS_HOST=0.0.0.0
EXPOSE 8000 8001 8002
CMD ["optimus", "serve"]
