#!/usr/bin/env bash
# Installs every host dependency of hyperd: Debian packages and the crates.io tools the shim runs.
# Idempotent and quick when everything is already there.
set -euo pipefail

APT_PACKAGES=(
  qemu-system-x86      # the VMM on hosts without Cloud Hypervisor, and under TCG in CI
  busybox-static       # test container rootfs
  libseccomp-dev       # static libseccomp for the guest agent, and virtiofsd
  libcap-ng-dev        # virtiofsd
  pkg-config cpio lz4 xz-utils curl
  docker-registry      # the registry server of the image tests (run on 127.0.0.1 by each test)
  skopeo               # the image tests' oracle: pushes what we pull, reads what we push and save
  apache2-utils        # htpasswd, for the registry tests with basic auth
  openssl              # the registry tests' CA and server certificates
  python3-venv iproute2  # schemathesis runs from a venv, in a loopback-only network namespace
  buildah              # the build benchmark's peer (bud --isolation chroot, local files only)
  nftables             # hyperd's NAT and port mappings (`nft -f -`, table ip hyperd)
  e2fsprogs            # the volume tests' ext4 disk images (mkfs.ext4, debugfs)
  qemu-utils           # qemu-img: the volume tests' qcow2 disk image
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Tools the shim starts next to the VMM. Pinned to the versions measured on these machines.
cargo_tool() {
  local crate=$1 version=$2
  if ! command -v "$crate" >/dev/null 2>&1 || ! "$crate" --version 2>/dev/null | grep -q "$version"; then
    echo "install-deps: cargo install $crate@$version"
    cargo install --locked --quiet "$crate@$version"
  fi
}
cargo_tool virtiofsd 1.14.0
cargo_tool vhost-device-vsock 0.3.0

command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked --quiet cargo-nextest
