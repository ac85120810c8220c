# klipper_mcu, the Linux host MCU, as a slim container image.
#
# Two stages:
#   build    compiles a static klipper_mcu for the target platform and
#            leaves it at /out/klipper_mcu. It runs on the build machine's
#            own platform and cross-compiles (no emulation), with Debian's
#            cross compilers as linkers and glibc linked in statically.
#   hostmcu  FROM scratch: the binary and nothing else (measured, stripped:
#            1.46 MB on amd64, 1.32 MB on arm64, 1.11 MB on arm/v7).
#
# Multi-architecture (Raspberry Pi OS 32- and 64-bit, and PCs):
#   docker buildx build --platform linux/arm/v7,linux/arm64,linux/amd64 \
#       --target hostmcu -t klipper-hostmcu .
#
# From a static binary built on the host, without any registry:
#   RUSTFLAGS='-C target-feature=+crt-static' \
#       cargo build --release --target x86_64-unknown-linux-gnu
#   mkdir -p DIR/out && cp target/x86_64-unknown-linux-gnu/release/klipper_mcu DIR/out/
#   podman build --format docker --no-cache --build-context build=DIR --target hostmcu .
# (--no-cache with podman 4.3, whose layer cache ignores --platform. The
# same works for --platform linux/arm64 and linux/arm/v7 from the static
# cross builds: tests/arch.rs builds both that way, checks their platform
# and binary, and runs each under qemu-user.)
# (--format docker keeps the HEALTHCHECK: the OCI image format has no field
# for it. docker buildx keeps it as it is.)
#
# The image runs as uid 1000, gid 1000 (the klipper user of the usual
# klippy images), configurable with --build-arg UID=... GID=...; give it
# the groups that own the device nodes at run time (--group-add). See
# deploy/README.md.

ARG RUST_IMAGE=rust:1-slim-bookworm

FROM --platform=$BUILDPLATFORM ${RUST_IMAGE} AS build
ARG TARGETPLATFORM
ARG BUILDPLATFORM
# Pick the Rust target, the GNU triple of its linker and the Debian
# architecture of its C library. The binary is linked statically against
# glibc (+crt-static), as the host build is, so it needs nothing at run time
# (static-pie on amd64, plain static on arm64 and armv7). A native build
# keeps rustc's own linker (rust-lld on amd64): build.rs then gives it the
# symbol order and packed relocations that keep an idle MCU's memory down.
RUN set -eu; \
    case "${TARGETPLATFORM:-linux/amd64}" in \
      linux/amd64)  rt=x86_64-unknown-linux-gnu;      gt=x86_64-linux-gnu;    da=amd64 ;; \
      linux/arm64*) rt=aarch64-unknown-linux-gnu;     gt=aarch64-linux-gnu;   da=arm64 ;; \
      linux/arm/v7) rt=armv7-unknown-linux-gnueabihf; gt=arm-linux-gnueabihf; da=armhf ;; \
      *) echo "unsupported platform ${TARGETPLATFORM}: use linux/amd64, linux/arm64 or linux/arm/v7" >&2; exit 1 ;; \
    esac; \
    if [ "$da" = "$(dpkg --print-architecture)" ]; then \
      pkgs="gcc libc6-dev"; cc=gcc; \
    else \
      pkgs="gcc-$(echo "$gt" | tr _ -) libc6-dev-$da-cross"; cc="$gt-gcc"; \
    fi; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkgs; \
    rm -rf /var/lib/apt/lists/*; \
    rustup target add "$rt"; \
    { echo "[build]"; echo "target = \"$rt\""; \
      echo "[target.$rt]"; \
      [ "$da" = "$(dpkg --print-architecture)" ] || echo "linker = \"$cc\""; \
      echo "rustflags = [\"-C\", \"target-feature=+crt-static\"]"; } >> "$CARGO_HOME/config.toml"; \
    { echo "RUST_TARGET=$rt"; \
      echo "export CC_$(echo "$rt" | tr - _)=$cc"; } > /build-env
WORKDIR /src
# The whole workspace, less what .dockerignore leaves out (target/, .git/,
# deploy/...): Cargo checks every target the manifests name.
COPY . .
# The check at the end: a stray dynamic link would fail in scratch with a
# bare "not found".
RUN set -eu; \
    . /build-env; \
    cargo build --release --locked --bin klipper_mcu; \
    mkdir -p /out; \
    cp "target/$RUST_TARGET/release/klipper_mcu" /out/klipper_mcu; \
    if readelf -l /out/klipper_mcu | grep -q 'Requesting program interpreter'; then \
      echo "klipper_mcu is not static" >&2; exit 1; \
    fi

FROM scratch AS hostmcu
ARG UID=1000
ARG GID=1000
COPY --from=build /out/klipper_mcu /usr/local/bin/klipper_mcu
USER ${UID}:${GID}
# Created owned by the user above, so that a new named volume mounted here
# starts writable for it. A bind-mounted host folder keeps its own owner:
# make it writable for ${UID}.
WORKDIR /opt/printer_data/run
VOLUME /opt/printer_data/run
ENTRYPOINT ["/usr/local/bin/klipper_mcu"]
CMD ["-I", "/opt/printer_data/run/klipper_host_mcu.tty"]
# Never opens the pty (klippy owns that conversation): healthy while the
# link resolves to a live pseudo-terminal held by a running klipper_mcu.
# With another -I path, override it (--health-cmd / healthcheck:).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/klipper_mcu", "--check", "/opt/printer_data/run/klipper_host_mcu.tty"]
STOPSIGNAL SIGTERM
LABEL org.opencontainers.image.title="klipper_mcu" \
      org.opencontainers.image.description="Klipper Linux host MCU (klipper_mcu) in Rust" \
      org.opencontainers.image.licenses="GPL-3.0-or-later"
