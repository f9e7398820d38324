/*
 * Which of a set of packets each pcap filter matches, as libpcap decides:
 * test/unit/trace/filter-pcap.test.ts compiles the filter the composer made
 * and the one it means, and requires the same answers.
 *
 * Usage: pcap-match PACKETS EXPR...
 * PACKETS: one Ethernet frame per line, in hex. Prints one line per
 * expression, a 0 or 1 per packet; exits 2 when an expression does not compile.
 */
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PACKETS 4096
#define MAX_FRAME 256

static unsigned char frames[MAX_PACKETS][MAX_FRAME];
static unsigned lengths[MAX_PACKETS];

static int read_packets(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[2 * MAX_FRAME + 2];
	int n = 0;

	if (!f) {
		perror(path);
		exit(2);
	}
	while (n < MAX_PACKETS && fgets(line, sizeof(line), f)) {
		unsigned len = 0;
		for (char *p = line; p[0] && p[1] && p[0] != '\n' && len < MAX_FRAME; p += 2) {
			unsigned byte;
			if (sscanf(p, "%2x", &byte) != 1)
				break;
			frames[n][len++] = (unsigned char)byte;
		}
		if (len > 0)
			lengths[n++] = len;
	}
	fclose(f);
	return n;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s PACKETS EXPR...\n", argv[0]);
		return 2;
	}
	int packets = read_packets(argv[1]);
	pcap_t *pcap = pcap_open_dead(DLT_EN10MB, 65535);

	for (int i = 2; i < argc; i++) {
		struct bpf_program prog;
		if (pcap_compile(pcap, &prog, argv[i], 1, PCAP_NETMASK_UNKNOWN) < 0) {
			fprintf(stderr, "%s: %s\n", argv[i], pcap_geterr(pcap));
			return 2;
		}
		for (int k = 0; k < packets; k++) {
			struct pcap_pkthdr h = { .caplen = lengths[k], .len = lengths[k] };
			putchar(pcap_offline_filter(&prog, &h, frames[k]) ? '1' : '0');
		}
		putchar('\n');
		pcap_freecode(&prog);
	}
	pcap_close(pcap);
	return 0;
}
