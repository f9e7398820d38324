// SPDX-License-Identifier: Apache-2.0
#define _GNU_SOURCE /* F_SETPIPE_SZ */
#include "output.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <linux/types.h>
#include "../bpf/event.h"
#include "event_json.h"
#include "stop.h"
#include "version.h"

/* ---- JSON ---- */

static void json_sep(struct json *j)
{
	if (j->need_comma)
		BUF_PUT_LIT(&j->b, ",");
	j->need_comma = true;
}

void json_free(struct json *j)
{
	buf_free(&j->b);
	j->need_comma = false;
}

void json_begin_object(struct json *j)
{
	json_sep(j);
	BUF_PUT_LIT(&j->b, "{");
	j->need_comma = false;
}

void json_end_object(struct json *j)
{
	BUF_PUT_LIT(&j->b, "}");
	j->need_comma = true;
}

void json_begin_array(struct json *j)
{
	json_sep(j);
	BUF_PUT_LIT(&j->b, "[");
	j->need_comma = false;
}

void json_end_array(struct json *j)
{
	BUF_PUT_LIT(&j->b, "]");
	j->need_comma = true;
}

void json_key(struct json *j, const char *key)
{
	json_string(j, key);
	BUF_PUT_LIT(&j->b, ":");
	j->need_comma = false;
}

void json_string(struct json *j, const char *s)
{
	json_sep(j);
	buf_json_string(&j->b, s, strlen(s), TEXT_UTF8);
}

static void json_number(struct json *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void json_number(struct json *j, const char *fmt, ...)
{
	char num[32];
	va_list ap;

	json_sep(j);
	va_start(ap, fmt);
	int n = vsnprintf(num, sizeof(num), fmt, ap);
	va_end(ap);
	buf_put(&j->b, num, (size_t)n);
}

void json_uint(struct json *j, unsigned long long v)
{
	json_number(j, "%llu", v);
}

void json_kv_string(struct json *j, const char *key, const char *s)
{
	json_key(j, key);
	json_string(j, s);
}

void json_kv_int(struct json *j, const char *key, long long v)
{
	json_key(j, key);
	json_number(j, "%lld", v);
}

void json_kv_uint(struct json *j, const char *key, unsigned long long v)
{
	json_key(j, key);
	json_uint(j, v);
}

void json_kv_bool(struct json *j, const char *key, bool v)
{
	json_key(j, key);
	json_sep(j);
	buf_put(&j->b, v ? "true" : "false", v ? 4 : 5);
}

/* ---- outputs ---- */

#define OUT_BUF_SIZE (1 << 20)
/* How long a frame that must be written (an error, the end) waits for a reader that takes nothing. */
#define FRAME_WAIT_MS 2000

/* One output descriptor, written without blocking. */
struct channel {
	int fd;
	int given; /* the descriptor we were given (fd may be our own reopening of it) */
	const char *name;
	bool socket; /* send(MSG_DONTWAIT): per call, whatever the descriptor's flags */
	size_t off;  /* lines: how much of the lines buffer is written here */
	size_t partial; /* bytes written after the last complete line: cut off again when a file fills up */
	bool file;	/* a regular file: it can be cut back to its last complete line */
	bool done;	/* failed or closed: nothing more is written */
	int err;
};

/*
 * Static, so that the frame that reports running out of memory has room; the
 * message buffer holds an ERROR or WARNING's JSON (a 1 KiB message escaped).
 */
static char frame_buf[OUT_BUF_SIZE], line_buf[OUT_BUF_SIZE], message_buf[8192];

static struct {
	struct channel stream; /* stdout: the record stream */
	size_t flen, foff;     /* frames buffered, of which written */
	/*
	 * While lines wait for their reader: the frames queued before the first
	 * of them ([0, fence)) may still go out, and a periodic STATS is put at
	 * the fence, ahead of the frames that wait (the client warns of losses
	 * while a reader sleeps). A frame boundary.
	 */
	size_t fence;
	struct channel lines[MAX_LINE_FDS];
	int nlines;
	bool lines_over; /* no more lines come: each line output is closed once written */
	/*
	 * --lines-stream: lines go into the record stream as LINES frames, each
	 * appended to the last frame while it is the last one and none of it is
	 * written yet (lframe: where its header is), so a burst is one frame.
	 */
	bool lines_stream;
	size_t lframe;
	size_t llen; /* lines buffered; each line channel's off says how far it got */
	uint64_t written; /* bytes written in all: progress, for out_drain */
	bool stalled;	  /* out_drain gave up on a reader that took nothing: it does not wait again */
	struct out_fault fault;
	bool faulted;
} out;

/*
 * --deflate: the record stream leaves compressed (raw deflate, level 1), as
 * one stream that is never finished, only flushed (Z_SYNC_FLUSH), so that the
 * client can inflate every byte that arrived. In Kubernetes mode every byte
 * costs the runner, the container runtime (which also logs it), the kubelet,
 * the API server and the client; compressing here, in the same zlib the runner
 * called through Node, leaves the runner to forward bytes (BENCHMARKS.md,
 * section 9). Frames go into the compressor as they would go to the reader:
 * frame_buf's written part is what the compressor took, and it takes only
 * while what it gave is written, so a slow reader holds frames back exactly as
 * without it. What it took is flushed at most ZFLUSH_MS later (one flush for
 * a flood's many frames: fewer, bigger pieces for every carrier), at once for
 * the frames people wait for (HELLO, READY, messages, progress) and whenever
 * out_drain waits.
 */
#define ZBUF_SIZE (128 << 10)
#define ZFLUSH_MS 10
static unsigned char zbuf[ZBUF_SIZE];

static struct {
	bool on;
	z_stream z;
	size_t len, off;   /* compressed bytes in zbuf, of which written */
	bool unflushed;	   /* taken since the last flush */
	bool flush_now;	   /* flush at the next pump, whenever it is due */
	double due;	   /* when what was taken must be flushed, CLOCK_MONOTONIC ms */
} zs;

/*
 * A pipe or terminal that blocks would hold the helper in write() while a
 * stop is due. Opening it again through /proc gives a description of our
 * own, made non-blocking without touching the flags the client shares
 * (Node's own end, a shell's terminal). Sockets need nothing: send() takes
 * MSG_DONTWAIT per call; files and devices do not block.
 */
static void channel_open(struct channel *c, int fd, const char *name)
{
	struct stat st;
	int flags = fcntl(fd, F_GETFL);

	*c = (struct channel){ .fd = fd, .given = fd, .name = name };
	if (fstat(fd, &st) != 0)
		return;
	c->file = S_ISREG(st.st_mode);
	if (S_ISSOCK(st.st_mode)) {
		c->socket = true;
		return;
	}
	if ((!S_ISFIFO(st.st_mode) && !isatty(fd)) || flags < 0 || (flags & O_NONBLOCK))
		return;
	char path[32];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int own = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (own >= 0)
		c->fd = own;
	else if (S_ISFIFO(st.st_mode))
		fcntl(fd, F_SETFL, flags | O_NONBLOCK); /* no /proc: pipes are non-blocking for Node anyway */
}

static double now_ms(void);

void out_init(bool deflate)
{
	struct stat st;

	channel_open(&out.stream, 1, "stdout");
	/* Without the compressor's memory (~300 KiB) the stream goes plain: the client then says it cannot read it. */
	zs.on = deflate && deflateInit2(&zs.z, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK;
	/*
	 * A reader that pauses (a garbage collection, a busy CPU) stalls the
	 * stream once the pipe is full, and then the ring buffer fills: a pipe
	 * the size of our own buffer absorbs such pauses. Best effort.
	 */
	if (fstat(1, &st) == 0 && S_ISFIFO(st.st_mode))
		fcntl(1, F_SETPIPE_SZ, OUT_BUF_SIZE);
}

int out_add_lines(int fd, const char *name)
{
	if (out.nlines == MAX_LINE_FDS)
		return -1;
	channel_open(&out.lines[out.nlines++], fd, name);
	return 0;
}

bool out_lines_direct(void)
{
	return out.nlines > 0;
}

void out_lines_to_stream(void)
{
	out.lines_stream = true;
}

static void fail(struct channel *c, int err, bool stream)
{
	c->done = true;
	c->err = err;
	if (!out.faulted) {
		out.faulted = true;
		out.fault = (struct out_fault){ .name = c->name, .err = err, .stream = stream };
	}
}

const struct out_fault *out_fault(void)
{
	return out.faulted ? &out.fault : NULL;
}

bool out_fault_is_close(const struct out_fault *f)
{
	return f->err == EPIPE || f->err == ECONNRESET;
}

/* Bytes written (0 when the reader is not ready), or -errno. */
static ssize_t channel_write(struct channel *c, const char *p, size_t n)
{
	for (;;) {
		ssize_t w = c->socket ? send(c->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL) : write(c->fd, p, n);

		if (w >= 0)
			return w;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		return -errno;
	}
}

/*
 * A file that cannot take more (ENOSPC, EFBIG, EIO) may hold the start of a
 * line: it is cut back to its last complete line, so that what is there reads.
 */
static void cut_partial_line(struct channel *c)
{
	off_t end = lseek(c->fd, 0, SEEK_CUR);

	if (c->file && c->partial && end >= (off_t)c->partial && ftruncate(c->fd, end - (off_t)c->partial) == 0)
		lseek(c->fd, end - (off_t)c->partial, SEEK_SET);
}

/* Writes data[*off, len) to c until it would block; false on a write error (c is then done). */
static bool channel_pump(struct channel *c, const char *data, size_t *off, size_t len, bool stream)
{
	while (!c->done && *off < len) {
		ssize_t w = channel_write(c, data + *off, len - *off);

		if (w < 0) {
			if (!stream)
				cut_partial_line(c);
			fail(c, (int)-w, stream);
			return false;
		}
		if (w == 0)
			break;
		const char *nl = memrchr(data + *off, '\n', (size_t)w);
		c->partial = nl ? (size_t)(data + *off + w - (nl + 1)) : c->partial + (size_t)w;
		*off += (size_t)w;
		out.written += (size_t)w;
	}
	return true;
}

/* The record stream: frame_buf[out.foff, limit) to stdout, through the compressor with --deflate. */
static void stream_pump(size_t limit)
{
	if (!zs.on) {
		channel_pump(&out.stream, frame_buf, &out.foff, limit, true);
		return;
	}
	while (!out.stream.done) {
		if (zs.off < zs.len && (channel_pump(&out.stream, (const char *)zbuf, &zs.off, zs.len, true), zs.off < zs.len))
			return; /* the reader takes no more now */
		zs.off = zs.len = 0;
		bool more = out.foff < limit;
		if (more && !zs.unflushed) {
			zs.unflushed = true;
			zs.due = now_ms() + ZFLUSH_MS;
		}
		bool flush = zs.unflushed && (zs.flush_now || now_ms() >= zs.due);
		if (!more && !flush)
			return;
		zs.z.next_in = (unsigned char *)frame_buf + out.foff;
		zs.z.avail_in = (uInt)(limit - out.foff);
		zs.z.next_out = zbuf;
		zs.z.avail_out = ZBUF_SIZE;
		/* Z_STREAM_ERROR cannot happen with a stream that was set up; Z_BUF_ERROR is "nothing to do". */
		deflate(&zs.z, flush ? Z_SYNC_FLUSH : Z_NO_FLUSH);
		out.foff = limit - zs.z.avail_in;
		zs.len = ZBUF_SIZE - zs.z.avail_out;
		/* A flush is complete when it left room behind it (else it goes on at the next turn). */
		if (flush && zs.z.avail_out > 0 && zs.z.avail_in == 0)
			zs.unflushed = zs.flush_now = false;
		if (zs.len == 0)
			return;
	}
}

/* Flushes what the compressor holds at the next pump. */
static void flush_soon(void)
{
	zs.flush_now = true;
}

static bool stream_pending(size_t limit)
{
	return !out.stream.done && (out.foff < limit || zs.off < zs.len || zs.unflushed);
}

int out_flush_wait_ms(void)
{
	if (!zs.on || !zs.unflushed || out.stream.done || zs.off < zs.len)
		return -1;
	double left = zs.due - now_ms();
	return left > 0 ? (int)left + 1 : 0;
}

static bool lines_pending(void)
{
	for (int i = 0; i < out.nlines; i++)
		if (!out.lines[i].done && out.lines[i].off < out.llen)
			return true;
	return false;
}

/* Lets go of the line outputs: a reader downstream (`| jq`) sees their end without waiting for the helper's exit. */
static void release_lines(void)
{
	for (int i = 0; i < out.nlines; i++) {
		struct channel *c = &out.lines[i];

		if (c->fd < 0)
			continue;
		if (c->fd != c->given)
			close(c->fd);
		close(c->given);
		c->fd = c->given = -1;
		c->done = true;
	}
}

void out_lines_end(void)
{
	out.lines_over = true;
	out_pump();
}

void out_pump(void)
{
	for (int i = 0; i < out.nlines; i++)
		channel_pump(&out.lines[i], line_buf, &out.lines[i].off, out.llen, false);
	if (lines_pending()) {
		stream_pump(out.fence);
		return;
	}
	if (out.lines_over)
		release_lines();
	out.llen = 0;
	for (int i = 0; i < out.nlines; i++)
		out.lines[i].off = 0;
	stream_pump(out.flen);
	if (out.foff == out.flen || out.stream.done)
		out.flen = out.foff = 0, out.lframe = OUT_BUF_SIZE;
}

bool out_pending(void)
{
	return lines_pending() || stream_pending(out.flen);
}

int out_pollfds(struct pollfd *fds)
{
	int n = 0;

	for (int i = 0; i < out.nlines; i++)
		if (!out.lines[i].done && out.lines[i].off < out.llen)
			fds[n++] = (struct pollfd){ .fd = out.lines[i].fd, .events = POLLOUT };
	/* What the compressor holds until its flush is due is no reason to wake: out_flush_wait_ms() is. */
	if (!out.stream.done && (zs.off < zs.len || out.foff < (n ? out.fence : out.flen)))
		fds[n++] = (struct pollfd){ .fd = out.stream.fd, .events = POLLOUT };
	return n;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

bool out_drain(int stall_ms)
{
	struct pollfd fds[1 + MAX_LINE_FDS + STOP_NFDS];
	double last = now_ms();
	uint64_t written = out.written;

	for (;;) {
		flush_soon();
		out_pump();
		if (!out_pending())
			return true;
		if (out.stalled || stop_hurry())
			return false; /* asked (again) to stop: no more waiting */
		if (out.written != written) {
			written = out.written;
			last = now_ms();
		}
		double left = last + stall_ms - now_ms();
		if (left <= 0) {
			out.stalled = true;
			return false;
		}
		int n = out_pollfds(fds);
		stop_pollfds(fds + n);
		if (poll(fds, n + STOP_NFDS, (int)left + 1) < 0 && errno != EINTR)
			return false;
		stop_after_poll(fds + n);
	}
}

/* Moves what is left to write to the front, for room behind it. */
static void compact_frames(void)
{
	if (out.foff == 0)
		return;
	memmove(frame_buf, frame_buf + out.foff, out.flen - out.foff);
	out.flen -= out.foff;
	out.fence = out.fence > out.foff ? out.fence - out.foff : 0;
	out.lframe = out.lframe >= out.foff ? out.lframe - out.foff : OUT_BUF_SIZE;
	out.foff = 0;
}

static void compact_lines(void)
{
	size_t low = out.llen;

	for (int i = 0; i < out.nlines; i++)
		if (!out.lines[i].done && out.lines[i].off < low)
			low = out.lines[i].off;
	if (low == 0)
		return;
	memmove(line_buf, line_buf + low, out.llen - low);
	out.llen -= low;
	for (int i = 0; i < out.nlines; i++)
		out.lines[i].off = out.lines[i].off > low ? out.lines[i].off - low : 0;
}

bool out_frame_room(size_t len)
{
	size_t need = sizeof(struct pwru_frame_header) + len;

	if (out.stream.done)
		return true; /* nothing is written any more: anything fits */
	if (out.flen + need <= OUT_BUF_SIZE)
		return true;
	compact_frames();
	return out.flen + need <= OUT_BUF_SIZE;
}

bool out_lines_room(size_t len)
{
	if (out.lines_stream)
		return out_frame_room(len);
	if (out.llen + len <= OUT_BUF_SIZE)
		return true;
	compact_lines();
	return out.llen + len <= OUT_BUF_SIZE;
}

void *out_reserve(uint16_t type, uint32_t len)
{
	struct pwru_frame_header *h;

	if (!out_frame_room(len))
		return NULL;
	if (out.stream.done)
		out.flen = out.foff = out.fence = 0, out.lframe = OUT_BUF_SIZE; /* keep taking frames, and forget them */
	h = (struct pwru_frame_header *)(frame_buf + out.flen);
	h->len = len;
	h->type = type;
	h->reserved = 0;
	out.flen += sizeof(*h) + len;
	return h + 1;
}

/*
 * A LINES frame grows to this at most: the client handles a frame whole, and
 * a reader that waits for a large one holds all of it (and its pieces).
 */
#define LINES_FRAME_MAX (64 << 10)

/* --lines-stream: the lines appended to the last LINES frame when nothing of it is written yet, else a new one. */
static void stream_line(const char *text, size_t len)
{
	struct pwru_frame_header *h = (struct pwru_frame_header *)(frame_buf + out.lframe);

	if (out.stream.done)
		return;
	if (out.lframe >= out.foff && out.lframe < out.flen && h->type == PWRU_FRAME_LINES &&
	    out.lframe + sizeof(*h) + h->len == out.flen && h->len + len <= LINES_FRAME_MAX &&
	    out.flen + len <= OUT_BUF_SIZE) {
		memcpy(frame_buf + out.flen, text, len);
		h->len += (uint32_t)len;
		out.flen += len;
		return;
	}
	char *p = out_reserve(PWRU_FRAME_LINES, (uint32_t)len);
	if (!p)
		return;
	memcpy(p, text, len);
	out.lframe = (size_t)(p - frame_buf) - sizeof(*h);
}

void out_line(const char *text, size_t len)
{
	if (out.lines_stream) {
		stream_line(text, len);
		return;
	}
	if (!out.nlines || !out_lines_room(len))
		return;
	if (!lines_pending())
		out.fence = out.flen;
	memcpy(line_buf + out.llen, text, len);
	out.llen += len;
}

/* ---- frames ---- */

/* Appends a JSON frame; when the stream is full, waits for the reader if asked to. */
static bool put_frame(uint16_t type, const struct json *j, bool wait)
{
	if (out_of_memory())
		return false; /* the JSON may be cut short: only the out_of_memory ERROR goes out now */
	if (!out_frame_room(j->b.len) && (!wait || !out_drain(FRAME_WAIT_MS)))
		return false;
	void *p = out_reserve(type, (uint32_t)j->b.len);
	if (!p)
		return false;
	memcpy(p, j->b.p, j->b.len);
	return true;
}

/* A frame that need not wait for the lines: put at the fence, ahead of the frames that do (no waiting for room). */
static bool put_frame_at_fence(uint16_t type, const struct json *j)
{
	size_t need = sizeof(struct pwru_frame_header) + j->b.len;

	if (out_of_memory() || out.stream.done || !out_frame_room(j->b.len))
		return false;
	char *at = frame_buf + out.fence;
	memmove(at + need, at, out.flen - out.fence);
	struct pwru_frame_header h = { .len = (uint32_t)j->b.len, .type = type };
	memcpy(at, &h, sizeof(h));
	memcpy(at + sizeof(h), j->b.p, j->b.len);
	out.flen += need;
	out.fence += need;
	return true;
}

void out_hello(struct clocks *c)
{
	struct utsname u;
	struct timespec mono, real;
	char num[32];
	struct json j = { 0 };

	uname(&u);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	clock_gettime(CLOCK_REALTIME, &real);
	c->mono_ns = (int64_t)mono.tv_sec * 1000000000LL + mono.tv_nsec;
	c->real_ns = (int64_t)real.tv_sec * 1000000000LL + real.tv_nsec;
	json_begin_object(&j);
	json_kv_int(&j, "stream", PWRU_STREAM_VERSION);
	json_kv_int(&j, "event_version", PWRU_EVENT_VERSION);
	json_kv_int(&j, "event_size", sizeof(struct pwru_event));
	json_kv_string(&j, "helper", PWRU_HELPER_VERSION);
	json_kv_string(&j, "kernel", u.release);
	json_kv_string(&j, "arch", u.machine);
	json_kv_string(&j, "hostname", u.nodename);
	snprintf(num, sizeof(num), "%lld", (long long)c->mono_ns);
	json_kv_string(&j, "mono_ns", num);
	snprintf(num, sizeof(num), "%lld", (long long)c->real_ns);
	json_kv_string(&j, "real_ns", num);
	json_kv_int(&j, "json_schema", PWRU_JSON_SCHEMA_VERSION);
	json_end_object(&j);
	put_frame(PWRU_FRAME_HELLO, &j, true);
	json_free(&j);
	flush_soon();
	out_pump();
}

/* Never allocates: it also says that memory ran out. */
void out_message(uint16_t type, const char *code, const char *fmt, ...)
{
	char msg[1024]; /* escaped, at most 6 KiB: message_buf never grows */
	struct buf b = { .p = message_buf, .cap = sizeof(message_buf) };
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "pwru-helper: %s%s\n", type == PWRU_FRAME_WARNING ? "warning: " : "", msg);
	BUF_PUT_LIT(&b, "{\"code\":");
	buf_json_string(&b, code, strlen(code), TEXT_UTF8);
	BUF_PUT_LIT(&b, ",\"message\":");
	buf_json_string(&b, msg, strlen(msg), TEXT_UTF8);
	BUF_PUT_LIT(&b, "}");
	if (out_frame_room(b.len) || out_drain(FRAME_WAIT_MS)) {
		void *p = out_reserve(type, (uint32_t)b.len);
		if (p)
			memcpy(p, b.p, b.len);
	}
	flush_soon();
	out_pump();
}

void out_progress(const char *phase, size_t done, size_t total)
{
	struct json j = { 0 };

	json_begin_object(&j);
	json_kv_string(&j, "phase", phase);
	json_kv_uint(&j, "done", done);
	json_kv_uint(&j, "total", total);
	json_kv_string(&j, "message", strcmp(phase, "attach") == 0 ? "attaching probes" : "detaching probes");
	json_end_object(&j);
	put_frame(PWRU_FRAME_PROGRESS, &j, false);
	json_free(&j);
	flush_soon();
	out_pump();
}

void out_ready(const struct ready_info *r)
{
	struct json j = { 0 };
	char key[16];

	json_begin_object(&j);
	json_kv_string(&j, "backend", r->backend);
	json_kv_string(&j, "backend_note", r->backend_note);
	json_key(&j, "probes");
	json_begin_array(&j);
	for (size_t id = 0; id < r->probes->cnt; id++) {
		const struct probe *p = &r->probes->v[id];

		if (!p->attached)
			continue;
		json_begin_object(&j);
		json_kv_uint(&j, "id", id);
		json_kv_string(&j, "name", p->name);
		json_kv_string(&j, "kind", p->kind == PROBE_TRACEPOINT ? "tracepoint" : r->func_kind);
		json_end_object(&j);
	}
	json_end_array(&j);
	json_kv_uint(&j, "attached", r->attached);
	json_kv_uint(&j, "skipped", r->skipped);
	json_kv_int(&j, "attach_ms", (long long)(r->attach_ms + 0.5));
	json_key(&j, "steps_ms");
	json_begin_object(&j);
	json_kv_int(&j, "btf", (long long)(r->steps.btf + 0.5));
	json_kv_int(&j, "input", (long long)(r->steps.input + 0.5));
	json_kv_int(&j, "probes", (long long)(r->steps.probes + 0.5));
	json_kv_int(&j, "load", (long long)(r->steps.load + 0.5));
	json_kv_int(&j, "netfilter", (long long)(r->steps.netfilter + 0.5));
	json_kv_int(&j, "attach", (long long)(r->steps.attach + 0.5));
	json_kv_int(&j, "culprits", (long long)(r->steps.culprits + 0.5));
	json_kv_int(&j, "total", (long long)(r->steps.total + 0.5));
	json_end_object(&j);
	json_kv_string(&j, "filter", r->filter);
	json_kv_uint(&j, "ringbuf_bytes", r->ringbuf_bytes);
	json_key(&j, "drop_reasons");
	json_begin_object(&j);
	for (size_t i = 0; i < r->drop_reasons->cnt; i++) {
		snprintf(key, sizeof(key), "%u", r->drop_reasons->v[i].value);
		json_kv_string(&j, key, r->drop_reasons->v[i].name);
	}
	json_end_object(&j);
	json_end_object(&j);
	put_frame(PWRU_FRAME_READY, &j, true);
	json_free(&j);
	flush_soon();
	out_pump();
}

bool out_stats(const struct counts *c, bool final)
{
	struct json j = { 0 };

	json_begin_object(&j);
	json_kv_uint(&j, "seen", c->seen);
	json_kv_uint(&j, "emitted", c->emitted);
	json_kv_uint(&j, "lost", c->lost);
	json_kv_uint(&j, "discarded", c->discarded);
	if (c->bytes_lost)
		json_kv_uint(&j, "bytes_lost", c->bytes_lost);
	if (c->rate_capped)
		json_kv_uint(&j, "skipped", c->skipped);
	json_kv_bool(&j, "final", final);
	json_end_object(&j);
	/* A periodic STATS is only news: it waits for no reader, not even the lines' (put at the fence). */
	bool ok = final || !lines_pending() ? put_frame(PWRU_FRAME_STATS, &j, final)
					    : put_frame_at_fence(PWRU_FRAME_STATS, &j);
	json_free(&j);
	return ok;
}

void out_symbol(uint64_t addr, const char *name)
{
	struct json j = { 0 };
	char hex[24];

	snprintf(hex, sizeof(hex), "0x%llx", (unsigned long long)addr);
	json_begin_object(&j);
	json_kv_string(&j, "addr", hex);
	json_kv_string(&j, "name", name);
	json_end_object(&j);
	put_frame(PWRU_FRAME_SYMBOL, &j, false);
	json_free(&j);
}

void out_stack(int32_t id, const char *frames_json, size_t len)
{
	struct json j = { 0 };

	json_begin_object(&j);
	json_kv_int(&j, "id", id);
	json_key(&j, "frames");
	buf_put(&j.b, frames_json, len);
	json_end_object(&j);
	put_frame(PWRU_FRAME_STACK, &j, false);
	json_free(&j);
}

void out_json_frame(uint16_t type, const struct json *j)
{
	put_frame(type, j, true);
}

void out_digest(uint32_t packets, uint64_t events, const struct drop_count *drops, size_t ndrops)
{
	struct json j = { 0 };

	json_begin_object(&j);
	json_kv_uint(&j, "packets", packets);
	json_kv_uint(&j, "events", events);
	json_key(&j, "drops");
	json_begin_array(&j);
	for (size_t i = 0; i < ndrops; i++) {
		json_begin_object(&j);
		json_kv_string(&j, "reason", drops[i].reason);
		json_kv_string(&j, "at", drops[i].at);
		json_kv_uint(&j, "count", drops[i].count);
		json_end_object(&j);
	}
	json_end_array(&j);
	json_end_object(&j);
	put_frame(PWRU_FRAME_DIGEST, &j, true);
	json_free(&j);
}

void out_end(const struct end_info *e)
{
	struct json j = { 0 };

	json_begin_object(&j);
	json_kv_string(&j, "reason", e->reason);
	if (e->output)
		json_kv_string(&j, "output", e->output);
	json_kv_uint(&j, "events", e->events);
	json_kv_uint(&j, "lost", e->lost);
	json_kv_uint(&j, "discarded", e->discarded);
	if (e->rate_capped)
		json_kv_uint(&j, "skipped", e->skipped);
	json_end_object(&j);
	put_frame(PWRU_FRAME_END, &j, true);
	json_free(&j);
}
