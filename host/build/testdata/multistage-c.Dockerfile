# syntax=docker/dockerfile:1.4
# A C program built in a Debian stage, copied into a small one.
ARG DEBIAN=bookworm
ARG BASE_IMAGE=busybox:1.36

FROM --platform=linux/amd64 debian:${DEBIAN}-slim AS build
ARG DEBIAN
ENV DEBIAN_FRONTEND=noninteractive \
    CFLAGS="-O2 -static"
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 # keep the image small
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY hello.c .
RUN gcc $CFLAGS -o /out/hello hello.c

FROM ${BASE_IMAGE} as final
LABEL org.opencontainers.image.title="hello" \
      org.opencontainers.image.source=https://example.invalid/hello
COPY --from=build --chown=1000:1000 --chmod=0755 /out/hello /usr/local/bin/hello
USER 1000
EXPOSE 8080/tcp 8081
HEALTHCHECK --interval=30s --timeout=3s CMD ["/usr/local/bin/hello", "--check"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/hello"]
CMD ["--serve"]
