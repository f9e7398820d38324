#!/bin/sh
# /init of the kernel-matrix guests. Sets up two network namespaces joined by a
# veth pair, an iptables DROP rule, then runs the cases of /plan.sh (written by
# the test) and reports on the second serial port (ttyS1) in lines starting
# with "@@", so that kernel messages on ttyS0 never interleave with results.
export PATH=/sbin:/bin
/bin/busybox --install -s /bin

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
ulimit -n 65536
ulimit -l unlimited

stty -F /dev/ttyS1 raw -echo 2>/dev/null
exec 3>/dev/ttyS1

say() { echo "@@ $*" >&3; }
now() { cut -d' ' -f1 /proc/uptime; }
bye() {
  say done
  sync
  poweroff -f
  reboot -f
}
fail() {
  say fatal "$*"
  bye
}

# Copies FILE to ttyS1 as base64 between markers.
send_file() { # LABEL FILE
  say file-begin "$1" "$(wc -c <"$2")"
  base64 "$2" >&3
  say file-end "$1"
}

say boot "$(now)" "$(uname -r)"

for m in $(cat /modules/modules.order); do
  insmod "/modules/$m" 2>/tmp/insmod.err || fail "insmod $m: $(cat /tmp/insmod.err)"
done

# Network: ns1 (10.200.1.1) --veth-- ns2 (10.200.1.2). iproute2's ip (copied from
# the host) because busybox's ignores the veth peer name; called by path, as
# Debian's busybox shell prefers its own applets to anything on PATH.
ip() { /sbin/ip "$@"; }
ip netns add ns1 || fail "ip netns add ns1"
ip netns add ns2 || fail "ip netns add ns2"
ip link add veth1 netns ns1 type veth peer name veth2 netns ns2 || fail "ip link add veth"
ip -n ns1 addr add 10.200.1.1/24 dev veth1
ip -n ns2 addr add 10.200.1.2/24 dev veth2
for ns in ns1 ns2; do
  ip -n $ns link set lo up
done
ip -n ns1 link set veth1 up
ip -n ns2 link set veth2 up
in_ns() { # NS CMD...
  ns=$1
  shift
  nsenter --net=/run/netns/"$ns" "$@"
}
# Port 9000 is delivered to a receiver, port 9001 is dropped by iptables, port
# 7777 is noise that the trace filters must keep out.
in_ns ns2 iptables-legacy -A INPUT -p udp --dport 9001 -j DROP 2>/tmp/ipt.err ||
  fail "iptables: $(cat /tmp/ipt.err)"
in_ns ns2 udpkit recv 9000 &
sleep 0.2
# Resolve neighbours now so that ARP does not delay the first traced packet.
in_ns ns1 udpkit send 10.200.1.2 7777 1
say info netns_inode_ns2 "$(stat -L -c %i /run/netns/ns2)"
say info available_filter_functions "$(grep -c . /sys/kernel/tracing/available_filter_functions 2>/dev/null)"
say ready "$(now)"

traffic() { # KIND
  case "$1" in
  none) ;;
  noise) in_ns ns1 udpkit send 10.200.1.2 7777 20 ;;
  full)
    in_ns ns1 udpkit send 10.200.1.2 7777 20
    in_ns ns1 udpkit send 10.200.1.2 9000 3
    in_ns ns1 udpkit send 10.200.1.2 9001 3
    ;;
  esac
}

# run_case NAME TRAFFIC READY_TIMEOUT HELPER-ARGS...
# Starts the helper, waits for its READY frame, makes TRAFFIC, stops it with
# SIGINT and reports timings, exit code, the record stream and stderr.
run_case() {
  name=$1 kind=$2 limit=$3
  shift 3
  say case-begin "$name" "$(now)"
  t0=$(now)
  pwru-helper "$@" </dev/null >/tmp/"$name".out 2>/tmp/"$name".err &
  pid=$!
  state=timeout
  i=0
  while [ $i -lt $((limit * 10)) ]; do
    if grep -q '"attach_ms"' /tmp/"$name".out 2>/dev/null; then
      state=ready
      break
    fi
    kill -0 $pid 2>/dev/null || {
      state=exited
      break
    }
    sleep 0.1
    i=$((i + 1))
  done
  t1=$(now)
  say case-ready "$name" "$state" "$t0" "$t1"
  if [ $state = ready ]; then
    traffic "$kind"
    sleep 1
  fi
  t2=$(now)
  kill -INT $pid 2>/dev/null
  i=0
  while kill -0 $pid 2>/dev/null && [ $i -lt 3000 ]; do
    sleep 0.1
    i=$((i + 1))
  done
  kill -0 $pid 2>/dev/null && kill -KILL $pid
  wait $pid
  code=$?
  say case-exit "$name" "$code" "$t2" "$(now)"
  send_file "$name.out" /tmp/"$name".out
  send_file "$name.err" /tmp/"$name".err
  rm -f /tmp/"$name".out /tmp/"$name".err
  say case-end "$name"
}

[ -f /plan.sh ] || fail "no /plan.sh"
. /plan.sh
say counters "$(in_ns ns2 iptables-legacy -L INPUT -v -n -x | tr '\n' '|')"
bye
