#!/usr/bin/env bash
# Prepares the qemu kernel matrix (test/kernel-matrix): host tools, qemu 10 from
# bookworm-backports, and Debian's 5.10 / 6.1 / 6.12 kernels with the few modules
# the guest test needs, unpacked into a cache that survives fresh clones.
#
# Idempotent: what is already in the cache is not fetched again (set
# KERNEL_MATRIX_REFRESH=1 to re-resolve the kernels through linux-image-amd64).
# Nothing is installed into the host's /boot: packages are downloaded with
# `apt-get download` through private apt lists and unpacked with dpkg-deb.
#
# Usage: bash test/kernel-matrix/prepare.sh        (as root)
# Cache: $KERNEL_MATRIX_CACHE, default /var/cache/kubectl-pwru/kernel-matrix
set -euo pipefail

CACHE="${KERNEL_MATRIX_CACHE:-/var/cache/kubectl-pwru/kernel-matrix}"
MIRROR="${KERNEL_MATRIX_MIRROR:-http://deb.debian.org/debian}"
REFRESH="${KERNEL_MATRIX_REFRESH:-0}"
started=$(date +%s)

log() { printf 'kernel-matrix: %s\n' "$*" >&2; }
die() {
  printf 'kernel-matrix: error: %s\n' "$*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (apt-get, and the test boots guests that need no privileges but the fetch does)"
mkdir -p "$CACHE"

# --- host tools -------------------------------------------------------------
# busybox-static: the guest's userland. iptables, nftables: its rule tools (binaries and
# libraries are copied into the initramfs). iproute2: the guest's `ip` (busybox's
# ignores veth peer names). gcc + libc6-dev: the static UDP tool for the guest.
need=()
for pkg in busybox-static iptables nftables iproute2 gcc libc6-dev xz-utils zstd ca-certificates; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  log "installing host packages: ${need[*]}"
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    die "apt-get install ${need[*]} failed"
fi

# --- private apt views of other suites ----------------------------------------
# One sources list, lists dir and archive dir per suite, so the host's apt
# configuration never sees bullseye or backports.
apt_private() { # SUITE -> prints apt-get options
  local suite=$1 dir="$CACHE/apt/$1"
  printf '%s\n' -o "Dir::Etc::sourcelist=$dir/sources.list" -o "Dir::Etc::sourceparts=$dir/sources.list.d" \
    -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache" -o "Dir::Cache::archives=$dir/archives" \
    -o "APT::Get::List-Cleanup=0" -o "Acquire::Languages=none" -o "APT::Sandbox::User=root"
}
updated=" "
apt_update_private() { # SUITE (once per run)
  local suite=$1 dir="$CACHE/apt/$1"
  case "$updated" in *" $suite "*) return ;; esac
  updated="$updated$suite "
  mkdir -p "$dir/lists/partial" "$dir/cache" "$dir/archives/partial" "$dir/sources.list.d" "$dir/debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $suite main" >"$dir/sources.list"
  local opts
  mapfile -t opts < <(apt_private "$suite")
  log "apt-get update ($suite, private lists)"
  apt-get "${opts[@]}" update -qq || die "apt-get update of $suite failed (mirror $MIRROR)"
}
apt_private_get() { # SUITE apt-args...
  local suite=$1
  shift
  local opts
  mapfile -t opts < <(apt_private "$suite")
  apt-get "${opts[@]}" "$@"
}
apt_private_cache() { # SUITE apt-cache-args...
  local suite=$1
  shift
  local opts
  mapfile -t opts < <(apt_private "$suite")
  apt-cache "${opts[@]}" "$@"
}
download() { # SUITE PKG -> prints path of the .deb
  local suite=$1 pkg=$2 dir="$CACHE/apt/$1/debs"
  (cd "$dir" && apt_private_get "$suite" download -qq "$pkg" >&2) || die "apt-get download $pkg ($suite) failed"
  local deb
  deb=$(ls -t "$dir/${pkg%%/*}_"*.deb 2>/dev/null | head -1)
  [ -n "$deb" ] || die "apt-get download $pkg ($suite) left no .deb in $dir"
  echo "$deb"
}

# --- qemu 10 from bookworm-backports --------------------------------------------
QEMU="$CACHE/qemu"
if [ ! -x "$QEMU/usr/bin/qemu-system-x86_64" ] || [ "$REFRESH" = 1 ]; then
  apt_update_private bookworm-backports
  rm -rf "$QEMU.tmp" && mkdir -p "$QEMU.tmp"
  for pkg in qemu-system-x86 qemu-system-data seabios; do
    deb=$(download bookworm-backports "$pkg/bookworm-backports")
    log "unpacking $(basename "$deb")"
    dpkg-deb -x "$deb" "$QEMU.tmp"
  done
  rm -rf "$QEMU" && mv "$QEMU.tmp" "$QEMU"
  # Keep the qemu .deb until its libraries are checked below; the rest go.
  rm -f "$CACHE/apt/bookworm-backports/debs/"{qemu-system-data,seabios}_*.deb
fi
# qemu's shared libraries come from the host's suite (bookworm has every one the
# backport needs): install the library packages its control file names.
qemu_missing_libs() { { ldd "$QEMU/usr/bin/qemu-system-x86_64" || true; } | awk '/not found/ {print $1}'; }
if [ -n "$(qemu_missing_libs)" ]; then
  deb=$(ls "$CACHE/apt/bookworm-backports/debs/"qemu-system-x86_*.deb 2>/dev/null | head -1)
  if [ -z "$deb" ]; then
    apt_update_private bookworm-backports
    deb=$(download bookworm-backports qemu-system-x86/bookworm-backports)
  fi
  mapfile -t libs < <(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/^ *//; s/[ (].*//' | grep -E '^(lib|zlib)' |
    while read -r p; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"; done)
  log "installing qemu's libraries on the host: ${libs[*]}"
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${libs[@]}" >/dev/null ||
    die "apt-get install of qemu's libraries failed: ${libs[*]}"
  [ -z "$(qemu_missing_libs)" ] || die "qemu-system-x86_64 still misses libraries: $(qemu_missing_libs | tr '\n' ' ')"
fi
"$QEMU/usr/bin/qemu-system-x86_64" --version | head -1 >&2

# --- kernels ---------------------------------------------------------------------
# Modules the guest needs: veth for the netns link, legacy iptables and nftables for the DROP rules,
# sch_ingress (clsact) and cls_bpf for the tc programs that 6.1 nodes attach the classic way.
# crc32c_generic before nf_tables: its libcrc32c asks the crypto API for crc32c as it loads, a
# soft dependency (softdep=pre) that depends= does not list and busybox's insmod does not follow.
MODULES="veth x_tables ip_tables iptable_filter xt_tcpudp crc32c_generic nf_tables sch_ingress cls_bpf nf_dup_ipv4 nft_dup_ipv4"

# A cached kernel is complete when it has every module above (a list that grew is fetched again).
has_modules() { # DIR
  local m
  for m in $MODULES; do grep -qx "$m.ko" "$1/modules.order" 2>/dev/null || return 1; done
}

fetch_kernel() { # LABEL SUITE
  local label=$1 suite=$2 dest="$CACHE/kernels/$1"
  if [ -f "$dest/ok" ] && [ "$REFRESH" != 1 ] && has_modules "$dest"; then
    log "kernel $label: cached ($(cat "$dest/package"))"
    return
  fi
  apt_update_private "$suite"
  local pkg
  # The metapackage's one linux-image-* dependency is the current kernel package
  # (with a single suite in the private list there is one candidate).
  pkg=$(apt_private_cache "$suite" depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: //p' |
    grep -E '^linux-image-[0-9]' | sort -V | tail -n 1 || true)
  [ -n "$pkg" ] || die "could not resolve linux-image-amd64 in $suite"
  log "kernel $label: $suite linux-image-amd64 -> $pkg"
  local deb
  deb=$(download "$suite" "$pkg/$suite")
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp/x" "$dest.tmp/modules"
  # Packages ship no modules.dep (depmod writes it at install time), so read each
  # module's own depends= from its .modinfo. Everything we need lives under
  # kernel/net plus veth; a dependency elsewhere is fetched in another pass.
  log "kernel $label: extracting vmlinuz, config and kernel/net modules from $(basename "$deb")"
  dpkg-deb --fsys-tarfile "$deb" |
    tar -x -C "$dest.tmp/x" --wildcards './boot/vmlinuz-*' './boot/config-*' '*/kernel/net/*' '*/drivers/net/veth.ko*'
  : >"$dest.tmp/modules.order"
  local seen=" "
  add_module() { # NAME: adds NAME after its dependencies
    local name=$1 f base ko deps d
    case "$seen" in *" $name "*) return ;; esac
    seen="$seen$name "
    f=$(find "$dest.tmp/x" \( -name "$name.ko*" -o -name "${name//_/-}.ko*" \) | head -1)
    if [ -z "$f" ]; then
      dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dest.tmp/x" --wildcards "*/$name.ko*" "*/${name//_/-}.ko*" 2>/dev/null || true
      f=$(find "$dest.tmp/x" \( -name "$name.ko*" -o -name "${name//_/-}.ko*" \) | head -1)
    fi
    [ -n "$f" ] || die "kernel $label: module $name is not in $(basename "$deb") (built in?)"
    base=$(basename "$f")
    ko="$dest.tmp/modules/${base%%.ko*}.ko"
    # Decompress on the host: busybox insmod then needs no xz/zstd support.
    case "$base" in
      *.ko.xz) xz -dc "$f" >"$ko" ;;
      *.ko.zst) zstd -qdc "$f" >"$ko" ;;
      *.ko.gz) gzip -dc "$f" >"$ko" ;;
      *) cp "$f" "$ko" ;;
    esac
    deps=$(tr '\0' '\n' <"$ko" | sed -n 's/^depends=//p' | head -n 1 | tr ',' ' ')
    for d in $deps; do add_module "$d"; done
    basename "$ko" >>"$dest.tmp/modules.order"
  }
  for m in $MODULES; do add_module "$m"; done
  cp "$(find "$dest.tmp/x/boot" -name 'vmlinuz-*' | head -1)" "$dest.tmp/vmlinuz"
  cp "$(find "$dest.tmp/x/boot" -name 'config-*' | head -1)" "$dest.tmp/config"
  basename "$(find "$dest.tmp/x/boot" -name 'vmlinuz-*' | head -1)" | sed 's/^vmlinuz-//' >"$dest.tmp/release"
  echo "$(basename "$deb")" >"$dest.tmp/package"
  rm -rf "$dest.tmp/x" "$deb"
  touch "$dest.tmp/ok"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
  log "kernel $label: $(cat "$dest/release") ready"
}

fetch_kernel 5.10 bullseye
fetch_kernel 6.1 bookworm
fetch_kernel 6.12 bookworm-backports

log "ready in $(($(date +%s) - started)) s: $CACHE"
