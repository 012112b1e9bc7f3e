#!/usr/bin/env bash
# Runs a benchmark (default: all) on release builds and prints its figures.
#   scripts/bench.sh [boot ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash guest/build.sh
cargo build --release --quiet --workspace --bins
benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(boot)
for b in "${benches[@]}"; do
  cargo bench --quiet -p hyper-tests --bench "$b"
done
