# Broker and operator images, built from one multi-stage file:
#   docker build --target broker   -t freshet/broker:dev .
#   docker build --target operator -t freshet/operator:dev .
# Runtime images are distroless (glibc + libstdc++ for RocksDB), non-root, no shell.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libclang-dev protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache the registry and target dir between builds (BuildKit), then copy the binaries out.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p freshet-broker -p freshet-operator --bins \
 && mkdir -p /out \
 && cp target/release/freshet-broker target/release/freshet target/release/freshet-operator /out/

FROM gcr.io/distroless/cc-debian12:nonroot AS broker
COPY --from=build /out/freshet-broker /out/freshet /usr/local/bin/
# 65532 is distroless' nonroot user; the operator's pod spec runs as it too.
USER 65532:65532
EXPOSE 50051 4567
VOLUME ["/var/lib/freshet"]
ENTRYPOINT ["/usr/local/bin/freshet-broker"]

FROM gcr.io/distroless/cc-debian12:nonroot AS operator
COPY --from=build /out/freshet-operator /usr/local/bin/
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/freshet-operator"]
CMD ["run"]
