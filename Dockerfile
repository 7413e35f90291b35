# syntax=docker/dockerfile:1
#
# Spindle as a container image: the `spindle` host binary, spin.toml and the
# compiled components it names, served by `spindle up` on 0.0.0.0:8080.
#
#   docker build -t spindle:0.1.0 .
#   docker run --rm -p 8080:8080 spindle:0.1.0
#   docker run --rm -p 8080:8080 -e SPINDLE_API_KEYS=secret \
#       -e SPIN_VARIABLE_LLM_URL=http://llm:8000/v1 -e SPIN_VARIABLE_LLM_ORIGIN=http://llm:8000 \
#       spindle:0.1.0 --drain-timeout-secs 30
#
# Arguments after the image name are appended to `spindle up` (see
# `spindle up --help` and docs/host.md). Kubernetes manifests: deploy/.
#
# The builder needs the network of an ordinary build: crates.io, the npm
# registry (Swagger UI for the gateway, componentize-qjs for prompt-js) and
# PyPI (componentize-py for reranker-python).

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---- builder: the host binary and every component of spin.toml
FROM ${RUST_IMAGE} AS builder
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
# node/npm: `npm ci --prefix web` in the gateway's build command and the
# JavaScript step's build.sh; python3-venv: the Python step's build.sh.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The toolchain rust-toolchain.toml pins, with its wasm32-wasip2 target; a
# layer of its own, so it is fetched again only when the pin changes.
COPY rust-toolchain.toml ./
RUN rustup toolchain install && rustc --version && rustup target list --installed
COPY . .
# As the README's "Deploying" section: build the host, then run every
# component's build command with it. target/ and the registries are cache
# mounts (fast rebuilds), so the results are copied out to /out here:
# the binary, spin.toml, and each `source` spin.toml names, at the same
# path relative to the manifest.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p spindle \
 && target/release/spindle build \
 && mkdir -p /out/app \
 && install -m 0755 target/release/spindle /out/spindle \
 && install -m 0644 spin.toml /out/app/spin.toml \
 && sources=$(sed -n 's/^[[:space:]]*source[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' spin.toml) \
 && test -n "$sources" \
 && for f in $sources; do install -D -m 0644 "$f" "/out/app/$f"; done \
 && /out/spindle check -f /out/app/spin.toml --cache-dir none --log-dir none

# ---- runtime: the binary, the manifest and the components, nothing else
FROM ${RUNTIME_IMAGE}
# No packages are added: the binary needs only glibc, and its TLS clients
# (outbound HTTPS of components, `spindle index`) carry their own root
# certificates (webpki-roots).
RUN groupadd --system --gid 10001 spindle \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin spindle
COPY --from=builder /out/spindle /usr/local/bin/spindle
COPY --from=builder /out/app /app
# `spindle up` writes its compile cache and its logs under .spindle/ beside
# the manifest (--cache-dir, --log-dir): the only writable path. Kubernetes
# mounts an emptyDir here so that the root filesystem can be read-only.
RUN mkdir -p /app/.spindle && chown 10001:10001 /app/.spindle
WORKDIR /app
USER 10001:10001
EXPOSE 8080
# SIGTERM: no new connections, /readyz turns 503, open streams get
# --drain-timeout-secs (30) to finish. Give `docker stop` longer than that:
# `docker stop -t 40`.
STOPSIGNAL SIGTERM
# The host's own liveness route; no curl in the image, so bash's /dev/tcp.
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/spindle", "up", "-f", "/app/spin.toml", "--listen", "0.0.0.0:8080"]
