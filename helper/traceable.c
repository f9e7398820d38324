// SPDX-License-Identifier: Apache-2.0
#include "traceable.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TRACEFS "/sys/kernel/tracing/"
#define DEBUGFS_TRACING "/sys/kernel/debug/tracing/"
#define NAMES "available_filter_functions"
#define ADDRS "available_filter_functions_addrs"

struct traceable_fn {
	const char *name; /* into text */
	uint64_t addr;
};

struct traceable_list {
	char *text; /* the file as read, names terminated in place */
	struct traceable_fn *v;
	size_t cnt;
	uint32_t *hash; /* open addressing: index + 1 into v, 0 = empty */
	size_t hash_cap;
	bool addrs;
};

static struct {
	pthread_t thread;
	bool started, loaded, with_addrs;
	struct traceable_list list;
} bg;

bool traceable_addrs_possible(void)
{
#if defined(__x86_64__)
	return access(TRACEFS ADDRS, R_OK) == 0 || access(DEBUGFS_TRACING ADDRS, R_OK) == 0;
#else
	/* Elsewhere ftrace's address lies further into the function, by rules of each architecture. */
	return false;
#endif
}

static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

/* The whole file: the kernel hands out at most a page a read. NULL when it cannot be read. */
static char *read_all(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t cap = 1 << 20, have = 0;
	char *buf;
	ssize_t n;

	if (fd < 0)
		return NULL;
	buf = malloc(cap + 1);
	while (buf) {
		if (have == cap) {
			char *p = realloc(buf, cap * 2 + 1);

			if (!p) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = p;
			cap *= 2;
		}
		n = read(fd, buf + have, cap - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n < 0) {
				free(buf);
				buf = NULL;
			}
			break;
		}
		have += (size_t)n;
	}
	close(fd);
	if (buf) {
		buf[have] = 0;
		*len = have;
	}
	return buf;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Lines "NAME[ [MODULE]]", or with addresses "ADDR NAME[ [MODULE]]": names terminated in place. */
static int parse(struct traceable_list *l, bool addrs)
{
	size_t cap = 1 << 16;
	char *p = l->text;

	l->v = malloc(cap * sizeof(*l->v));
	if (!l->v)
		return -ENOMEM;
	while (*p) {
		char *line = p, *nl = strchr(p, '\n');
		uint64_t addr = 0;
		int v;

		p = nl ? nl + 1 : p + strlen(p);
		if (addrs) {
			while ((v = hexval(*line)) >= 0) {
				addr = addr << 4 | (uint64_t)v;
				line++;
			}
			if (*line != ' ' || !addr)
				continue;
			line++;
		}
		size_t n = strcspn(line, " \t\n");
		if (!n)
			continue;
		line[n] = 0;
		if (l->cnt == cap) {
			struct traceable_fn *grown = realloc(l->v, cap * 2 * sizeof(*grown));

			if (!grown)
				return -ENOMEM;
			l->v = grown;
			cap *= 2;
		}
		l->v[l->cnt++] = (struct traceable_fn){ .name = line, .addr = addr };
	}
	return 0;
}

static int build_hash(struct traceable_list *l)
{
	l->hash_cap = 1;
	while (l->hash_cap < l->cnt * 2)
		l->hash_cap <<= 1;
	l->hash = calloc(l->hash_cap, sizeof(*l->hash));
	if (!l->hash)
		return -ENOMEM;
	for (size_t i = 0; i < l->cnt; i++) {
		size_t slot = name_hash(l->v[i].name) & (l->hash_cap - 1);

		while (l->hash[slot]) {
			struct traceable_fn *had = &l->v[l->hash[slot] - 1];

			/* Static functions of one name in several files: the lowest address, as kallsyms gives. */
			if (strcmp(had->name, l->v[i].name) == 0) {
				if (l->v[i].addr < had->addr)
					had->addr = l->v[i].addr;
				goto next;
			}
			slot = (slot + 1) & (l->hash_cap - 1);
		}
		l->hash[slot] = (uint32_t)(i + 1);
next:;
	}
	return 0;
}

static void list_free(struct traceable_list *l)
{
	free(l->text);
	free(l->v);
	free(l->hash);
	memset(l, 0, sizeof(*l));
}

static void load(struct traceable_list *l, bool with_addrs)
{
	static const char *const dirs[] = { TRACEFS, DEBUGFS_TRACING };
	size_t len;

	memset(l, 0, sizeof(*l));
	for (int addrs = with_addrs && traceable_addrs_possible(); addrs >= 0; addrs--) {
		for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
			char path[128];

			strcpy(path, dirs[i]);
			strcat(path, addrs ? ADDRS : NAMES);
			l->text = read_all(path, &len);
			if (!l->text)
				continue;
			l->addrs = addrs;
			if (parse(l, addrs) == 0 && l->cnt && build_hash(l) == 0)
				return;
			list_free(l);
		}
	}
}

static void *load_thread(void *arg)
{
	(void)arg;
	load(&bg.list, bg.with_addrs);
	return NULL;
}

void traceable_prefetch(bool with_addrs)
{
	if (bg.started || bg.loaded)
		return;
	bg.with_addrs = with_addrs;
	bg.started = pthread_create(&bg.thread, NULL, load_thread, NULL) == 0;
}

const struct traceable_list *traceable_get(void)
{
	if (bg.started) {
		pthread_join(bg.thread, NULL);
		bg.started = false;
		bg.loaded = true;
	}
	if (!bg.loaded) {
		load(&bg.list, false);
		bg.loaded = true;
	}
	return &bg.list;
}

size_t traceable_count(const struct traceable_list *l)
{
	return l->cnt;
}

bool traceable_has_addrs(const struct traceable_list *l)
{
	return l->addrs;
}

bool traceable_find(const struct traceable_list *l, const char *name, uint64_t *addr)
{
	*addr = 0;
	if (!l->hash_cap)
		return false;
	for (size_t slot = name_hash(name) & (l->hash_cap - 1); l->hash[slot]; slot = (slot + 1) & (l->hash_cap - 1)) {
		const struct traceable_fn *f = &l->v[l->hash[slot] - 1];

		if (strcmp(f->name, name) == 0) {
			*addr = f->addr;
			return true;
		}
	}
	return false;
}

void traceable_release(void)
{
	if (bg.started)
		pthread_join(bg.thread, NULL);
	list_free(&bg.list);
	memset(&bg, 0, sizeof(bg));
}
