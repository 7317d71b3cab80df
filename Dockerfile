# syntax=docker/dockerfile:1
#
# AccessBot container image.
#
#   docker build -t accessbot:0.1.0 .
#   docker run --rm -e SLACK_BOT_TOKEN=... -e SLACK_SIGNING_SECRET=... \
#     -e REDIS_URL=redis://redis:6379/0 -v "$PWD/policy.yaml:/etc/accessbot/policy.yaml:ro" \
#     -p 8080:8080 accessbot:0.1.0
#
# The image runs `accessbot serve` by default; any other subcommand works too
# (`docker run ... accessbot:0.1.0 check`). It ships no redis-server: set REDIS_URL
# (the Helm chart always does). Both stages use the same pinned base, so the
# virtualenv built in the first is valid in the second.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- build: install the package and its dependencies into a virtualenv ---------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv

WORKDIR /src
# Only what `pip install .` reads: the build configuration and the two packages.
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY k8s ./k8s

# Every dependency ships wheels for linux/amd64 and arm64, so no compiler is needed
# here either. pip and setuptools leave the virtualenv afterwards: nothing at runtime
# installs packages.
RUN /opt/venv/bin/pip install . \
    && /opt/venv/bin/pip uninstall --yes pip setuptools \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# --- runtime: the virtualenv and an unprivileged user, nothing else -------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="accessbot" \
      org.opencontainers.image.description="Time-bound, approved, audited Kubernetes access through Slack" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric UID/GID so Kubernetes can check runAsNonRoot without a user database.
RUN groupadd --system --gid 10001 accessbot \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/accessbot \
       --create-home --shell /usr/sbin/nologin accessbot

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ACCESSBOT_POLICY=/etc/accessbot/policy.yaml \
    ACCESSBOT_HTTP_PORT=8080

WORKDIR /home/accessbot
USER 10001:10001
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

ENTRYPOINT ["accessbot"]
CMD ["serve"]
