/* SPDX-License-Identifier: Apache-2.0 */
/* The record stream on stdout (bpf/event.h): buffered frames and a tiny JSON writer. */
#ifndef PWRU_OUTPUT_H
#define PWRU_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json {
	char *buf;
	size_t len, cap;
	bool need_comma;
};

void json_init(struct json *j);
void json_free(struct json *j);
void json_begin_object(struct json *j);
void json_end_object(struct json *j);
void json_begin_array(struct json *j);
void json_end_array(struct json *j);
void json_key(struct json *j, const char *key);
void json_string(struct json *j, const char *s);
void json_int(struct json *j, long long v);
void json_uint(struct json *j, unsigned long long v);
void json_bool(struct json *j, bool v);
/* A value that is already JSON text. */
void json_raw_value(struct json *j, const char *text);
/* Shorthands for "key": value inside an object. */
void json_kv_string(struct json *j, const char *key, const char *s);
void json_kv_int(struct json *j, const char *key, long long v);
void json_kv_uint(struct json *j, const char *key, unsigned long long v);
void json_kv_bool(struct json *j, const char *key, bool v);

/* Frames are buffered; out_flush() writes them. A write error (the reader went
 * away) is remembered and reported by out_broken(). */
void out_init(int fd);
void *out_reserve(uint16_t type, uint32_t len);
void out_frame(uint16_t type, const void *payload, uint32_t len);
void out_json(uint16_t type, const struct json *j);
/* Appends complete text lines to those written to the --lines-fd descriptors (before the frames, at each flush). */
void out_line(const char *text, size_t len);
#define MAX_LINE_FDS 2
int out_add_line_fd(int fd);
bool out_lines_direct(void);
void out_flush(void);
/* When a write is interrupted and check() says so, the rest is dropped and the stream marked broken. */
void out_set_abort_check(bool (*check)(void));
bool out_broken(void);

/* A {code, message} frame (ERROR or WARNING), also written to stderr for people. */
void out_message(uint16_t type, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
