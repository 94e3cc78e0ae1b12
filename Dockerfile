# Ferry: one image for both roles (`ferry im`, `ferry imr`).
#   docker build -t ferry .
#   docker run -p 23000:23000 -p 13891:13891 ferry          # single node
# See deploy/compose.yaml for redis + 2 imr + 2 im.

# Build stage: the release binary, dependencies cached in their own layer.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ferry \
    && strip target/release/ferry \
    && mkdir -p /out/data

# Runtime: distroless (glibc, no shell, no package manager), non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/ferry /usr/local/bin/ferry
COPY --from=build --chown=65532:65532 /out/data /var/lib/ferry
USER 65532:65532
WORKDIR /var/lib/ferry
ENV FERRY_DATA_DIR=/var/lib/ferry \
    FERRY_LOG_FORMAT=json
VOLUME ["/var/lib/ferry"]
# Clients (TCP), WebSocket + browser pages, HTTP API.
EXPOSE 23000 13891 6666
# Graceful stop: connections flush and close, the store is closed.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ferry"]
CMD ["im"]
