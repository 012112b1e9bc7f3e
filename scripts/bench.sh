#!/usr/bin/env bash
# Runs a benchmark (default: boot) on release builds and prints its figures.
#   scripts/bench.sh [boot | pods | pull | exec | build | net ...]
# exec: median `hyperctl exec <pod> true` latency over 20 runs, and 100 MB through cat on a
# hijacked exec beside a local pipe.
# net: in a network namespace of its own, 100 MB host -> pod through a port mapping beside
# host -> host loopback (MB/s, ratio), and the median `run --rm busybox true` with --net bridge
# vs --net none (BENCH_RUNS, default 5). Needs nft (hyperd's NAT).
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
    net)
      command -v nft >/dev/null ||
        { echo "bench net needs nft: apt-get install nftables" >&2; exit 1; }
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
