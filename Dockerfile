# One image for every role: the role is the command (master, worker, agent, collector, ...).
# /run/gridwatch holds the agent's socket: private to the gridwatch user, as the agent requires.
# The user's uid is fixed (10001) so the host can give it the compose secrets: `chown 10001`.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/gridwatch

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --create-home gridwatch \
    && mkdir -p /data /run/gridwatch && chown gridwatch /data /run/gridwatch \
    && chmod 700 /run/gridwatch
COPY --from=build /src/target/release/gridwatch /usr/local/bin/gridwatch
USER gridwatch
WORKDIR /home/gridwatch
ENTRYPOINT ["gridwatch"]
CMD ["--help"]
