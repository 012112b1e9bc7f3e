#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what is missing, builds the guest
# image, checks formatting and lints, then runs every test (unit and end to end, real VMs).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash guest/build.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The end-to-end tests run the binaries (hyperd, hyperctl, hyper-shim) from target/debug;
# cargo test builds bins only for packages with integration tests, so build them first.
cargo build --workspace --bins --quiet
cargo nextest run --workspace
# The REST API against its OpenAPI document: schemathesis on a live hyperd (no VM, loopback
# only), with the binaries built above. SCHEMATHESIS_LONG=1 for the long run.
SCHEMATHESIS_TARGET_DIR="${CARGO_TARGET_DIR:-target}" bash scripts/schemathesis.sh
