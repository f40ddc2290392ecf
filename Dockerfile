# syntax=docker/dockerfile:1
# The processor's image: slim Python 3.11, the locked dependencies (constraints.txt) with the RocksDB
# (rocksdict) and Prometheus extras, the package with its Avro schemas and sample inside, a non-root
# user, `freshpaint-iterable worker` by default.
#   docker build -t freshpaint-iterable:local .
#   docker run --rm freshpaint-iterable:local                 # the worker
#   docker run --rm freshpaint-iterable:local emulator        # the Iterable emulator
#   docker run --rm -i freshpaint-iterable:local explain -    # explain, produce, check, replay,
#                                                             # dead-letters: one-shot commands
#   docker run --rm --network host -e FPI_KAFKA_BOOTSTRAP=127.0.0.1:9092 \
#     freshpaint-iterable:local dev                           # dev, pointed at a Kafka (the image
#                                                             # has no broker of its own)
# Behind a proxy that re-signs TLS, give the build its CA (PEM text) so pip can reach the index:
#   docker build --build-arg EXTRA_CA_CERTS="$(cat company-ca.pem)" -t freshpaint-iterable:local .
# CI builds this image with podman (dev/image/build) and runs it (tests/image; README, "The container
# image").

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# PEM certificates trusted by pip in this stage only, besides pip's own bundle; empty: none.
ARG EXTRA_CA_CERTS=""
WORKDIR /src
# With EXTRA_CA_CERTS, pip's bundle plus those in /etc/pip-ca.pem, named by PIP_CERT in each pip step.
RUN python -m venv /opt/venv \
 && if [ -n "$EXTRA_CA_CERTS" ]; then \
      { cat "$(/opt/venv/bin/python -c 'import pip._vendor.certifi as c; print(c.where())')" \
        && printf '%s\n' "$EXTRA_CA_CERTS"; } > /etc/pip-ca.pem; \
    fi
# The dependencies first, from pyproject.toml's lists at constraints.txt's versions, so a code change
# reinstalls only the package.
COPY constraints.txt pyproject.toml ./
RUN if [ -f /etc/pip-ca.pem ]; then export PIP_CERT=/etc/pip-ca.pem; fi \
 && /opt/venv/bin/python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = p['optional-dependencies']; \
print('\n'.join(p['dependencies'] + extras['rocksdb'] + extras['prometheus']))" > requirements.txt \
 && /opt/venv/bin/pip install --constraint constraints.txt --requirement requirements.txt
# The package: setup.py maps avro/ and the sample events into the wheel (streams/_avro, streams/_data).
COPY setup.py README.md ./
COPY streams ./streams
COPY avro ./avro
COPY tests/data/sample_events.jsonl ./tests/data/sample_events.jsonl
RUN if [ -f /etc/pip-ca.pem ]; then export PIP_CERT=/etc/pip-ca.pem; fi \
 && /opt/venv/bin/pip install --no-deps . \
 && /opt/venv/bin/pip check \
 && cd / \
 && /opt/venv/bin/python -c "import faust, rocksdict, prometheus_client, streams.cli, streams.codecs as c; \
[c.parsed_schema(n) for n in (c.SOURCE_V1, c.SOURCE_V2, c.REQUEST, c.DEAD_LETTER)]"

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
COPY dev/image/healthcheck.py /usr/local/lib/freshpaint-iterable/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FPI_DATA_DIR=/var/lib/freshpaint-iterable \
    FPI_STORE=rocksdb:// \
    FPI_WEB_PORT=6066
# Nothing is read from or written to the working directory; commands write only to the data
# directory and /tmp, so the root filesystem can be read-only.
WORKDIR /tmp
# The data directory is a volume in Kubernetes (StatefulSet) and Compose; /tmp must be writable too
# when the root filesystem is read-only.
VOLUME ["/var/lib/freshpaint-iterable"]
USER 10001:10001
EXPOSE 6066
# Fits the running command: the worker's /healthz, the emulator's port; one-shot commands (produce,
# explain, check, replay, dead-letters, dev) count as healthy while they run.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=4 \
  CMD ["python", "/usr/local/lib/freshpaint-iterable/healthcheck.py"]
ENTRYPOINT ["freshpaint-iterable"]
CMD ["worker"]
