# tokend container image: static binaries (tokend, tokenctl) on distroless,
# running as the unprivileged user 65532.
#
#   docker build -t tokend .
#   buildah bud -t tokend .        (or: podman build -t tokend .)
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

# Base images: fully qualified (daemonless builders such as buildah and
# podman refuse short names without a configured search registry) and
# pinned by digest, so that a rebuild uses the same bytes. The tag says
# what the digest is; to move to a newer image, look its digest up and
# replace both, e.g.
#   skopeo inspect --format '{{.Digest}}' docker://docker.io/library/golang:1.26.8-bookworm
#   skopeo inspect --format '{{.Digest}}' docker://gcr.io/distroless/static-debian12:nonroot
# (or `crane digest`, or `docker buildx imagetools inspect`). The Go image
# must be at least the go directive of go.mod (1.26.8).
FROM --platform=$BUILDPLATFORM docker.io/library/golang:1.26.8-bookworm@sha256:dc9ad6c05acc7a88e5b71bde60a5fe3bd4b9f0db209011711b464107438a8107 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags='-s -w' -o /out/ ./cmd/...
# The data directory (SQLite store, generated master key), owned by the
# runtime user: tokend cannot create it under / itself.
RUN install -d -m 0700 /rootfs/data

FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
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
