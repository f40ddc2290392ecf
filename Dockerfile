# syntax=docker/dockerfile:1
# The worker image: slim Python 3.11, the locked dependencies (constraints.txt) with the RocksDB
# (rocksdict) and Prometheus extras, a non-root user, `freshpaint-iterable worker` by default.
#   docker build -t freshpaint-iterable:local .
#   docker run --rm freshpaint-iterable:local            # the worker
#   docker run --rm freshpaint-iterable:local emulator   # any other command of the CLI

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
# Dependencies first, so a code change does not reinstall them.
COPY constraints.txt pyproject.toml README.md ./
COPY streams ./streams
COPY avro ./avro
RUN /opt/venv/bin/pip install --constraint constraints.txt ".[rocksdb,prometheus]" \
 && /opt/venv/bin/python -c "import faust, rocksdict, prometheus_client, streams.cli"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="freshpaint-iterable" \
      org.opencontainers.image.description="Keeps Iterable in step with Freshpaint events on Kafka" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 fpi \
 && useradd --system --uid 10001 --gid fpi --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin fpi \
 && mkdir -p /var/lib/freshpaint-iterable /etc/freshpaint-iterable \
 && chown 10001:10001 /var/lib/freshpaint-iterable
COPY --from=build /opt/venv /opt/venv
COPY avro /app/avro
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FPI_DATA_DIR=/var/lib/freshpaint-iterable \
    FPI_STORE=rocksdb:// \
    FPI_WEB_PORT=6066
WORKDIR /app
# The data directory is a volume in Kubernetes (StatefulSet) and Compose; /tmp must be writable too
# when the root filesystem is read-only.
VOLUME ["/var/lib/freshpaint-iterable"]
USER 10001:10001
EXPOSE 6066
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=4 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('FPI_WEB_PORT', '6066'), timeout=4)"]
ENTRYPOINT ["freshpaint-iterable"]
CMD ["worker"]
