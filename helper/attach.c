// SPDX-License-Identifier: Apache-2.0
#include "attach.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "../bpf/kmulti.h"
#include "link_handoff.h"
#include "output.h"
#include "pwru.skel.h"
#include "stop.h"

const char *backend_name(enum backend b)
{
	switch (b) {
	case BACKEND_KPROBE_MULTI:
		return "kprobe-multi";
	case BACKEND_KPROBE:
		return "kprobe";
	case BACKEND_TRACEPOINT:
		return "tracepoint";
	default:
		return "auto";
	}
}

int backend_parse(const char *s, enum backend *out)
{
	static const enum backend all[] = { BACKEND_AUTO, BACKEND_KPROBE_MULTI, BACKEND_KPROBE, BACKEND_TRACEPOINT };

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (strcmp(s, backend_name(all[i])) == 0) {
			*out = all[i];
			return 0;
		}
	}
	return -EINVAL;
}

/* r0 = 0; exit */
static const struct bpf_insn trivial_prog[] = {
	{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
	{ .code = BPF_JMP | BPF_EXIT },
};

/*
 * The test probes, kept open until the answer is out: removing one waits on
 * the kernel (RCU grace periods, ~0.15 s under emulation), which nothing
 * before the real attach needs to wait for (detect_thread()).
 */
struct test_probes {
	int fds[2];
	int n;
};

static void test_probe_keep(struct test_probes *t, int fd)
{
	if (t && t->n < 2)
		t->fds[t->n++] = fd;
	else
		close(fd);
}

static void test_probes_remove(struct test_probes *t)
{
	while (t->n > 0)
		close(t->fds[--t->n]);
}

static void detect_kprobe_multi(struct backend_support *s, const char *func, struct test_probes *t)
{
	LIBBPF_OPTS(bpf_prog_load_opts, popts, .expected_attach_type = BPF_TRACE_KPROBE_MULTI);
	LIBBPF_OPTS(bpf_link_create_opts, lopts);
	const char *syms[1] = { func };
	int prog, link;

	prog = bpf_prog_load(BPF_PROG_TYPE_KPROBE, "pwru_probe", "GPL", trivial_prog, 2, &popts);
	if (prog < 0) {
		snprintf(s->kprobe_multi_why, sizeof(s->kprobe_multi_why), "loading a kprobe-multi program: %s",
			 strerror(errno));
		return;
	}
	lopts.kprobe_multi.syms = syms;
	lopts.kprobe_multi.cnt = 1;
	link = bpf_link_create(prog, 0, BPF_TRACE_KPROBE_MULTI, &lopts);
	if (link < 0) {
		snprintf(s->kprobe_multi_why, sizeof(s->kprobe_multi_why), "attaching kprobe-multi to %s: %s%s", func,
			 strerror(errno), errno == EOPNOTSUPP ? " (kernel without CONFIG_FPROBE)" : "");
	} else {
		s->kprobe_multi = true;
		test_probe_keep(t, link);
	}
	close(prog);
}

#define KPROBE_PMU_TYPE "/sys/bus/event_source/devices/kprobe/type"

/* The kprobe PMU's perf event type; -ENOENT without kprobes. */
static int kprobe_pmu_type(void)
{
	char buf[32] = { 0 };
	int fd = open(KPROBE_PMU_TYPE, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? atoi(buf) : -EIO;
}

static void detect_kprobe(struct backend_support *s, const char *func, struct test_probes *t)
{
	struct perf_event_attr attr = { .size = sizeof(attr) };
	int fd, type = kprobe_pmu_type();

	if (type == -ENOENT) {
		snprintf(s->kprobe_why, sizeof(s->kprobe_why), "no kprobe PMU (kernel without CONFIG_KPROBES?)");
		return;
	}
	if (type < 0) {
		snprintf(s->kprobe_why, sizeof(s->kprobe_why), "cannot read the kprobe PMU type");
		return;
	}
	attr.type = type;
	attr.config1 = (__u64)(unsigned long)func;
	attr.config2 = 0;
	fd = syscall(__NR_perf_event_open, &attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC);
	if (fd < 0) {
		snprintf(s->kprobe_why, sizeof(s->kprobe_why), "creating a kprobe on %s: %s", func, strerror(errno));
		return;
	}
	test_probe_keep(t, fd);
	s->kprobe = true;
}

static void detect_tracepoint(struct backend_support *s)
{
	if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
		snprintf(s->tracepoint_why, sizeof(s->tracepoint_why), "no kernel BTF (/sys/kernel/btf/vmlinux)");
		return;
	}
	s->tracepoint = true;
}

bool backends_may_have_kprobes(void)
{
	return access(KPROBE_PMU_TYPE, F_OK) == 0;
}

/* Functions every kernel with networking has, to try a test attach on. */
static const char *const known_funcs[] = { "kfree_skbmem", "__kfree_skb", "ip_rcv", "netif_receive_skb" };
#define N_KNOWN (sizeof(known_funcs) / sizeof(known_funcs[0]))

static void detect_now(struct backend_support *s, bool try_kprobes, bool want_kprobe, struct test_probes *t)
{
	memset(s, 0, sizeof(*s));
	detect_tracepoint(s);
	if (!try_kprobes) {
		snprintf(s->kprobe_multi_why, sizeof(s->kprobe_multi_why), "not tried");
		snprintf(s->kprobe_why, sizeof(s->kprobe_why), "not tried");
		return;
	}
	/* A function may be missing or untraceable on some kernel: one success is enough. */
	for (size_t i = 0; i < N_KNOWN && !s->kprobe_multi; i++)
		detect_kprobe_multi(s, known_funcs[i], t);
	/*
	 * A test kprobe costs RCU grace periods to remove (~0.1 s under
	 * emulation): not worth it where kprobe-multi works, which is chosen then.
	 */
	if (s->kprobe_multi && !want_kprobe)
		snprintf(s->kprobe_why, sizeof(s->kprobe_why), "not tried (kprobe-multi is available)");
	for (size_t i = 0; i < N_KNOWN && !s->kprobe && !(s->kprobe_multi && !want_kprobe); i++)
		detect_kprobe(s, known_funcs[i], t);
	s->func_ip = libbpf_probe_bpf_helper(BPF_PROG_TYPE_KPROBE, BPF_FUNC_get_func_ip, NULL) > 0;
}

/*
 * The detection begun early, if it was (backends_detect_start()). Its answer
 * is published (done) before its test probes are removed: the thread goes on
 * removing them, detached, while the caller loads and attaches.
 */
static struct {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool started, done, try_kprobes, want_kprobe;
	struct backend_support s;
} detect_bg = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void *detect_thread(void *arg)
{
	struct test_probes t = { .n = 0 };

	(void)arg;
	detect_now(&detect_bg.s, detect_bg.try_kprobes, detect_bg.want_kprobe, &t);
	pthread_mutex_lock(&detect_bg.lock);
	detect_bg.done = true;
	pthread_cond_broadcast(&detect_bg.cond);
	pthread_mutex_unlock(&detect_bg.lock);
	test_probes_remove(&t);
	return NULL;
}

void backends_detect_start(bool try_kprobes, bool want_kprobe)
{
	sigset_t all, was;

	detect_bg.try_kprobes = try_kprobes;
	detect_bg.want_kprobe = want_kprobe;
	/* Signals stay with the main thread, which watches for them. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &was);
	detect_bg.started = pthread_create(&detect_bg.thread, NULL, detect_thread, NULL) == 0;
	pthread_sigmask(SIG_SETMASK, &was, NULL);
	if (detect_bg.started)
		pthread_detach(detect_bg.thread);
}

void backends_detect(struct backend_support *s, bool try_kprobes, bool want_kprobe)
{
	if (detect_bg.started) {
		pthread_mutex_lock(&detect_bg.lock);
		while (!detect_bg.done)
			pthread_cond_wait(&detect_bg.cond, &detect_bg.lock);
		pthread_mutex_unlock(&detect_bg.lock);
		detect_bg.started = false;
		if (detect_bg.try_kprobes == try_kprobes && detect_bg.want_kprobe == want_kprobe) {
			*s = detect_bg.s;
			return;
		}
	}
	detect_now(s, try_kprobes, want_kprobe, NULL);
}

/* Makes room for one more element in a growing array. */
static int reserve_one(void **v, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return 0;
	size_t grown = *cap ? *cap * 2 : 64;
	void *p = realloc(*v, grown * elem);

	if (!p)
		return -ENOMEM;
	*v = p;
	*cap = grown;
	return 0;
}

static int add_link(struct attachment *att, struct bpf_link *link)
{
	if (reserve_one((void **)&att->links, &att->cap, att->nlinks, sizeof(*att->links)))
		return -ENOMEM;
	att->links[att->nlinks++] = link;
	return 0;
}

static int add_raw(struct attachment *att, int fd)
{
	if (reserve_one((void **)&att->raw_fds, &att->raw_cap, att->nraw, sizeof(*att->raw_fds)))
		return -ENOMEM;
	att->raw_fds[att->nraw++] = fd;
	return 0;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static bool (*should_stop)(void);

static bool stopping(void)
{
	return should_stop && should_stop();
}

/* Reports progress at most every 100 ms, and at the end. */
static void report(attach_progress_fn progress, const char *phase, size_t done, size_t total)
{
	static double last;
	double t = now_ms();

	if (!progress || (done != total && t - last < 100))
		return;
	last = t;
	progress(phase, done, total);
}

/*
 * Running out of descriptors or memory is the run's failure, never a probe
 * the kernel refused: counted as "skipped", it once left 976 of ~1470
 * functions unprobed and the ring buffer unreadable after READY.
 */
static bool is_fatal(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOMEM;
}

static int fatal_message(int err, size_t done, size_t total, char *msg, size_t msglen)
{
	struct rlimit rl = { 0 };

	getrlimit(RLIMIT_NOFILE, &rl);
	if (err == EMFILE || err == ENFILE)
		snprintf(msg, msglen,
			 "attaching probes: out of file descriptors after %zu of %zu probes (%s; the limit is %llu, a "
			 "plain kprobe holds one or two): raise `ulimit -n`, or use fewer functions (--filter-func)",
			 done, total, strerror(err), (unsigned long long)rl.rlim_cur);
	else
		snprintf(msg, msglen, "attaching probes after %zu of %zu: %s", done, total, strerror(err));
	return -err;
}

/*
 * Each plain kprobe holds two descriptors (its perf event and its link; 5.10:
 * the perf event only), and
 * the common default soft limit is 1024: raise it to what the probes need
 * (pwru sets 8192), the hard limit too when that is below (root may).
 */
static void raise_nofile(size_t needed)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= needed)
		return;
	if (rl.rlim_max < needed) {
		struct rlimit both = { needed, needed };

		if (setrlimit(RLIMIT_NOFILE, &both) == 0)
			return;
		needed = rl.rlim_max; /* as far as we may: running out is then an error, said so */
	}
	rl.rlim_cur = needed;
	setrlimit(RLIMIT_NOFILE, &rl);
}

/* The tracepoints' programs being loaded on several threads (see load_tracepoints). */
struct tp_loads {
	struct pwru_bpf *skel;
	struct probe_set *probes;
	int *fds; /* per probe id: the program, -errno, or 0 when not loaded here */
	_Atomic size_t next;
};

static void *tp_load_worker(void *arg)
{
	struct tp_loads *l = arg;
	char err[8]; /* a load that fails is done again by the caller, for the words */

	for (;;) {
		size_t id = atomic_fetch_add(&l->next, 1);

		if (id >= l->probes->cnt)
			break;
		if (l->probes->v[id].kind == PROBE_TRACEPOINT)
			l->fds[id] = loader_tracepoint_fd(l->skel, l->probes, id, err, sizeof(err));
	}
	return NULL;
}

/*
 * Each tracepoint gets its own copy of a program, which the kernel verifies
 * (~5 ms each, most of a tracepoint start): the copies are loaded on two
 * threads. fds gets each probe's program, or 0 where it was not loaded.
 */
static void load_tracepoints(struct pwru_bpf *skel, struct probe_set *probes, int *fds)
{
	struct tp_loads l = { .skel = skel, .probes = probes, .fds = fds };
	sigset_t all, was;
	pthread_t other;

	/* Signals stay with this thread, which polls for them: the other one starts with them blocked. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &was);
	bool two = pthread_create(&other, NULL, tp_load_worker, &l) == 0;
	pthread_sigmask(SIG_SETMASK, &was, NULL);
	tp_load_worker(&l);
	if (two)
		pthread_join(other, NULL);
}

static int attach_loaded_tracepoints(struct pwru_bpf *skel, struct probe_set *probes, const int *fds,
				     struct attachment *att, attach_progress_fn progress, size_t total, size_t *done,
				     char *err, size_t errlen);

static int attach_tracepoints(struct pwru_bpf *skel, struct probe_set *probes, struct attachment *att,
			      attach_progress_fn progress, size_t total, size_t *done, char *err, size_t errlen)
{
	int *fds = calloc(probes->cnt ? probes->cnt : 1, sizeof(*fds));

	if (!fds)
		return -ENOMEM;
	load_tracepoints(skel, probes, fds);
	int ret = attach_loaded_tracepoints(skel, probes, fds, att, progress, total, done, err, errlen);
	free(fds);
	return ret;
}

static int attach_loaded_tracepoints(struct pwru_bpf *skel, struct probe_set *probes, const int *fds,
				     struct attachment *att, attach_progress_fn progress, size_t total, size_t *done,
				     char *err, size_t errlen)
{
	for (size_t id = 0; id < probes->cnt; id++) {
		struct probe *p = &probes->v[id];

		if (p->kind != PROBE_TRACEPOINT)
			continue;
		if (stopping())
			return -EINTR;
		/* A load that failed on a worker is done again here: its error's words are for this err. */
		int fd = fds[id] > 0 ? fds[id] : loader_tracepoint_fd(skel, probes, id, err, errlen);
		if (fd < 0 && is_fatal(-fd))
			return fatal_message(-fd, *done, total, err, errlen);
		if (fd < 0)
			return fd;
		int link = bpf_raw_tracepoint_open(NULL, fd);
		if (link < 0 && is_fatal(errno)) {
			return fatal_message(errno, *done, total, err, errlen);
		} else if (link < 0) {
			/* Some tracepoints exist in BTF but are compiled out: skip those. */
			att->skipped++;
		} else {
			if (add_raw(att, link) < 0) {
				close(link);
				return -ENOMEM;
			}
			p->attached = true;
			att->attached++;
		}
		report(progress, "attach", ++*done, total);
	}
	return 0;
}

/*
 * Attaches one kprobe-multi link over the functions' addresses (as pwru
 * does: given names, the kernel looks each one up in kallsyms, ~50 ms a link
 * of ~300 functions under emulation); on refusal halves the set to skip what
 * cannot be traced.
 */
static int attach_multi_range(struct bpf_program *prog, struct probe **ps, const unsigned long *addrs, size_t n,
			      struct attachment *att, attach_progress_fn progress, size_t total, size_t *done,
			      char *err, size_t errlen)
{
	LIBBPF_OPTS(bpf_kprobe_multi_opts, opts, .addrs = addrs, .cnt = n);
	struct bpf_link *link;

	if (n == 0)
		return 0;
	if (stopping())
		return -EINTR;
	link = bpf_program__attach_kprobe_multi_opts(prog, NULL, &opts);
	if (link) {
		if (add_link(att, link) < 0)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++)
			ps[i]->attached = true;
		att->attached += n;
		*done += n;
		report(progress, "attach", *done, total);
		return 0;
	}
	if (is_fatal(errno))
		return fatal_message(errno, *done, total, err, errlen);
	if (n == 1) {
		att->skipped++;
		++*done;
		return 0;
	}
	int ret = attach_multi_range(prog, ps, addrs, n / 2, att, progress, total, done, err, errlen);
	if (ret)
		return ret;
	return attach_multi_range(prog, ps + n / 2, addrs + n / 2, n - n / 2, att, progress, total, done, err, errlen);
}

/*
 * The kprobe-multi program finds each function's skb position and probe id
 * under the address the kernel reports it by, the function's start
 * (bpf/pwru.bpf.c, kmulti_funcs): its symbol, or, from ftrace's address, that
 * address and the one ENDBR_BYTES before it (where the function begins with
 * endbr64, which only the kernel's text shows). No two functions share a key:
 * ftrace's calls are 5 bytes long.
 */
#define ENDBR_BYTES 4

static int fill_kmulti_funcs(struct pwru_bpf *skel, const struct probe_set *probes, char *err, size_t errlen)
{
	int per = probes->ftrace_addrs ? 2 : 1;
	__u64 *keys = calloc(probes->cnt ? probes->cnt * per : 1, sizeof(*keys));
	struct kmulti_func *values = calloc(probes->cnt ? probes->cnt * per : 1, sizeof(*values));
	__u32 n = 0;
	int ret = 0;

	if (!keys || !values) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t id = 0; id < probes->cnt; id++) {
		const struct probe *p = &probes->v[id];
		struct kmulti_func f = { .probe_id = (__u32)id, .skb_pos = (__u32)p->skb_pos };

		if (p->kind != PROBE_FUNC)
			continue;
		keys[n] = p->addr;
		values[n++] = f;
		if (probes->ftrace_addrs) {
			keys[n] = p->addr - ENDBR_BYTES;
			values[n++] = f;
		}
	}
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	__u32 count = n;
	if (n && bpf_map_update_batch(bpf_map__fd(skel->maps.kmulti_funcs), keys, values, &count, &opts)) {
		ret = -errno;
		snprintf(err, errlen, "filling the functions' map (%u of %u entries): %s", count, n, strerror(errno));
	}
out:
	free(keys);
	free(values);
	return ret;
}

static int attach_functions_multi(struct pwru_bpf *skel, struct probe_set *probes, struct attachment *att,
				  attach_progress_fn progress, size_t total, size_t *done, char *err, size_t errlen)
{
	unsigned long *addrs = calloc(probes->cnt, sizeof(*addrs));
	struct probe **ps = calloc(probes->cnt, sizeof(*ps));
	struct bpf_program *prog = NULL;
	size_t n = 0;
	int ret = 0;

	if (!addrs || !ps) {
		ret = -ENOMEM;
		goto out;
	}
	if ((ret = fill_kmulti_funcs(skel, probes, err, errlen)))
		goto out;
	for (size_t id = 0; id < probes->cnt; id++) {
		struct probe *p = &probes->v[id];

		if (p->kind != PROBE_FUNC)
			continue;
		prog = loader_program_for(skel, BACKEND_KPROBE_MULTI, p);
		addrs[n] = (unsigned long)p->addr;
		ps[n++] = p;
	}
	if (prog)
		ret = attach_multi_range(prog, ps, addrs, n, att, progress, total, done, err, errlen);
out:
	free(addrs);
	free(ps);
	return ret;
}

/*
 * Plain kprobes, from several threads. Each attach and detach waits in the
 * kernel (text patching, RCU grace periods per probe removed), partly under
 * kernel-wide locks: in a 6.1 guest, closing from 8 threads cut detach from
 * 93 to 40 ms a function, and more threads did not help.
 */
#define KPROBE_THREADS 8

struct pool {
	size_t n;			/* work items */
	_Atomic size_t next, done;	/* claimed, finished */
	_Atomic int fatal;		/* errno that ends an attach */
	_Atomic bool abort;		/* a stop: take no more work */
	void (*work)(struct pool *pool, size_t i);
	/* attach */
	struct pwru_bpf *skel;
	struct probe **ps;
	int pmu_type;		 /* the kprobe PMU's perf type */
	struct bpf_link **links; /* per item, NULL where refused */
	/* detach */
	struct attachment *att;
};

static void *pool_worker(void *arg)
{
	struct pool *pool = arg;
	sigset_t all;

	/* Signals go to the main thread, which polls for them: a worker's syscall is never cut short. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	for (;;) {
		if (atomic_load(&pool->abort) || atomic_load(&pool->fatal))
			break;
		size_t i = atomic_fetch_add(&pool->next, 1);
		if (i >= pool->n)
			break;
		pool->work(pool, i);
		atomic_fetch_add(&pool->done, 1);
	}
	return NULL;
}

/*
 * Runs the pool's work on KPROBE_THREADS threads (in this thread when none
 * can start), reporting progress every 100 ms. When watch_stop, a stop
 * (signal, or the client gone: stdin is polled here) lets the work in flight
 * finish and takes no more.
 */
static void pool_run(struct pool *pool, bool watch_stop, attach_progress_fn progress, const char *phase,
		     size_t base, size_t total)
{
	pthread_t threads[KPROBE_THREADS];
	size_t started = 0;

	for (; started < KPROBE_THREADS && started < pool->n; started++)
		if (pthread_create(&threads[started], NULL, pool_worker, pool))
			break;
	if (started == 0) {
		pool_worker(pool);
	} else {
		/* On a stop or a fatal error the workers leave after the item in hand: join them. */
		while (atomic_load(&pool->done) < pool->n && !atomic_load(&pool->fatal) && !atomic_load(&pool->abort)) {
			struct pollfd fds[STOP_NFDS];

			stop_pollfds(fds);
			if (poll(fds, STOP_NFDS, 20) > 0)
				stop_after_poll(fds);
			if (watch_stop && stopping())
				atomic_store(&pool->abort, true);
			/* The reader gets END (and the progress) while the probes go: it need not wait for them. */
			out_pump();
			if (atomic_load(&pool->done) < pool->n)
				report(progress, phase, base + atomic_load(&pool->done), total);
		}
		for (size_t t = 0; t < started; t++)
			pthread_join(threads[t], NULL);
	}
	if (total)
		report(progress, phase, base + atomic_load(&pool->done), total);
}

/*
 * A plain kprobe at the function's address (from kallsyms), not its name:
 * the function probed is the one chosen (6.6+ refuses a name that several
 * static functions share), and the kernel looks nothing up (before 6.2 a
 * linear scan of kallsyms a name; under emulation it was within the noise
 * of the ~75 ms each attach costs there, most of it patching ftrace).
 */
static struct bpf_link *kprobe_at(struct bpf_program *prog, int pmu_type, uint64_t addr)
{
	struct perf_event_attr attr = { .size = sizeof(attr), .type = pmu_type, .config2 = addr };
	struct bpf_link *link;
	int pfd, e;

	pfd = syscall(__NR_perf_event_open, &attr, -1 /* any process */, 0 /* cpu */, -1, PERF_FLAG_FD_CLOEXEC);
	if (pfd < 0)
		return NULL;
	link = bpf_program__attach_perf_event(prog, pfd); /* owns pfd from now on */
	if (!link) {
		e = errno;
		close(pfd);
		errno = e;
	}
	return link;
}

static void attach_one_kprobe(struct pool *pool, size_t i)
{
	struct probe *p = pool->ps[i];
	struct bpf_program *prog = loader_program_for(pool->skel, BACKEND_KPROBE, p);
	struct bpf_link *link;
	int e;

	link = pool->pmu_type > 0 && p->addr ? kprobe_at(prog, pool->pmu_type, p->addr)
					      : bpf_program__attach_kprobe(prog, false, p->name);
	e = errno;
	pool->links[i] = link;
	if (!link && is_fatal(e)) {
		int none = 0;

		atomic_compare_exchange_strong(&pool->fatal, &none, e);
	}
}

static int attach_functions_kprobe(struct pwru_bpf *skel, struct probe_set *probes, struct attachment *att,
				   attach_progress_fn progress, size_t total, size_t *done, char *err, size_t errlen)
{
	struct pool pool = { .skel = skel, .work = attach_one_kprobe, .pmu_type = kprobe_pmu_type() };
	int ret = 0;

	pool.ps = calloc(probes->cnt ? probes->cnt : 1, sizeof(*pool.ps));
	pool.links = calloc(probes->cnt ? probes->cnt : 1, sizeof(*pool.links));
	if (!pool.ps || !pool.links) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t id = 0; id < probes->cnt; id++)
		if (probes->v[id].kind == PROBE_FUNC)
			pool.ps[pool.n++] = &probes->v[id];
	raise_nofile(2 * pool.n + probes->cnt + 256);
	/* The first in this thread: libbpf probes the kernel's features once, before the threads share them. */
	if (pool.n && !stopping()) {
		attach_one_kprobe(&pool, 0);
		atomic_store(&pool.next, 1);
		atomic_store(&pool.done, 1);
	}
	pool_run(&pool, true, progress, "attach", *done, total);
	/* Everything attached is kept (and detached by attach_detach), whatever ended the attach. */
	for (size_t i = 0; i < pool.n; i++) {
		if (pool.links[i]) {
			if (add_link(att, pool.links[i]) < 0) {
				bpf_link__destroy(pool.links[i]);
				ret = -ENOMEM;
				continue;
			}
			pool.ps[i]->attached = true;
			att->attached++;
		} else if (i < atomic_load(&pool.done)) {
			att->skipped++; /* blacklisted or notrace */
		}
	}
	*done += atomic_load(&pool.done);
	if (!ret && atomic_load(&pool.fatal))
		ret = fatal_message(atomic_load(&pool.fatal), att->attached, total, err, errlen);
	else if (!ret && atomic_load(&pool.abort))
		ret = -EINTR;
out:
	free(pool.ps);
	free(pool.links);
	return ret;
}

int attach_all(struct pwru_bpf *skel, enum backend backend, struct probe_set *probes, struct attachment *att,
	       attach_progress_fn progress, bool (*stop)(void), char *err, size_t errlen)
{
	size_t done = 0;
	double t0 = now_ms();
	int ret;

	should_stop = stop;
	memset(att, 0, sizeof(*att));
	err[0] = 0;
	ret = attach_tracepoints(skel, probes, att, progress, probes->cnt, &done, err, errlen);
	if (!ret && backend == BACKEND_KPROBE_MULTI)
		ret = attach_functions_multi(skel, probes, att, progress, probes->cnt, &done, err, errlen);
	else if (!ret && backend == BACKEND_KPROBE)
		ret = attach_functions_kprobe(skel, probes, att, progress, probes->cnt, &done, err, errlen);
	att->attach_ms = now_ms() - t0;
	if (ret) {
		if (ret == -EINTR)
			snprintf(err, errlen, "stopped while attaching probes");
		else if (!err[0])
			snprintf(err, errlen, "attaching probes: %s", strerror(-ret));
		return ret;
	}
	if (att->attached == 0) {
		snprintf(err, errlen, "the kernel refused all %zu probes", probes->cnt);
		return -ENOENT;
	}
	return 0;
}

/*
 * Stops the programs without detaching them: they return at their first
 * instruction from now on. A program already past that check finishes within
 * the RCU read section the kernel runs it in, so this waits for a grace
 * period (an update of a map-in-map from user space does exactly that,
 * maybe_wait_bpf_programs()): after it, the counters are final and nothing
 * more reaches the ring buffer.
 */
void attach_quiesce(struct pwru_bpf *skel)
{
	int inner, outer;
	__u32 key = 0;

	if (skel->bss->pwru_stopped)
		return;
	skel->bss->pwru_stopped = true;
	inner = bpf_map_create(BPF_MAP_TYPE_ARRAY, NULL, sizeof(__u32), sizeof(__u32), 1, NULL);
	if (inner < 0)
		return;
	LIBBPF_OPTS(bpf_map_create_opts, opts, .inner_map_fd = inner);
	outer = bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, NULL, sizeof(__u32), sizeof(__u32), 1, &opts);
	if (outer >= 0) {
		bpf_map_update_elem(outer, &key, &inner, BPF_ANY);
		close(outer);
	}
	close(inner);
}

static void detach_one(struct pool *pool, size_t i)
{
	struct attachment *att = pool->att;

	if (i < att->nraw)
		close(att->raw_fds[i]);
	else
		bpf_link__destroy(att->links[i - att->nraw]);
}

void attach_hand_off_multi(const struct attachment *att)
{
	/* Plain kprobes are not: their perf events would be released one after the other in one kernel worker. */
	for (size_t i = 0; i < att->nlinks; i++)
		handoff_add(bpf_link__fd(att->links[i]));
}

void attach_detach(struct attachment *att, attach_progress_fn progress)
{
	struct pool pool = { .att = att, .work = detach_one, .n = att->nlinks + att->nraw };

	/* Every probe is detached, whatever stops meanwhile: a second signal does not leave any behind. */
	pool_run(&pool, false, progress, "detach", 0, pool.n);
	free(att->links);
	free(att->raw_fds);
	memset(att, 0, sizeof(*att));
}

/* The backend to trace with: the one asked for if the kernel offers it, else (auto) the best it offers. */
int backend_choose(enum backend asked, const struct backend_support *bs, enum backend *chosen, char *note,
		   size_t notelen, char *err, size_t errlen)
{
	const struct {
		enum backend b;
		bool offered;
		const char *why;
	} all[] = {
		{ BACKEND_KPROBE_MULTI, bs->kprobe_multi, bs->kprobe_multi_why },
		{ BACKEND_KPROBE, bs->kprobe, bs->kprobe_why },
		{ BACKEND_TRACEPOINT, bs->tracepoint, bs->tracepoint_why },
	};
	char have[64] = "";

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (all[i].offered)
			snprintf(have + strlen(have), sizeof(have) - strlen(have), "%s%s", *have ? ", " : "",
				 backend_name(all[i].b));
	if (!*have)
		snprintf(have, sizeof(have), "none");
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		/* Best first: auto takes the first offered. */
		if (asked == BACKEND_AUTO && all[i].offered) {
			*chosen = all[i].b;
			snprintf(note, notelen, "auto chose %s (available: %s)", backend_name(*chosen), have);
			return 0;
		}
		if (asked == all[i].b && all[i].offered) {
			*chosen = asked;
			snprintf(note, notelen, "as asked (available: %s)", have);
			return 0;
		}
		if (asked == all[i].b) {
			snprintf(err, errlen, "backend %s is not available on this kernel (%s); available: %s",
				 backend_name(asked), all[i].why, have);
			return -1;
		}
	}
	snprintf(err, errlen, "this kernel offers no backend: %s; %s; %s", bs->kprobe_multi_why, bs->kprobe_why,
		 bs->tracepoint_why);
	return -1;
}
