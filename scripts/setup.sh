#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root) to build, run and test kubectl-pwru:
# the C toolchain and static libraries for the helper (amd64, and arm64 through
# Debian's multiarch packages), the tools the tests drive, the qemu kernel
# matrix's cache, Node dependencies, and the build itself. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" != 0 ]; then
  echo "setup.sh installs Debian packages: run it as root (sudo $0)" >&2
  exit 1
fi

dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  make gcc libc6-dev clang llvm bpftool \
  libbpf-dev libelf-dev zlib1g-dev libpcap-dev libdbus-1-dev \
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
  libbpf-dev:arm64 libelf-dev:arm64 zlib1g-dev:arm64 libpcap-dev:arm64 libdbus-1-dev:arm64 \
  iproute2 iptables nftables iputils-ping util-linux procps kmod tshark \
  > /dev/null

# The real-cluster e2e stage (test/e2e/cluster) signs a test user's certificate with the cluster's CA.
apt-get install -y -qq --no-install-recommends openssl > /dev/null

# The qemu kernel matrix: qemu 10, Debian kernels 5.10/6.1/6.12, busybox (cached between runs).
bash test/kernel-matrix/prepare.sh

npm ci --no-audit --no-fund
npm run build
