#!/usr/bin/env bash
# Builds the guest image: the Debian cloud kernel as a PVH vmlinux, and an initramfs with the
# static hyper-agent as /init plus the kernel modules it loads, and a static busybox in /bin
# for commands run in the VM itself.
#
# Output: $TARGET/guest/vmlinux and $TARGET/guest/initramfs.img. Each is rebuilt only when its
# inputs (kernel package, agent binary, module list) change.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
out=$target/guest
cache=$out/cache
mkdir -p "$out" "$cache"

# Modules the agent loads (it orders them by their depends= itself). MMIO for QEMU microvm,
# PCI for Cloud Hypervisor; vsock for the agent channel, virtiofs for rootfs, overlay for
# container layers, virtio_net for pod networking.
MODULES=(
  virtio_ring virtio virtio_mmio virtio_pci virtio_pci_modern_dev virtio_pci_legacy_dev
  vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport
  fuse virtiofs overlay failover net_failover virtio_net virtio_blk virtio_console
)

# IPVS for the pod's services, in lib/modules/ipvs: the agent loads them when a pod first has
# services, not at boot.
IPVS_MODULES=(libcrc32c nf_defrag_ipv4 nf_defrag_ipv6 nf_conntrack ip_vs ip_vs_rr)

log() { echo "guest/build.sh: $*" >&2; }

# --- kernel -----------------------------------------------------------------------------------
# The metapackage names the current ABI (linux-image-6.1.0-NN-cloud-amd64); never install it
# on the host, only download and unpack it.
kernel_package() {
  apt-cache depends linux-image-cloud-amd64 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n1
}
pkg=$(kernel_package)
if [ -z "$pkg" ]; then
  log "apt lists do not know linux-image-cloud-amd64; running apt-get update"
  apt-get update -qq
  pkg=$(kernel_package)
fi
[ -n "$pkg" ] || { log "cannot resolve the kernel package behind linux-image-cloud-amd64"; exit 1; }

kdir=$cache/$pkg
if [ ! -f "$kdir/.unpacked" ]; then
  log "downloading $pkg"
  rm -rf "$kdir" && mkdir -p "$kdir"
  (cd "$cache" && rm -f "$pkg"_*.deb && apt-get download -q -o APT::Sandbox::User=root "$pkg" >/dev/null)
  dpkg-deb -x "$cache/$pkg"_*.deb "$kdir"
  rm -f "$cache/$pkg"_*.deb
  touch "$kdir/.unpacked"
fi
vmlinuz=$(ls "$kdir"/boot/vmlinuz-*)
kver=${vmlinuz##*/vmlinuz-}

# The bzImage carries an LZ4 (legacy format) payload: the ELF vmlinux with the PVH note that
# both QEMU and Cloud Hypervisor boot directly.
if [ ! -f "$out/vmlinux" ] || [ "$(cat "$out/vmlinux.source" 2>/dev/null)" != "$pkg" ]; then
  offset=$(grep -obUaP '\x02\x21\x4c\x18' "$vmlinuz" | head -n1 | cut -d: -f1)
  [ -n "$offset" ] || { log "no LZ4 payload in $vmlinuz"; exit 1; }
  # lz4 complains about the bytes after the payload; the ELF check below is what counts.
  tail -c +$((offset + 1)) "$vmlinuz" | lz4 -dc > "$out/vmlinux.tmp" 2>/dev/null || true
  [ "$(head -c 4 "$out/vmlinux.tmp" | od -An -tx1 | tr -d ' ')" = "7f454c46" ] ||
    { log "extracted kernel is not an ELF file"; exit 1; }
  mv "$out/vmlinux.tmp" "$out/vmlinux"
  echo "$pkg" > "$out/vmlinux.source"
  log "vmlinux from $pkg"
fi

# --- agent ------------------------------------------------------------------------------------
# Static glibc (no musl target here); its own target dir slot, so host builds are untouched.
(cd "$root" && RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --quiet --release -p hyper-agent --target x86_64-unknown-linux-gnu)
agent=$target/x86_64-unknown-linux-gnu/release/hyper-agent

# A static busybox gives commands run in the VM itself (execvm) a shell and tools on the PATH.
busybox=$(command -v busybox || true)
# A dynamic busybox (an ELF program header of type PT_INTERP) could not run without the host's
# libc.
has_interp() {
  local phoff phentsize phnum i
  phoff=$(od -An -tu8 -j32 -N8 "$1" | tr -d ' ')
  phentsize=$(od -An -tu2 -j54 -N2 "$1" | tr -d ' ')
  phnum=$(od -An -tu2 -j56 -N2 "$1" | tr -d ' ')
  for ((i = 0; i < phnum; i++)); do
    [ "$(od -An -tu4 -j$((phoff + i * phentsize)) -N4 "$1" | tr -d ' ')" = 3 ] && return 0
  done
  return 1
}
[ -n "$busybox" ] && ! has_interp "$busybox" ||
  { log "a static busybox is needed on the PATH (Debian: busybox-static)"; exit 1; }

# --- initramfs --------------------------------------------------------------------------------
# add_modules ARRAY NAME...: appends each module's .ko path to ARRAY; a missing one stops the
# build.
add_modules() {
  local -n into=$1
  shift
  local m f
  for m in "$@"; do
    f=$(find "$kdir/lib/modules/$kver/kernel" -name "$m.ko" -print -quit)
    [ -n "$f" ] || { log "module $m not found in $pkg"; exit 1; }
    into+=("$f")
  done
}
mods=()
add_modules mods "${MODULES[@]}"
ipvs_mods=()
add_modules ipvs_mods "${IPVS_MODULES[@]}"

stamp=$( (echo "$pkg"; sha256sum "$agent" "$busybox" "$0"; printf '%s\n' "${MODULES[@]}" "${IPVS_MODULES[@]}") | sha256sum | cut -d' ' -f1)
if [ -f "$out/initramfs.img" ] && [ "$(cat "$out/initramfs.stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi

stage=$(mktemp -d "$out/initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{dev,proc,sys,run,tmp,lib/modules}
cp "$agent" "$stage/init"
mkdir -p "$stage/bin"
cp "$busybox" "$stage/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$stage/bin/$applet"
done
cp "${mods[@]}" "$stage/lib/modules/"
mkdir -p "$stage/lib/modules/ipvs"
cp "${ipvs_mods[@]}" "$stage/lib/modules/ipvs/"
# The kernel opens /dev/console for PID 1's stdio before the agent mounts devtmpfs.
mknod -m 600 "$stage/dev/console" c 5 1
# Uncompressed: under TCG, decompressing costs more boot time than reading the bytes.
(cd "$stage" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
  cpio --null -o -H newc --owner 0:0 --quiet) > "$out/initramfs.img.tmp"
mv "$out/initramfs.img.tmp" "$out/initramfs.img"
echo "$stamp" > "$out/initramfs.stamp"
log "initramfs.img: $(du -h "$out/initramfs.img" | cut -f1), ${#mods[@]} modules, kernel $kver"
