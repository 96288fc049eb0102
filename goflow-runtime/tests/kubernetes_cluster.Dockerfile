# syntax=docker/dockerfile:1
#
# The image the cluster tests (tests/kubernetes_cluster.rs) run their
# workers in: the test binary itself, at /usr/local/bin/goflow-cluster-test.
# Built in a container so that it links against the image's libc.
#
#   docker build -f goflow-runtime/tests/kubernetes_cluster.Dockerfile -t goflow-cluster-test:dev .

ARG RUST_VERSION=1
FROM rust:${RUST_VERSION}-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq-dev jq \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo test --locked -p goflow-runtime --features kubernetes --test kubernetes_cluster \
        --no-run --message-format=json \
    | jq -r 'select(.executable != null and .target.name == "kubernetes_cluster") | .executable' \
    | xargs -I{} cp {} /goflow-cluster-test

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /goflow-cluster-test /usr/local/bin/goflow-cluster-test
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/goflow-cluster-test"]
