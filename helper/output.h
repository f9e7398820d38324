/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Everything the helper writes: the record stream on stdout (bpf/event.h,
 * docs/record-stream.md) and, with --emit json, the JSON lines on the
 * --lines-fd descriptors. Both are buffered and written without ever
 * blocking: a reader that is slow makes out_pump() write less, and the
 * tracing loop reads the ring buffer less (the kernel then counts what it
 * cannot keep as lost). Every frame of the stream is written here.
 */
#ifndef PWRU_OUTPUT_H
#define PWRU_OUTPUT_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "digest.h"
#include "probes.h"

/* ---- a small JSON writer, for the frames ---- */

struct json {
	struct buf b;
	bool need_comma;
};

void json_free(struct json *j);
void json_begin_object(struct json *j);
void json_end_object(struct json *j);
void json_begin_array(struct json *j);
void json_end_array(struct json *j);
void json_key(struct json *j, const char *key);
void json_string(struct json *j, const char *s);
void json_uint(struct json *j, unsigned long long v);
void json_kv_string(struct json *j, const char *key, const char *s);
void json_kv_int(struct json *j, const char *key, long long v);
void json_kv_uint(struct json *j, const char *key, unsigned long long v);
void json_kv_bool(struct json *j, const char *key, bool v);

/* ---- the outputs ---- */

/* stdout carries the record stream; deflate: compressed (--deflate). */
void out_init(bool deflate);
#define MAX_LINE_FDS 2
/* --lines-fd FD [--lines-name NAME]: where the JSON lines go, and how to name it in an error. */
int out_add_lines(int fd, const char *name);
bool out_lines_direct(void);
/* --lines-stream: the lines go into the record stream as LINES frames instead. */
void out_lines_to_stream(void);

/* Room for a frame of len payload bytes (or lines of len bytes) without waiting for a reader. */
bool out_frame_room(size_t len);
bool out_lines_room(size_t len);
/* A frame's payload to fill in; NULL when there is no room (see out_frame_room). */
void *out_reserve(uint16_t type, uint32_t len);
/* Complete lines, for the --lines-fd descriptors (dropped when there is no room: check first). */
void out_line(const char *text, size_t len);

/*
 * Writes what the outputs take now, without blocking. Lines go first: a
 * frame is written only once every line buffered before it is out, because
 * the frames after the lines (STATS, END) tell the client they are written.
 */
void out_pump(void);
bool out_pending(void);
/* The descriptors to poll for POLLOUT (at most 1 + MAX_LINE_FDS); returns how many. */
int out_pollfds(struct pollfd *fds);
/* With --deflate: ms until what the compressor holds is due to be flushed (by out_pump); -1: nothing due. */
int out_flush_wait_ms(void);
/*
 * Waits until everything is written, as long as the readers keep taking it:
 * gives up after stall_ms without progress (and from then on does not wait
 * again), or when a signal says to hurry (stop_hurry). False when something
 * was left unwritten.
 */
bool out_drain(int stall_ms);
/* No more lines will come (END is written): each line output is closed once what it holds is out. */
void out_lines_end(void);

/* An output that failed: closed by its reader (EPIPE) or a write error. */
struct out_fault {
	const char *name; /* "stdout", or the name given with --lines-name */
	int err;	  /* errno */
	bool stream;	  /* the record stream itself: nothing more can be said to the client */
};
const struct out_fault *out_fault(void);
/* A reader that went away (rather than an output that cannot be written). */
bool out_fault_is_close(const struct out_fault *f);

/* ---- the frames ---- */

/* CLOCK_MONOTONIC and CLOCK_REALTIME, read together at HELLO: events' times come from them. */
struct clocks {
	int64_t mono_ns, real_ns;
};
/* HELLO: always the first frame. */
void out_hello(struct clocks *c);

/* A {code, message} frame (ERROR or WARNING), also written to stderr for people. */
void out_message(uint16_t type, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* PROGRESS, when there is room (it is only news). */
void out_progress(const char *phase, size_t done, size_t total);

/* How long the start-up steps took, ms (READY's steps_ms); total is from main() to READY. */
struct step_times {
	double btf, input, probes, load, netfilter, attach, culprits, total;
};

struct ready_info {
	const char *backend, *backend_note, *func_kind;
	const struct probe_set *probes;
	size_t attached, skipped;
	double attach_ms;
	struct step_times steps;
	const char *filter;
	unsigned int ringbuf_bytes;
	const struct drop_reasons *drop_reasons;
};
void out_ready(const struct ready_info *r);

struct counts {
	uint64_t seen, emitted; /* the kernel's counters */
	uint64_t lost;		/* events of the run that the client will not get (docs/record-stream.md) */
	uint64_t discarded;	/* events after the stop, read and not shown */
	uint64_t bytes_lost;	/* --snaplen: events sent without their bytes (ring buffer full) */
	uint64_t skipped;	/* --max-rate: matching events the kernel did not write */
	bool rate_capped;	/* --max-rate given: STATS and END carry skipped */
};
/* STATS: every second (when there is room) and once at the end (final). */
bool out_stats(const struct counts *c, bool final);

void out_symbol(uint64_t addr, const char *name);
/* STACK: {id, frames}; frames is a JSON array's text. */
void out_stack(int32_t id, const char *frames_json, size_t len);

/* A frame whose payload is j's JSON (culprit.c's CULPRIT), waiting for the reader a while when the stream is full. */
void out_json_frame(uint16_t type, const struct json *j);

void out_digest(uint32_t packets, uint64_t events, const struct drop_count *drops, size_t ndrops);

struct end_info {
	const char *reason;
	const char *output; /* reason output-closed: which output's reader went away */
	uint64_t events, lost, discarded;
	uint64_t skipped; /* with rate_capped (--max-rate) */
	bool rate_capped;
};
void out_end(const struct end_info *e);

#endif
