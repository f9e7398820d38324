#!/bin/sh
# The benchmark's own setup (npm run bench runs it): the tools it compares
# kubectl-pwru with, from Debian, and tracefs, which bpftrace needs to read
# tracepoint formats. Idempotent; installs only what is missing.
set -eu

need=""
for pair in iperf3:iperf3 bpftrace:bpftrace tcpdump:tcpdump time:/usr/bin/time; do
  pkg=${pair%%:*}
  cmd=${pair#*:}
  if ! command -v "$cmd" >/dev/null 2>&1; then need="$need $pkg"; fi
done
if [ -n "$need" ]; then
  echo "bench/setup.sh: installing$need" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # iperf3 asks whether to start a daemon; the benchmark starts its own servers.
  echo "iperf3 iperf3/start_daemon boolean false" | debconf-set-selections
  apt-get install -y -qq --no-install-recommends $need >&2
fi

if [ ! -e /sys/kernel/tracing/events ]; then
  mount -t tracefs nodev /sys/kernel/tracing
fi
