# syntax=docker/dockerfile:1
#
# Build:  docker build -t triplicate .
#
# Run: the config is read-only and its journal path must be absolute, under the
# /var/lib/triplicate volume (journal = "/var/lib/triplicate/journal.db"), because
# relative paths resolve against the config's folder. Mount each watch folder and
# each local destination at the path the config names; the user below (UID/GID
# 10001) must be able to read the watch folders and write the destinations and the
# journal volume. Allow a graceful stop: docker stops with SIGKILL after 10 s unless
# told otherwise, so give transfers time to finish or park (as systemd's 120 s).
#
#   docker run -d --name triplicate --restart unless-stopped --stop-timeout 120 \
#     -v /srv/triplicate/triplicate.toml:/etc/triplicate/triplicate.toml:ro \
#     -v triplicate-state:/var/lib/triplicate \
#     -v /srv/offload:/watch/offload \
#     -v /mnt/nearline:/dest/nearline \
#     --env-file /srv/triplicate/env \
#     triplicate
#
# Cloud credentials come from the environment (--env-file: AWS_* variables, the
# variable that the config names for an Azure connection string); SSH keys for sftp
# destinations are mounted read-only, e.g. -v /srv/triplicate/ssh:/etc/triplicate/ssh:ro.
# Health: the HEALTHCHECK below needs an [http] section in the config (port 9321 by
# default); to let Prometheus scrape /metrics from outside, set host = "0.0.0.0",
# publish the port (-p 127.0.0.1:9321:9321) and set token_env. Reload the config:
# docker kill -s HUP triplicate. Status: docker exec triplicate triplicate \
#   --config /etc/triplicate/triplicate.toml status
# Compose: stop_grace_period: 120s. Other commands:
#   docker run --rm -v ...:/etc/triplicate/triplicate.toml:ro triplicate \
#     triplicate check-config /etc/triplicate/triplicate.toml

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# README.m[d]: a wildcard may match nothing, so the build works with or without it.
COPY pyproject.toml README.m[d] ./
COPY daemon ./daemon
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
ARG TRIPLICATE_UID=10001
ARG TRIPLICATE_GID=10001
LABEL org.opencontainers.image.title="triplicate" \
      org.opencontainers.image.description="Watch-folder daemon for verified 3-2-1 backups of camera offloads" \
      org.opencontainers.image.licenses="MIT"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --gid "${TRIPLICATE_GID}" triplicate \
 && useradd --uid "${TRIPLICATE_UID}" --gid triplicate \
      --home-dir /var/lib/triplicate --no-create-home --shell /usr/sbin/nologin triplicate \
 && install -d -m 0750 -o root -g triplicate /etc/triplicate \
 && install -d -m 0750 -o triplicate -g triplicate /var/lib/triplicate
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels triplicate
USER ${TRIPLICATE_UID}:${TRIPLICATE_GID}
WORKDIR /var/lib/triplicate
VOLUME ["/var/lib/triplicate"]
STOPSIGNAL SIGTERM
# Asks /healthz on the [http] endpoint the config must enable (127.0.0.1 suffices:
# the check runs inside the container). Start period: the first scan of big watch
# folders takes a while before the endpoint opens.
HEALTHCHECK --interval=30s --timeout=10s --start-period=5m --retries=3 \
  CMD ["triplicate", "--config", "/etc/triplicate/triplicate.toml", "healthcheck"]
CMD ["triplicate", "--config", "/etc/triplicate/triplicate.toml", "run"]
