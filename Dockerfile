# mlp-lab in one image: the web app on 8501 and its MLflow server on 5000, state on the /data volume.
#   docker build -t mlp-lab .                      (torch from PyPI: its CUDA build)
#   docker build -t mlp-lab --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .
#   docker run -p 8501:8501 -p 5000:5000 -v mlp:/data mlp-lab
# Guide: docs/guide/container.md. Python comes from Debian (3.11 on bookworm), so any
# Debian-based image may stand in as BASE.
ARG BASE=debian:bookworm-slim
FROM ${BASE}

# tini is PID 1: it passes docker stop's SIGTERM to mlp-lab, which stops both servers and waits.
# dataset-fashion-mnist: Debian's copy of the four official FashionMNIST files (30 MB), found by
# mlp-lab without a download, so the default configs train offline.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv tini dataset-fashion-mnist \
    && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/mlp-lab \
    PATH=/opt/mlp-lab/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=true
RUN python3 -m venv $VIRTUAL_ENV

# torch first, in a layer of its own: the largest and the slowest, it is rebuilt only when this
# index changes. PyPI's torch is its CUDA build (about 7 GB with its nvidia libraries); the CPU
# index (https://download.pytorch.org/whl/cpu) gives a wheel several GB smaller.
ARG TORCH_INDEX_URL=https://pypi.org/simple
RUN pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" torch torchvision

# The other dependencies, read from pyproject.toml alone (with the track and app extras), so that
# a change to the code does not reinstall them.
COPY pyproject.toml /tmp/mlp-lab/pyproject.toml
RUN python -c "import tomllib; p = tomllib.load(open('/tmp/mlp-lab/pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['track'] + p['optional-dependencies']['app']))" \
        > /tmp/mlp-lab/requirements.txt \
    && pip install --no-cache-dir -r /tmp/mlp-lab/requirements.txt

# The code last.
COPY . /tmp/mlp-lab/
RUN pip install --no-cache-dir --no-deps /tmp/mlp-lab && rm -rf /tmp/mlp-lab

# A user without root; the volume's mount point is its own, so a new named volume is too.
RUN useradd --uid 1000 --create-home --shell /bin/bash mlp && mkdir /data && chown mlp:mlp /data
USER mlp
WORKDIR /data
VOLUME /data

# MLflow's job runner (eight processes for its GenAI jobs, which mlp-lab does not use): off, so
# the server starts and stops in less time and memory. -e MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true
# turns it back on.
ENV MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
EXPOSE 8501 5000
# Both servers answer on their health endpoints (python: the slim image has no curl).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request as r; [r.urlopen(f'http://127.0.0.1:{p}', timeout=4) for p in ('8501/_stcore/health', '5000/health')]"]

ENTRYPOINT ["tini", "--"]
# The app over /data/runs and the MLflow server on the same store (/data/runs/mlflow.db, its
# artifacts and registry beside it), both on every interface of the container.
CMD ["mlp-lab", "app", "--host", "0.0.0.0", "--runs", "/data/runs", "--mlflow"]
