// SPDX-License-Identifier: Apache-2.0
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <linux/types.h>

#include "../bpf/event.h"
#include "attach.h"
#include "events.h"

static const char usage[] =
	"Usage: pwru-helper [OPTIONS] [--] [PCAP-FILTER]\n"
	"Traces the kernel path of packets matching PCAP-FILTER and writes the\n"
	"binary record stream described in docs/record-stream.md to stdout.\n"
	"Meant to be run by kubectl-pwru; see `kubectl pwru --help`.\n"
	"\n"
	"  --backend auto|kprobe-multi|kprobe|tracepoint   how to probe (default auto)\n"
	"  --filter-func REGEX      only functions/tracepoints whose name matches\n"
	"  --filter-netns NS        inode number, or a path like /proc/PID/ns/net\n"
	"  --filter-mark MARK[/MASK]\n"
	"  --filter-ifname NAME     the interface of that name in the --filter-netns\n"
	"                           namespace (the helper's own without one)\n"
	"  --filter-track-skb       keep following an skb once it matched\n"
	"  --all-kmods              also probe functions of kernel modules\n"
	"  --output-stack           collect the kernel stack of each event\n"
	"  --tunnel-filter EXPR     a pcap expression for the inner packet of VXLAN,\n"
	"                           Geneve, IP-in-IP and GRE: a packet matches when\n"
	"                           PCAP-FILTER matches it or this matches its inner packet\n"
	"  --vxlan-port PORT        VXLAN's UDP port (default 4789 and 8472)\n"
	"  --geneve-port PORT       Geneve's UDP port (default 6081)\n"
	"  --snaplen BYTES          send up to BYTES of each packet from its IP header\n"
	"                           on (PACKET frames): at its first step and where its\n"
	"                           addresses, ports or protocol changed (1 to 65535)\n"
	"  --duration SECONDS       stop after this long\n"
	"  --max-events N           stop after N events\n"
	"  --ringbuf-size BYTES     ring buffer size, a power of two (default 8 MiB)\n"
	"  --emit binary|json|text|wide\n"
	"                           events as binary records (default) or as the\n"
	"                           client's JSON lines or text view's lines (no\n"
	"                           colour), written to the --lines-fd; with text and\n"
	"                           wide, finished packets as PACKET_DONE frames\n"
	"  --text-notes NOTES       with --emit text|wide: the words of the lines' notes\n"
	"                           (src/output/text-notes.ts)\n"
	"  --packet-starts LIST     with --emit json|text|wide: comma-separated functions where a\n"
	"                           packet seen in another netns starts anew\n"
	"  --lines-fd N             with --emit json|text|wide: write the lines to descriptor N\n"
	"                           (once or twice), once the client sends 'g' on\n"
	"                           stdin after READY\n"
	"  --lines-name NAME        what the last --lines-fd is (a file's path), for\n"
	"                           the message when writing to it fails\n"
	"  --lines-stream           with --emit json|text|wide: the lines as LINES frames\n"
	"                           in the record stream instead of --lines-fd (a client\n"
	"                           that reads the stream through a runner: Kubernetes)\n"
	"  --deflate                the record stream on stdout as raw deflate (level 1),\n"
	"                           flushed at most 10 ms after what it holds was written\n"
	"                           (a reader through a runner and the API server)\n"
	"  --line-node NAME         with --emit json: the node named in every line\n"
	"  --addr-names FILE        with --emit json|text|wide: lines 'ADDRESS NAME'; a\n"
	"                           tuple's addresses are named after their owners\n"
	"  --on-drop                write no events, only a report of each drop: the\n"
	"                           packet's path and the last good one of its flow\n"
	"  --max-rate N             write at most N matching events a second (the\n"
	"                           kernel program counts the rest as skipped)\n"
	"  --check                  check the options and compile the filter, then\n"
	"                           exit: needs no privileges, loads nothing\n"
	"  --verify-only            load the programs of --backend (kernel verifier)\n"
	"                           without attaching, even if the kernel cannot attach them\n"
	"  --bench-floor            benchmarks only: attach as asked, with programs that\n"
	"                           return at once (what being attached costs)\n";

enum {
	OPT_BACKEND = 256,
	OPT_FILTER_FUNC,
	OPT_FILTER_NETNS,
	OPT_FILTER_MARK,
	OPT_FILTER_IFNAME,
	OPT_TRACK_SKB,
	OPT_ALL_KMODS,
	OPT_OUTPUT_STACK,
	OPT_SNAPLEN,
	OPT_TUNNEL_FILTER,
	OPT_VXLAN_PORT,
	OPT_GENEVE_PORT,
	OPT_DURATION,
	OPT_MAX_EVENTS,
	OPT_RINGBUF,
	OPT_VERIFY_ONLY,
	OPT_BENCH_FLOOR,
	OPT_EMIT,
	OPT_PACKET_STARTS,
	OPT_TEXT_NOTES,
	OPT_LINES_FD,
	OPT_LINES_NAME,
	OPT_LINES_STREAM,
	OPT_DEFLATE,
	OPT_LINE_NODE,
	OPT_ADDR_NAMES,
	OPT_CHECK,
	OPT_ON_DROP,
	OPT_MAX_RATE,
	OPT_HELP,
	OPT_VERSION,
};

static const struct option long_opts[] = {
	{ "backend", required_argument, NULL, OPT_BACKEND },
	{ "filter-func", required_argument, NULL, OPT_FILTER_FUNC },
	{ "filter-netns", required_argument, NULL, OPT_FILTER_NETNS },
	{ "filter-mark", required_argument, NULL, OPT_FILTER_MARK },
	{ "filter-ifname", required_argument, NULL, OPT_FILTER_IFNAME },
	{ "filter-track-skb", no_argument, NULL, OPT_TRACK_SKB },
	{ "all-kmods", no_argument, NULL, OPT_ALL_KMODS },
	{ "output-stack", no_argument, NULL, OPT_OUTPUT_STACK },
	{ "snaplen", required_argument, NULL, OPT_SNAPLEN },
	{ "tunnel-filter", required_argument, NULL, OPT_TUNNEL_FILTER },
	{ "vxlan-port", required_argument, NULL, OPT_VXLAN_PORT },
	{ "geneve-port", required_argument, NULL, OPT_GENEVE_PORT },
	{ "duration", required_argument, NULL, OPT_DURATION },
	{ "max-events", required_argument, NULL, OPT_MAX_EVENTS },
	{ "ringbuf-size", required_argument, NULL, OPT_RINGBUF },
	{ "verify-only", no_argument, NULL, OPT_VERIFY_ONLY },
	{ "bench-floor", no_argument, NULL, OPT_BENCH_FLOOR },
	{ "emit", required_argument, NULL, OPT_EMIT },
	{ "packet-starts", required_argument, NULL, OPT_PACKET_STARTS },
	{ "text-notes", required_argument, NULL, OPT_TEXT_NOTES },
	{ "lines-fd", required_argument, NULL, OPT_LINES_FD },
	{ "lines-name", required_argument, NULL, OPT_LINES_NAME },
	{ "lines-stream", no_argument, NULL, OPT_LINES_STREAM },
	{ "deflate", no_argument, NULL, OPT_DEFLATE },
	{ "line-node", required_argument, NULL, OPT_LINE_NODE },
	{ "addr-names", required_argument, NULL, OPT_ADDR_NAMES },
	{ "check", no_argument, NULL, OPT_CHECK },
	{ "on-drop", no_argument, NULL, OPT_ON_DROP },
	{ "max-rate", required_argument, NULL, OPT_MAX_RATE },
	{ "help", no_argument, NULL, OPT_HELP },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ 0 },
};

static int parse_u64(const char *s, unsigned long long *v)
{
	char *end;

	errno = 0;
	if (!*s || *s == '-')
		return OPTIONS_BAD;
	*v = strtoull(s, &end, 0);
	return errno || *end ? -1 : 0;
}

static int parse_mark(struct options *o, const char *arg, char *err, size_t errlen)
{
	char buf[64];
	unsigned long long mark, mask = 0xffffffffULL;
	char *slash;

	snprintf(buf, sizeof(buf), "%s", arg);
	slash = strchr(buf, '/');
	if (slash)
		*slash++ = 0;
	if (parse_u64(buf, &mark) || mark > UINT32_MAX || (slash && (parse_u64(slash, &mask) || mask > UINT32_MAX)) ||
	    mask == 0) {
		snprintf(err, errlen, "--filter-mark %s: expected MARK or MARK/MASK, 32-bit numbers, mask not 0", arg);
		return -1;
	}
	o->mark = (unsigned int)(mark & mask);
	o->mark_mask = (unsigned int)mask;
	return 0;
}

static char *join_args(int argc, char **argv)
{
	size_t len = 1;
	char *s;

	for (int i = 0; i < argc; i++)
		len += strlen(argv[i]) + 1;
	s = calloc(1, len);
	if (!s)
		return NULL;
	for (int i = 0; i < argc; i++) {
		if (i)
			strcat(s, " ");
		strcat(s, argv[i]);
	}
	return s;
}

void options_usage(void)
{
	fputs(usage, stdout);
}

enum options_result options_parse(int argc, char **argv, struct options *o, char *err, size_t errlen)
{
	unsigned long long v;
	int c;

	memset(o, 0, sizeof(*o));
	o->backend = BACKEND_AUTO;
	o->ringbuf_bytes = 8 << 20;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_BACKEND:
			if (backend_parse(optarg, &o->backend)) {
				snprintf(err, errlen, "--backend %s: expected auto, kprobe-multi, kprobe or tracepoint",
					 optarg);
				return OPTIONS_BAD;
			}
			break;
		case OPT_FILTER_FUNC:
			o->filter_func = optarg;
			break;
		case OPT_FILTER_NETNS:
			o->filter_netns = optarg;
			break;
		case OPT_FILTER_MARK:
			if (parse_mark(o, optarg, err, errlen))
				return OPTIONS_BAD;
			break;
		case OPT_FILTER_IFNAME:
			if (strlen(optarg) == 0 || strlen(optarg) > 15) {
				snprintf(err, errlen, "--filter-ifname %s: interface names are 1 to 15 characters", optarg);
				return OPTIONS_BAD;
			}
			o->filter_ifname = optarg;
			break;
		case OPT_TRACK_SKB:
			o->track_skb = true;
			break;
		case OPT_ALL_KMODS:
			o->all_kmods = true;
			break;
		case OPT_OUTPUT_STACK:
			o->output_stack = true;
			break;
		case OPT_SNAPLEN:
			if (parse_u64(optarg, &v) || v == 0 || v > PWRU_SNAPLEN_MAX) {
				snprintf(err, errlen, "--snaplen %s: expected a number of bytes from 1 to %d", optarg,
					 PWRU_SNAPLEN_MAX);
				return OPTIONS_BAD;
			}
			o->snaplen = (unsigned int)v;
			break;
		case OPT_TUNNEL_FILTER:
			if (!*optarg) {
				snprintf(err, errlen, "--tunnel-filter: expected a pcap expression");
				return OPTIONS_BAD;
			}
			o->tunnel_filter = optarg;
			break;
		case OPT_VXLAN_PORT:
		case OPT_GENEVE_PORT:
			if (parse_u64(optarg, &v) || v == 0 || v > 65535) {
				snprintf(err, errlen, "--%s-port %s: expected a UDP port from 1 to 65535",
					 c == OPT_VXLAN_PORT ? "vxlan" : "geneve", optarg);
				return OPTIONS_BAD;
			}
			*(c == OPT_VXLAN_PORT ? &o->vxlan_port : &o->geneve_port) = (unsigned int)v;
			break;
		case OPT_DURATION: {
			char *end;

			o->duration_sec = strtod(optarg, &end);
			if (*end || !(o->duration_sec > 0)) {
				snprintf(err, errlen, "--duration %s: expected a positive number of seconds", optarg);
				return OPTIONS_BAD;
			}
			break;
		}
		case OPT_MAX_EVENTS:
			if (parse_u64(optarg, &v) || v == 0) {
				snprintf(err, errlen, "--max-events %s: expected a positive whole number", optarg);
				return OPTIONS_BAD;
			}
			o->max_events = v;
			break;
		case OPT_RINGBUF:
			if (parse_u64(optarg, &v) || v < 4096 || v > (1ULL << 30) || (v & (v - 1))) {
				snprintf(err, errlen, "--ringbuf-size %s: expected a power of two from 4096 to 1073741824",
					 optarg);
				return OPTIONS_BAD;
			}
			o->ringbuf_bytes = (unsigned int)v;
			break;
		case OPT_VERIFY_ONLY:
			o->verify_only = true;
			break;
		case OPT_BENCH_FLOOR:
			o->bench_floor = true;
			break;
		case OPT_EMIT:
			if (strcmp(optarg, "json") != 0 && strcmp(optarg, "binary") != 0 && strcmp(optarg, "text") != 0 &&
			    strcmp(optarg, "wide") != 0) {
				snprintf(err, errlen, "--emit %s: expected binary, json, text or wide", optarg);
				return OPTIONS_BAD;
			}
			o->emit_json = strcmp(optarg, "json") == 0;
			o->emit_text = strcmp(optarg, "text") == 0 ? EMIT_TEXT : strcmp(optarg, "wide") == 0 ? EMIT_WIDE : 0;
			break;
		case OPT_TEXT_NOTES:
			o->text_notes = optarg;
			break;
		case OPT_PACKET_STARTS:
			o->packet_starts = optarg;
			break;
		case OPT_LINES_FD: {
			if (parse_u64(optarg, &v) || v < 3 || v > 1024 || o->nline_fds == MAX_LINE_FDS) {
				snprintf(err, errlen, "--lines-fd %s: expected an open descriptor from 3 up, at most twice",
					 optarg);
				return OPTIONS_BAD;
			}
			o->line_names[o->nline_fds] = NULL;
			o->line_fds[o->nline_fds++] = (int)v;
			break;
		}
		case OPT_LINES_NAME:
			if (!o->nline_fds || o->line_names[o->nline_fds - 1]) {
				snprintf(err, errlen, "--lines-name %s: names the --lines-fd before it, once", optarg);
				return OPTIONS_BAD;
			}
			o->line_names[o->nline_fds - 1] = optarg;
			break;
		case OPT_LINES_STREAM:
			o->lines_stream = true;
			break;
		case OPT_DEFLATE:
			o->deflate = true;
			break;
		case OPT_LINE_NODE:
			o->line_node = optarg;
			break;
		case OPT_ADDR_NAMES:
			o->addr_names = optarg;
			break;
		case OPT_CHECK:
			o->check = true;
			break;
		case OPT_ON_DROP:
			o->on_drop = true;
			break;
		case OPT_MAX_RATE:
			if (parse_u64(optarg, &v) || v == 0 || v > 100000000) {
				snprintf(err, errlen, "--max-rate %s: expected events per second, 1 to 100000000", optarg);
				return OPTIONS_BAD;
			}
			o->max_rate = v;
			break;
		case 'h':
		case OPT_HELP:
			return OPTIONS_HELP;
		case OPT_VERSION:
			return OPTIONS_VERSION;
		default:
			snprintf(err, errlen, "unknown or incomplete option %s (see --help)", argv[optind - 1]);
			return OPTIONS_BAD;
		}
	}
	if (o->nline_fds && !o->emit_json && !o->emit_text) {
		snprintf(err, errlen, "--lines-fd needs --emit json, text or wide");
		return OPTIONS_BAD;
	}
	if (o->lines_stream && o->nline_fds) {
		snprintf(err, errlen, "--lines-stream and --lines-fd: pick one");
		return OPTIONS_BAD;
	}
	if (o->lines_stream && !o->emit_json && !o->emit_text) {
		snprintf(err, errlen, "--lines-stream needs --emit json, text or wide");
		return OPTIONS_BAD;
	}
	if ((o->emit_json || o->emit_text) && !o->nline_fds && !o->lines_stream) {
		snprintf(err, errlen, "--emit %s needs --lines-fd or --lines-stream", o->emit_json ? "json" : "text|wide");
		return OPTIONS_BAD;
	}
	if (o->line_node && !o->emit_json) {
		snprintf(err, errlen, "--line-node needs --emit json (text lines name no node)");
		return OPTIONS_BAD;
	}
	if (o->addr_names && !o->emit_json && !o->emit_text) {
		snprintf(err, errlen, "--addr-names needs --emit json, text or wide");
		return OPTIONS_BAD;
	}
	/* --check runs without the client's plumbing: the descriptors are only named. */
	for (int i = 0; i < o->nline_fds && !o->check; i++) {
		struct stat st;

		if (fstat(o->line_fds[i], &st) != 0) {
			snprintf(err, errlen, "--lines-fd %d: not an open descriptor", o->line_fds[i]);
			return OPTIONS_BAD;
		}
	}
	if (o->snaplen && (o->emit_json || o->emit_text)) {
		snprintf(err, errlen, "--snaplen needs --emit binary: lines carry no packet bytes");
		return OPTIONS_BAD;
	}
	/* A record with its bytes must fit the ring buffer many times over. */
	if (o->snaplen && o->snaplen > o->ringbuf_bytes / 16) {
		snprintf(err, errlen, "--snaplen %u: at most 1/16 of --ringbuf-size (%u)", o->snaplen,
			 o->ringbuf_bytes / 16);
		return OPTIONS_BAD;
	}
	if (o->on_drop && (o->emit_json || o->emit_text)) {
		snprintf(err, errlen, "--on-drop writes reports, not lines: drop --emit");
		return OPTIONS_BAD;
	}
	if (o->on_drop && o->snaplen) {
		snprintf(err, errlen, "--on-drop writes reports of steps, not packet bytes: drop --snaplen");
		return OPTIONS_BAD;
	}
	if (o->check && o->verify_only) {
		snprintf(err, errlen, "--check and --verify-only: pick one");
		return OPTIONS_BAD;
	}
	if (o->verify_only && o->backend == BACKEND_AUTO) {
		snprintf(err, errlen, "--verify-only needs an explicit --backend");
		return OPTIONS_BAD;
	}
	for (int i = 0; i < o->nline_fds; i++) {
		if (!o->line_names[i]) {
			snprintf(o->line_default_names[i], sizeof(o->line_default_names[i]), "descriptor %d", o->line_fds[i]);
			o->line_names[i] = o->line_default_names[i];
		}
	}
	o->pcap_filter = join_args(argc - optind, argv + optind);
	if (!o->pcap_filter)
		return OPTIONS_NO_MEMORY;
	return OPTIONS_OK;
}
