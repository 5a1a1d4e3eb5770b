#!/usr/bin/env bash
# The whole test suite, from a fresh clone: format and lint checks, then every unit and
# integration test against real loopback services (tansu = Kafka protocol, garage and s3s-fs =
# S3), which scripts/services.sh installs once into ~/.cache/modelcast and starts/stops around
# the run. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s ==\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "install test services (cached after the first run)"
scripts/services.sh install

step "cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

step "tests (with tansu + garage + s3s-fs on 127.0.0.1)"
if cargo nextest --version >/dev/null 2>&1; then
	scripts/services.sh run cargo nextest run --locked --no-fail-fast --test-threads 2
	cargo test --locked --doc
else
	scripts/services.sh run cargo test --locked --no-fail-fast
fi
