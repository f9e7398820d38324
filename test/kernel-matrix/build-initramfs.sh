#!/usr/bin/env bash
# Builds a kernel-matrix guest's initramfs (an uncompressed newc cpio):
# busybox-static, iproute2's ip, legacy iptables, iptables-nft and nft with their libraries (copied
# from the host), the pwru helper, udpkit, one kernel's modules, /init and the
# test's plan.
#
# Usage: build-initramfs.sh KERNEL_DIR HELPER PLAN OUT [PWRU]
#   KERNEL_DIR  a kernel from prepare.sh (has modules/ and modules.order)
#   HELPER      the static pwru-helper binary
#   PLAN        a shell fragment of run_case lines (see guest/init.sh)
#   OUT         the cpio file to write
#   PWRU        optionally, a static cilium/pwru to run side by side (bench/functions.ts)
set -euo pipefail
[ $# = 4 ] || [ $# = 5 ] || {
  echo "usage: $0 KERNEL_DIR HELPER PLAN OUT [PWRU]" >&2
  exit 2
}
kernel=$1 helper=$2 plan=$3 out=$4 pwru=${5:-}
here=$(cd "$(dirname "$0")" && pwd)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,run,etc,modules}
# busybox-static ships /bin/busybox; /init makes its applet links.
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
file_is_static() { ! ldd "$1" >/dev/null 2>&1; }
file_is_static "$root/bin/busybox" || {
  echo "build-initramfs: /bin/busybox is not static (install busybox-static)" >&2
  exit 1
}

# Copies an ELF file and the shared libraries it needs, at the same paths.
copy_elf() { # SRC DEST
  install -D -m 0755 "$1" "$root$2"
  { ldd "$1" 2>/dev/null || true; } | { grep -oE '/[^ ]+' || true; } | while read -r lib; do
    [ -e "$root$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
}
copy_elf /usr/sbin/ip /sbin/ip
copy_elf /usr/sbin/xtables-legacy-multi /sbin/xtables-legacy-multi
ln -s xtables-legacy-multi "$root/sbin/iptables-legacy"
# The helper reads the rules' counters with it (helper/culprit_tools.c) to name a drop's rule.
ln -s xtables-legacy-multi "$root/sbin/iptables-legacy-save"
# iptables-nft, ip6tables-nft, arptables-nft: nft-rules.test.ts's rules; the helper reads the first two with their -save.
copy_elf /usr/sbin/xtables-nft-multi /sbin/xtables-nft-multi
for t in iptables-nft iptables-nft-save ip6tables-nft ip6tables-nft-save arptables-nft; do
  ln -s xtables-nft-multi "$root/sbin/$t"
done
xtlib=/usr/lib/x86_64-linux-gnu/xtables
for ext in libxt_standard.so libxt_udp.so libxt_tcp.so libipt_icmp.so; do
  copy_elf "$xtlib/$ext" "$xtlib/$ext"
done
# nft: the guest's native nftables rule (its libraries by ldd), and the helper reads its counters with it.
copy_elf /usr/sbin/nft /sbin/nft
[ -f /etc/protocols ] && cp /etc/protocols "$root/etc/protocols"

copy_elf "$helper" /bin/pwru-helper
[ -z "$pwru" ] || copy_elf "$pwru" /bin/pwru
udpkit=$(mktemp)
gcc -static -Os -Wall -o "$udpkit" "$here/guest/udpkit.c"
install -m 0755 "$udpkit" "$root/bin/udpkit"
rm -f "$udpkit"
# progload: attaches a BPF program (tcx, generic XDP) with the libbpf the helper links (programs.test.ts).
progload=$(mktemp)
gcc -static -Os -Wall -o "$progload" "$here/guest/progload.c" -lbpf -lelf -lz
install -m 0755 "$progload" "$root/bin/progload"
rm -f "$progload"
# INITRAMFS_EXTRA: a folder of the test's own files (compiled programs), as /extra.
[ -z "${INITRAMFS_EXTRA:-}" ] || cp -r "$INITRAMFS_EXTRA" "$root/extra"

cp "$kernel"/modules/*.ko "$root/modules/"
cp "$kernel/modules.order" "$root/modules/modules.order"
install -m 0755 "$here/guest/init.sh" "$root/init"
cp "$plan" "$root/plan.sh"

(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | busybox cpio -o -H newc -R 0:0 2>/dev/null) >"$out"
