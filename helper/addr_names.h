/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --addr-names FILE: who owns an address (a pod, a service, a node), as the
 * client looked it up in Kubernetes (src/kube/names.ts). Lines
 * "ADDRESS NAME", the address as the lines write it (fmt.c format_addr).
 * The JSON lines name a tuple's addresses (srcName, dstName), the text
 * lines follow the tuple with "[SRC → DST]", as the client's views do.
 */
#ifndef PWRU_ADDR_NAMES_H
#define PWRU_ADDR_NAMES_H

#include <stddef.h>
#include <stdint.h>

struct addr_name {
	char *addr, *name;
};

struct addr_names {
	struct addr_name *v; /* sorted by addr */
	size_t n;
	char *text;	     /* the file, which v points into */
};

/* 0, or -errno; an empty file names nothing. */
int addr_names_load(struct addr_names *n, const char *path);
/* The owner of the address (text as format_addr writes it), or NULL. */
const char *addr_name_of(const struct addr_names *n, const char *addr);
/* The owners of a tuple's two addresses (family 4 or 6, the event's raw bytes): each, or NULL. */
void addr_names_of_pair(const struct addr_names *n, uint8_t family, const uint8_t *saddr, const uint8_t *daddr,
			const char **src, const char **dst);
void addr_names_free(struct addr_names *n);

#endif
