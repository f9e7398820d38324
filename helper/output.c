// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE /* F_SETPIPE_SZ */
#include "output.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/types.h>
#include "../bpf/event.h"

/* ---- JSON ---- */

static void json_reserve(struct json *j, size_t extra)
{
	if (j->len + extra + 1 <= j->cap)
		return;
	size_t cap = j->cap ? j->cap : 256;
	while (cap < j->len + extra + 1)
		cap *= 2;
	char *p = realloc(j->buf, cap);
	if (!p) {
		fprintf(stderr, "pwru-helper: out of memory\n");
		exit(1);
	}
	j->buf = p;
	j->cap = cap;
}

static void json_raw(struct json *j, const char *s, size_t n)
{
	json_reserve(j, n);
	memcpy(j->buf + j->len, s, n);
	j->len += n;
	j->buf[j->len] = 0;
}

static void json_sep(struct json *j)
{
	if (j->need_comma)
		json_raw(j, ",", 1);
	j->need_comma = true;
}

void json_init(struct json *j)
{
	memset(j, 0, sizeof(*j));
	json_reserve(j, 0);
	j->buf[0] = 0;
}

void json_free(struct json *j)
{
	free(j->buf);
	memset(j, 0, sizeof(*j));
}

void json_begin_object(struct json *j)
{
	json_sep(j);
	json_raw(j, "{", 1);
	j->need_comma = false;
}

void json_end_object(struct json *j)
{
	json_raw(j, "}", 1);
	j->need_comma = true;
}

void json_begin_array(struct json *j)
{
	json_sep(j);
	json_raw(j, "[", 1);
	j->need_comma = false;
}

void json_end_array(struct json *j)
{
	json_raw(j, "]", 1);
	j->need_comma = true;
}

void json_key(struct json *j, const char *key)
{
	json_string(j, key);
	json_raw(j, ":", 1);
	j->need_comma = false;
}

void json_string(struct json *j, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	json_sep(j);
	json_raw(j, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\') {
			char esc[2] = { '\\', (char)*p };
			json_raw(j, esc, 2);
		} else if (*p < 0x20) {
			char esc[6] = { '\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 0xf] };
			json_raw(j, esc, 6);
		} else {
			json_raw(j, (const char *)p, 1);
		}
	}
	json_raw(j, "\"", 1);
}

void json_int(struct json *j, long long v)
{
	char num[32];

	json_sep(j);
	json_raw(j, num, snprintf(num, sizeof(num), "%lld", v));
}

void json_uint(struct json *j, unsigned long long v)
{
	char num[32];

	json_sep(j);
	json_raw(j, num, snprintf(num, sizeof(num), "%llu", v));
}

void json_bool(struct json *j, bool v)
{
	json_sep(j);
	json_raw(j, v ? "true" : "false", v ? 4 : 5);
}

void json_raw_value(struct json *j, const char *text)
{
	json_sep(j);
	json_raw(j, text, strlen(text));
}

void json_kv_string(struct json *j, const char *key, const char *s)
{
	json_key(j, key);
	json_string(j, s);
}

void json_kv_int(struct json *j, const char *key, long long v)
{
	json_key(j, key);
	json_int(j, v);
}

void json_kv_uint(struct json *j, const char *key, unsigned long long v)
{
	json_key(j, key);
	json_uint(j, v);
}

void json_kv_bool(struct json *j, const char *key, bool v)
{
	json_key(j, key);
	json_bool(j, v);
}

/* ---- frames ---- */

#define OUT_BUF_SIZE (1 << 20)

static struct {
	int fd;
	char *buf;
	size_t len;
	bool broken;
	bool (*abort_check)(void);
	/* --lines-fd: the JSON lines go straight to these. */
	int line_fds[MAX_LINE_FDS];
	int nline_fds;
	char *lines;
	size_t lines_len;
} out = { .fd = 1 };

void out_set_abort_check(bool (*check)(void))
{
	out.abort_check = check;
}

void out_init(int fd)
{
	struct stat st;

	out.fd = fd;
	out.buf = malloc(OUT_BUF_SIZE);
	if (!out.buf) {
		fprintf(stderr, "pwru-helper: out of memory\n");
		exit(1);
	}
	/*
	 * A reader that pauses (a garbage collection, a busy CPU) stalls us once
	 * the pipe is full, and then the ring buffer fills: a pipe the size of
	 * our own buffer absorbs such pauses. Best effort: the default stays.
	 */
	if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode))
		fcntl(fd, F_SETPIPE_SZ, OUT_BUF_SIZE);
}

/* Writes all of buf to fd; false when the reader is gone (EPIPE) or we were told to stop meanwhile. */
static bool write_all(int fd, const char *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = write(fd, buf + off, len - off);
		if (n < 0) {
			/* A reader that stopped reading must not keep us from stopping. */
			if (errno == EINTR && !(out.abort_check && out.abort_check()))
				continue;
			return false;
		}
		off += n;
	}
	return true;
}

static void flush_lines(void)
{
	for (int i = 0; i < out.nline_fds && out.lines_len && !out.broken; i++)
		if (!write_all(out.line_fds[i], out.lines, out.lines_len))
			out.broken = true;
	out.lines_len = 0;
}

void out_flush(void)
{
	/* Lines first: the frames after them (STATS, END) tell the client they are written. */
	flush_lines();
	if (out.len && !out.broken && !write_all(out.fd, out.buf, out.len))
		out.broken = true; /* EPIPE: the reader is gone */
	out.len = 0;
}

int out_add_line_fd(int fd)
{
	if (out.nline_fds == MAX_LINE_FDS)
		return -1;
	if (!out.lines && !(out.lines = malloc(OUT_BUF_SIZE)))
		return -1;
	out.line_fds[out.nline_fds++] = fd;
	return 0;
}

bool out_lines_direct(void)
{
	return out.nline_fds > 0;
}

bool out_broken(void)
{
	return out.broken;
}

void *out_reserve(uint16_t type, uint32_t len)
{
	struct pwru_frame_header *h;
	size_t need = sizeof(*h) + len;

	if (need > OUT_BUF_SIZE) {
		fprintf(stderr, "pwru-helper: frame of %u bytes too large\n", len);
		exit(1);
	}
	if (out.len + need > OUT_BUF_SIZE)
		out_flush();
	h = (struct pwru_frame_header *)(out.buf + out.len);
	h->len = len;
	h->type = type;
	h->reserved = 0;
	out.len += need;
	return h + 1;
}

void out_line(const char *text, size_t len)
{
	if (!out.nline_fds || len > OUT_BUF_SIZE)
		return; /* --emit json comes with --lines-fd; a line is a few KiB at most */
	if (out.lines_len + len > OUT_BUF_SIZE)
		flush_lines();
	memcpy(out.lines + out.lines_len, text, len);
	out.lines_len += len;
}

void out_frame(uint16_t type, const void *payload, uint32_t len)
{
	memcpy(out_reserve(type, len), payload, len);
}

void out_json(uint16_t type, const struct json *j)
{
	out_frame(type, j->buf, j->len);
}

void out_message(uint16_t type, const char *code, const char *fmt, ...)
{
	char msg[1024];
	struct json j;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "pwru-helper: %s%s\n", type == PWRU_FRAME_WARNING ? "warning: " : "", msg);
	json_init(&j);
	json_begin_object(&j);
	json_kv_string(&j, "code", code);
	json_kv_string(&j, "message", msg);
	json_end_object(&j);
	out_json(type, &j);
	json_free(&j);
	out_flush();
}
