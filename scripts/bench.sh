#!/usr/bin/env bash
# Runs a benchmark (default: boot) on release builds and prints its figures.
#   scripts/bench.sh [boot | pods | pull | exec | build ...]
# exec: median `hyperctl exec <pod> true` latency over 20 runs, and 100 MB through cat on a
# hijacked exec beside a local pipe.
# pull also needs skopeo and docker-registry, build needs buildah: checked before the (long) build.
set -euo pipefail
cd "$(dirname "$0")/.."
benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(boot)
for b in "${benches[@]}"; do
  case "$b" in
    pull)
      for tool in skopeo docker-registry; do
        command -v "$tool" >/dev/null ||
          { echo "bench pull needs $tool: apt-get install $tool" >&2; exit 1; }
      done
      ;;
    build)
      command -v buildah >/dev/null ||
        { echo "bench build needs buildah: apt-get install buildah" >&2; exit 1; }
      ;;
  esac
done
bash guest/build.sh
cargo build --release --quiet --workspace --bins
for b in "${benches[@]}"; do
  cargo bench --quiet -p hyper-tests --bench "$b"
done
