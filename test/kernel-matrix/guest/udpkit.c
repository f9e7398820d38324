/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A tiny static UDP (and TCP) tool for the kernel-matrix guests (busybox's nc has no UDP):
 *   udpkit send DST PORT COUNT [nocsum]
 *                                send COUNT small datagrams to DST:PORT (IPv4 or IPv6), 2 ms apart; nocsum:
 *                                IPv4 with no UDP checksum (SO_NO_CHECK), for what XDP sends back out of a
 *                                veth: the frame loses the sent skb's CHECKSUM_PARTIAL and a partial checksum
 *                                would be found bad
 *   udpkit recv PORT             receive and discard datagrams on PORT until killed
 *   udpkit tcp-serve PORT        accept one TCP connection: read a line, answer one, close first
 *   udpkit tcp-ask DST PORT      connect, send a line, read the answer, close after the server
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int usage(void)
{
	fprintf(stderr, "usage: udpkit send DST PORT COUNT [nocsum] | recv PORT | tcp-serve PORT | tcp-ask DST PORT\n");
	return 2;
}

/* One healthy TCP exchange, as test/fixtures/record-verdict-traces.sh makes on loopback. */
static int tcp(char **argv, bool serve)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	char buf[256];
	int fd = socket(AF_INET, SOCK_STREAM, 0), c, one = 1;

	if (fd < 0)
		return perror("udpkit: socket"), 1;
	sa.sin_port = htons(atoi(argv[serve ? 2 : 3]));
	if (serve) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0 || (c = accept(fd, NULL, NULL)) < 0)
			return perror("udpkit: tcp-serve"), 1;
		if (read(c, buf, sizeof(buf)) <= 0 || write(c, "reply\n", 6) != 6)
			return perror("udpkit: tcp-serve"), 1;
		close(c);
		close(fd);
		return 0;
	}
	if (inet_pton(AF_INET, argv[2], &sa.sin_addr) != 1)
		return usage();
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || write(fd, "hello\n", 6) != 6)
		return perror("udpkit: tcp-ask"), 1;
	while (read(fd, buf, sizeof(buf)) > 0)
		; /* the answer, then the server's FIN */
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	char buf[2048];
	int fd;

	if (argc < 3)
		return usage();
	if (strcmp(argv[1], "tcp-serve") == 0)
		return tcp(argv, true);
	if (strcmp(argv[1], "tcp-ask") == 0 && argc == 4)
		return tcp(argv, false);
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
	if (strcmp(argv[1], "send") == 0 && (argc == 5 || (argc == 6 && strcmp(argv[5], "nocsum") == 0))) {
		struct timespec gap = { 0, 2 * 1000 * 1000 };
		int i, n = atoi(argv[4]), failed = 0;
		struct sockaddr_in6 sa6 = { .sin6_family = AF_INET6 };
		struct sockaddr *to = (struct sockaddr *)&sa;
		socklen_t tolen = sizeof(sa);

		sa.sin_port = htons(atoi(argv[3]));
		if (inet_pton(AF_INET, argv[2], &sa.sin_addr) != 1) {
			/* An IPv6 destination: a socket of its family. */
			sa6.sin6_port = sa.sin_port;
			if (inet_pton(AF_INET6, argv[2], &sa6.sin6_addr) != 1)
				return usage();
			close(fd);
			if ((fd = socket(AF_INET6, SOCK_DGRAM, 0)) < 0)
				return perror("udpkit: socket"), 1;
			to = (struct sockaddr *)&sa6;
			tolen = sizeof(sa6);
		}
		if (argc == 6 && setsockopt(fd, SOL_SOCKET, SO_NO_CHECK, &(int){ 1 }, sizeof(int)) < 0)
			return perror("udpkit: SO_NO_CHECK"), 1;
		for (i = 0; i < n; i++) {
			snprintf(buf, sizeof(buf), "kubectl-pwru kernel matrix %d", i);
			if (sendto(fd, buf, strlen(buf), 0, to, tolen) < 0) {
				perror("udpkit: sendto");
				failed++;
			}
			nanosleep(&gap, NULL);
		}
		return failed ? 1 : 0;
	}
	return usage();
}
