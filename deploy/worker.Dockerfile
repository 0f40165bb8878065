# The image CodeBuild shard builds run: promptgate at /usr/local/bin, nothing else the
# buildspec needs. Build it from the same commit as the bot, so the worker reads the
# bot's plan format (a mismatch fails the build with a message saying so):
#
#   docker build -f deploy/worker.Dockerfile -t promptgate:$(git rev-parse --short HEAD) .
#   docker tag ... <account>.dkr.ecr.<region>.amazonaws.com/promptgate:<tag> && docker push ...
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# No .git in the context: pass the commit for `promptgate --version`
# (docker build --build-arg PROMPTGATE_COMMIT=$(git rev-parse --short=12 HEAD) ...).
ARG PROMPTGATE_COMMIT=unknown
RUN cargo build --release --locked --bin promptgate

FROM debian:bookworm-slim
# CA roots for Bedrock, S3 and OpenAI-compatible endpoints; bash for the buildspec.
# No git: builds run with NO_SOURCE, the shard plan in S3 is all they read.
# Versions unpinned on purpose (bookworm security updates; see deploy/Dockerfile).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates bash \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 promptgate
COPY --from=build /src/target/release/promptgate /usr/local/bin/promptgate
ENV PROMPTGATE_LOG=info
ENTRYPOINT []
CMD ["promptgate", "--help"]
