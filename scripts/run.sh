#!/usr/bin/env bash
# Installs what is missing, builds everything (release), and runs hyperd on its defaults in
# the foreground: socket unix:///var/run/hyper.sock, root /var/lib/hyper, run dir /run/hyper.
# Extra arguments go to hyperd (e.g. --host tcp://127.0.0.1:2375 --log hyperd=debug).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash guest/build.sh
cargo build --release --quiet --workspace --bins
# hyperd finds hyper-shim next to itself, and the shim finds the guest in target/guest.
exec target/release/hyperd "$@"
