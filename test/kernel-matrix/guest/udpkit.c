/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A tiny static UDP tool for the kernel-matrix guests (busybox's nc has no UDP):
 *   udpkit send DST PORT COUNT   send COUNT small datagrams to DST:PORT, 2 ms apart
 *   udpkit recv PORT             receive and discard datagrams on PORT until killed
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int usage(void)
{
	fprintf(stderr, "usage: udpkit send DST PORT COUNT | udpkit recv PORT\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	char buf[2048];
	int fd;

	if (argc < 3)
		return usage();
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0) {
		perror("udpkit: socket");
		return 1;
	}
	if (strcmp(argv[1], "recv") == 0) {
		sa.sin_port = htons(atoi(argv[2]));
		sa.sin_addr.s_addr = htonl(INADDR_ANY);
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			perror("udpkit: bind");
			return 1;
		}
		for (;;)
			if (recv(fd, buf, sizeof(buf), 0) < 0)
				perror("udpkit: recv");
	}
	if (strcmp(argv[1], "send") == 0 && argc == 5) {
		struct timespec gap = { 0, 2 * 1000 * 1000 };
		int i, n = atoi(argv[4]), failed = 0;

		sa.sin_port = htons(atoi(argv[3]));
		if (inet_pton(AF_INET, argv[2], &sa.sin_addr) != 1)
			return usage();
		for (i = 0; i < n; i++) {
			snprintf(buf, sizeof(buf), "kubectl-pwru kernel matrix %d", i);
			if (sendto(fd, buf, strlen(buf), 0, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
				perror("udpkit: sendto");
				failed++;
			}
			nanosleep(&gap, NULL);
		}
		return failed ? 1 : 0;
	}
	return usage();
}
