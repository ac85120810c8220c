#!/bin/sh
# Build the fuzz targets with the flags cargo-fuzz uses (sanitizer
# coverage + AddressSanitizer), without needing cargo-fuzz itself.
# Prefers a nightly toolchain; falls back to stable with RUSTC_BOOTSTRAP=1.
# Usage: fuzz/build.sh [TARGET_DIR]; binaries land in
# TARGET_DIR/x86_64-unknown-linux-gnu/release/.
set -e
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${1:-$PWD/../target/fuzz}"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Zsanitizer=address \
-Cdebug-assertions -Coverflow-checks -Cforce-frame-pointers"
if rustup run nightly rustc --version >/dev/null 2>&1; then
    TC=+nightly
else
    TC=
    export RUSTC_BOOTSTRAP=1
fi
exec cargo $TC build --release --target x86_64-unknown-linux-gnu --bins
