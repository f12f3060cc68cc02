# syntax=docker/dockerfile:1
#
# tokend container image: static binaries (tokend, tokenctl) on distroless,
# running as the unprivileged user 65532.
#
#   docker build -t tokend .
#   docker run --rm -p 127.0.0.1:8080:8080 -p 127.0.0.1:9090:9090 \
#     -v tokend-data:/data -v $PWD/policy.yaml:/etc/tokend/policy.yaml:ro \
#     tokend --http-addr=0.0.0.0:8080 --grpc-addr=0.0.0.0:9090 \
#     --policy-file=/etc/tokend/policy.yaml
#
# SECURITY: a container must listen on 0.0.0.0 to be reachable at all, and
# tokend refuses to listen beyond loopback without a caller policy
# (--policy-file): with one, every caller must authenticate (credentials,
# mutual TLS, OIDC or a trusted proxy) and is held to the policy. The admin
# API stays off unless TOKEND_ADMIN_TOKEN (or --admin-token-file) is set.
#
# Configuration: flags > TOKEND_* environment > config file (--config or
# TOKEND_CONFIG) > defaults. The default arguments are flags, so they win
# over TOKEND_HTTP_ADDR / TOKEND_GRPC_ADDR; any arguments you pass replace
# them all (e.g. `docker run tokend --config /etc/tokend/tokend.yaml`, with
# the addresses then set in the environment or the file).
# `docker run --rm tokend config` prints the effective configuration.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags='-s -w' -o /out/ ./cmd/...
# The data directory (SQLite store, generated master key), owned by the
# runtime user: tokend cannot create it under / itself.
RUN install -d -m 0700 /rootfs/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tokend /out/tokenctl /
COPY --from=build --chown=65532:65532 /rootfs/data /data
USER 65532:65532
# tokend's default data directory is ./data: with / as the working directory
# that is /data, while --data-dir, TOKEND_DATA_DIR or data_dir in a config
# file can still move it. Mount a volume there to keep the SQLite store and
# the generated master key (or set TOKEND_STORE=postgres://... and
# TOKEND_MASTER_KEY, as deploy/kubernetes does).
WORKDIR /
EXPOSE 8080 9090
# Listening beyond loopback needs a caller policy: mount one and add
# --policy-file=/path/policy.yaml (tokend refuses to start without it, so
# that no anonymous caller can mint on a reachable address).
ENTRYPOINT ["/tokend"]
CMD ["--http-addr=0.0.0.0:8080", "--grpc-addr=0.0.0.0:9090"]
