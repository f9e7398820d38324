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
# Port 9002 is dropped by native nftables, beside (a counter shows it moving). Not on 5.10, whose
# counter is a module of its own the guest does not carry: said, not fatal (culprits.test.ts runs on
# 6.1 and 6.12 only).
in_ns ns2 nft add table inet pwru 2>/tmp/nft.err &&
  in_ns ns2 nft add chain inet pwru in '{ type filter hook input priority 0; }' 2>>/tmp/nft.err &&
  in_ns ns2 nft add rule inet pwru in udp dport 9002 counter drop 2>>/tmp/nft.err ||
  say info nft_error "$(tr '\n' ' ' </tmp/nft.err)"
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
  nft) in_ns ns1 udpkit send 10.200.1.2 9002 3 ;;
  dup) in_ns ns1 udpkit send 10.200.1.2 9003 3 ;;     # copies.test.ts: dup'ed, the original dropped
  dup-both) in_ns ns1 udpkit send 10.200.1.2 9004 3 ;; # copies.test.ts: dup'ed, both dropped
  progs) # programs.test.ts: one port each for the programs its setup attached
    for port in 9101 9102 9103 9104 9105; do in_ns ns1 udpkit send 10.200.1.2 $port 2; done
    # The other way, to veth1's native XDP: dropped (:9108), passed to a receiver (:9109).
    in_ns ns2 udpkit send 10.200.1.1 9108 2
    in_ns ns2 udpkit send 10.200.1.1 9109 2
    # Over the second pair its setup adds, to vx1's native XDP: sent back (XDP_TX, :9110), redirected (:9111).
    in_ns ns2 udpkit send 10.200.3.1 9110 2 nocsum
    in_ns ns2 udpkit send 10.200.3.1 9111 2 nocsum
    ;;
  progs-late) # programs.test.ts: a clsact filter attached after the trace began, ahead of the setup's
    in_ns ns2 progload /extra/progs.o pwru_late veth2 clsact-ingress 1 2>/tmp/pl.err ||
      fail "progload pwru_late: $(cat /tmp/pl.err)"
    # At once, before its copy can be loaded (looked for every 200 ms; a load takes longer under emulation).
    in_ns ns1 udpkit send 10.200.1.2 9106 2
    # Once it is.
    sleep 4
    in_ns ns1 udpkit send 10.200.1.2 9106 2
    in_ns ns1 udpkit send 10.200.1.2 9107 2
    # Gone again, for the next case that loads it late.
    in_ns ns2 tc filter del dev veth2 ingress pref 1
    ;;
  rules) # nft-rules.test.ts: two each to the ports its setup's rules drop, one port at a time (IPv6 to
    # the address its setup gave ns2), and two ARP requests for 10.200.1.99
    for port in 9022 9023 9026 9041 9042; do
      in_ns ns1 udpkit send 10.200.1.2 $port 2
      sleep 0.5
    done
    for port in 9061 9062; do
      in_ns ns1 udpkit send fd00:200::2 $port 2
      sleep 0.5
    done
    in_ns ns1 arping -c 2 -w 3 -I veth1 10.200.1.99 >/tmp/arping.out 2>&1
    say info arping "$(tr '\n' '|' </tmp/arping.out)"
    ;;
  both)
    in_ns ns1 udpkit send 10.200.1.2 9001 3
    in_ns ns1 udpkit send 10.200.1.2 9002 3
    ;;
  tcp)
    # A healthy TCP exchange: a line each way, the server closes first, then the client.
    in_ns ns2 udpkit tcp-serve 7000 &
    sleep 0.3
    in_ns ns1 udpkit tcp-ask 10.200.1.2 7000
    sleep 0.5
    ;;
  full)
    in_ns ns1 udpkit send 10.200.1.2 7777 20
    in_ns ns1 udpkit send 10.200.1.2 9000 3
    in_ns ns1 udpkit send 10.200.1.2 9001 3
    ;;
  esac
}

# What the kernel holds attached now, whoever attached it: plain kprobes, and ftrace's traced functions.
kernel_kprobes() { n=$(grep -c . /sys/kernel/debug/kprobes/list 2>/dev/null); echo "${n:-0}"; }
kernel_ftrace() { n=$(grep -c . /sys/kernel/tracing/enabled_functions 2>/dev/null); echo "${n:-0}"; }

# Says "case-mark NAME LABEL TIME" once, when FILE first holds PATTERN.
marks=""
mark_once() { # LABEL PATTERN FILE
  case " $marks " in *" $1 "*) return ;; esac
  grep -q "$2" "$3" 2>/dev/null || return
  say case-mark "$name" "$1" "$(now)"
  marks="$marks $1"
}

# run_case NAME TRAFFIC READY_TIMEOUT ARGS...
# Starts the helper (or, with CASE_TOOL=pwru, cilium/pwru with its events to a
# file), waits for it to be ready, makes TRAFFIC, stops it with SIGINT and
# reports timings, exit code, its output and stderr. The plan may set, for one
# case: CASE_ULIMIT (arguments to `ulimit`, in the tool's shell only),
# CASE_NR_OPEN (fs.nr_open meanwhile, restored after), CASE_STOP=attaching
# (the helper is stopped one second into attaching, not once ready) and
# CASE_LINES=1 (descriptor 4 is a file, sent back as NAME.lines: --emit json --lines-fd 4) and
# CASE_ENV=NAME=VALUE (in the tool's environment).
run_case() {
  name=$1 kind=$2 limit=$3
  shift 3
  tool=${CASE_TOOL:-helper}
  marks=""
  say case-begin "$name" "$(now)"
  nr_open=$(cat /proc/sys/fs/nr_open)
  kprobes_before=$(kernel_kprobes) ftrace_before=$(kernel_ftrace)
  [ -n "$CASE_NR_OPEN" ] && echo "$CASE_NR_OPEN" >/proc/sys/fs/nr_open
  t0=$(now)
  if [ "$tool" = pwru ]; then
    (
      [ -z "$CASE_ULIMIT" ] || ulimit $CASE_ULIMIT
      exec pwru --output-file /tmp/"$name".events "$@"
    ) </dev/null >/tmp/"$name".out 2>/tmp/"$name".err &
    ready_pattern='Listening for events' ready_file=/tmp/"$name".err
  else
    (
      [ -z "$CASE_ULIMIT" ] || ulimit $CASE_ULIMIT
      [ -z "$CASE_LINES" ] || exec 4>/tmp/"$name".lines
      [ -z "$CASE_ENV" ] || export "$CASE_ENV"
      exec pwru-helper "$@"
    ) </dev/null >/tmp/"$name".out 2>/tmp/"$name".err &
    ready_pattern='"attach_ms"' ready_file=/tmp/"$name".out
  fi
  pid=$!
  state=timeout
  i=0
  while [ $i -lt $((limit * 20)) ]; do
    if [ "$tool" = pwru ]; then
      mark_once attach-begin 'Attaching kprobes' /tmp/"$name".err
      mark_once attach-end 'Attached (ignored' /tmp/"$name".err
    fi
    if grep -q "$ready_pattern" "$ready_file" 2>/dev/null; then
      state=ready
      break
    fi
    if [ "$CASE_STOP" = attaching ] && grep -q '"attaching probes"' /tmp/"$name".out 2>/dev/null; then
      sleep 1
      state=attaching
      break
    fi
    kill -0 $pid 2>/dev/null || {
      state=exited
      break
    }
    sleep 0.05
    i=$((i + 1))
  done
  t1=$(now)
  say case-ready "$name" "$state" "$t0" "$t1"
  if [ $state = ready ]; then
    # What the kernel holds attached now, whoever attached it: plain kprobes, and ftrace's traced functions.
    say case-info "$name" kprobes "$(kernel_kprobes)"
    say case-info "$name" ftrace "$(kernel_ftrace)"
    traffic "$kind"
    sleep 1
  fi
  t2=$(now)
  kill -INT $pid 2>/dev/null
  i=0
  while kill -0 $pid 2>/dev/null && [ $i -lt 6000 ]; do
    # The helper's END: the trace is over for its reader (it detaches after it).
    [ "$tool" = pwru ] || mark_once end '"reason"' /tmp/"$name".out
    [ "$tool" = pwru ] && mark_once detach-begin 'Detaching kprobes' /tmp/"$name".err
    sleep 0.05
    i=$((i + 1))
  done
  kill -0 $pid 2>/dev/null && kill -KILL $pid
  wait $pid
  code=$?
  say case-exit "$name" "$code" "$t2" "$(now)"
  # The kernel may still be removing what the tool handed it (the helper's function probes): until its
  # lists are back to what they were before the case ('clean'), or 120 s.
  i=0
  while [ $i -lt 2400 ]; do
    [ "$(kernel_kprobes)" -le "${kprobes_before:-0}" ] && [ "$(kernel_ftrace)" -le "${ftrace_before:-0}" ] && {
      say case-mark "$name" clean "$(now)"
      break
    }
    sleep 0.05
    i=$((i + 1))
  done
  echo "$nr_open" >/proc/sys/fs/nr_open
  if [ -f /tmp/"$name".events ]; then
    say case-info "$name" events "$(grep -c . /tmp/"$name".events)"
    rm -f /tmp/"$name".events
  fi
  send_file "$name.out" /tmp/"$name".out
  send_file "$name.err" /tmp/"$name".err
  [ -f /tmp/"$name".lines ] && send_file "$name.lines" /tmp/"$name".lines
  rm -f /tmp/"$name".out /tmp/"$name".err /tmp/"$name".lines
  say case-end "$name"
}

[ -f /plan.sh ] || fail "no /plan.sh"
. /plan.sh
say counters "$(in_ns ns2 iptables-legacy -L INPUT -v -n -x | tr '\n' '|')"
bye
