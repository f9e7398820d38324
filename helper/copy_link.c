// SPDX-License-Identifier: Apache-2.0
#include "copy_link.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/types.h>

#include "kernel_btf.h"
#include "link_handoff.h"
#include "loader.h"
#include "output.h"
#include "copy_link.skel.h"

/* The copy functions, in the order of their programs below. */
static const char *const funcs[] = { "skb_copy", "__pskb_copy_fclone", "skb_copy_expand" };
#define NFUNCS (sizeof(funcs) / sizeof(funcs[0]))

static struct {
	bool usable[NFUNCS];
	struct btf *btf; /* vmlinux's, lent by the probes' load (kernel_btf_share) until libbpf takes it */
	struct copy_link_bpf *skel;
	bool active;
	int shared; /* copy_origins: made here, shared with the probes' object */
	/* Loading and attaching in a thread (copy_link_begin() to copy_link_wait()). */
	pthread_t thread;
	bool loading;
	int ret;
	char why[256];
	/* Not linked: why, said once at the first drop. */
	char not_seen[256];
	bool said;
} S = { .shared = -1, .not_seen = "the copy functions (skb_copy, pskb_copy, skb_copy_expand) are not probed" };

bool copy_link_possible(const struct btf *vmlinux)
{
	bool any = false;

	for (size_t i = 0; i < NFUNCS; i++)
		any |= S.usable[i] = btf__find_by_name_kind(vmlinux, funcs[i], BTF_KIND_FUNC) >= 0;
	/* The probes' parsed copy, lent to the loading thread (libbpf only reads it): not parsed again. */
	if (any)
		S.btf = kernel_btf_share((struct btf *)vmlinux);
	return any;
}

/* The targets set, the programs loaded and attached: in the loading thread. */
static void *load_thread(void *arg)
{
	struct bpf_program *progs[NFUNCS];
	int ret = 0;

	(void)arg;
	/* A load the kernel may refuse (fexit on a sandboxed kernel): its log is noise. */
	loader_quiet_thread();
	kernel_btf_give_to_libbpf(S.btf);
	S.btf = NULL;
	progs[0] = S.skel->progs.copy_skb_copy;
	progs[1] = S.skel->progs.copy_pskb_copy;
	progs[2] = S.skel->progs.copy_skb_copy_expand;
	for (size_t i = 0; i < NFUNCS; i++) {
		bpf_program__set_autoload(progs[i], S.usable[i]);
		if (S.usable[i] && (ret = bpf_program__set_attach_target(progs[i], 0, funcs[i]))) {
			snprintf(S.why, sizeof(S.why), "%s: %s", funcs[i], strerror(-ret));
			goto out;
		}
	}
	ret = copy_link_bpf__load(S.skel);
	if (!ret)
		ret = copy_link_bpf__attach(S.skel);
	if (ret)
		snprintf(S.why, sizeof(S.why), "fexit on the copy functions: %s", strerror(-ret));
out:
	kernel_btf_give_to_libbpf(NULL); /* what libbpf did not take */
	S.ret = ret;
	return NULL;
}

bool copy_link_begin(int *copy_origins_fd, char *why, size_t len)
{
	struct bpf_map *m;
	sigset_t all, was;
	int ret;

	S.skel = copy_link_bpf__open();
	if (!S.skel) {
		snprintf(why, len, "cannot open the copy functions' programs: %s", strerror(errno));
		return false;
	}
	m = S.skel->maps.copy_origins;
	{
		LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = bpf_map__map_flags(m));

		S.shared = bpf_map_create(bpf_map__type(m), bpf_map__name(m), bpf_map__key_size(m),
					  bpf_map__value_size(m), LOADER_COPY_ORIGINS, &opts);
	}
	ret = S.shared < 0 ? -errno : bpf_map__reuse_fd(m, S.shared);
	if (ret) {
		snprintf(why, len, "the map shared with the probes: %s", strerror(-ret));
		copy_link_end();
		return false;
	}
	*copy_origins_fd = S.shared;
	/* Signals stay with the main thread, which watches for them. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &was);
	S.loading = pthread_create(&S.thread, NULL, load_thread, NULL) == 0;
	pthread_sigmask(SIG_SETMASK, &was, NULL);
	if (!S.loading)
		load_thread(NULL);
	return true;
}

bool copy_link_wait(char *why, size_t len)
{
	if (S.loading)
		pthread_join(S.thread, NULL);
	S.loading = false;
	if (!S.skel)
		return false;
	if (S.ret) {
		snprintf(why, len, "%s", S.why);
		copy_link_bpf__destroy(S.skel);
		S.skel = NULL;
		return false;
	}
	S.active = true;
	return true;
}

bool copy_link_active(void)
{
	return S.active;
}

void copy_link_not_seen(const char *why)
{
	snprintf(S.not_seen, sizeof(S.not_seen), "%s", why);
}

void copy_link_dropped(void)
{
	if (S.active || S.said)
		return;
	S.said = true;
	out_message(PWRU_FRAME_WARNING, "copies_not_seen",
		    "whether a dropped packet had a copy made of it that got through (nft dup, TEE, mirroring: "
		    "skb_copy, pskb_copy): could not tell, %s; such a copy shows as a packet of its own",
		    S.not_seen);
}

void copy_link_hand_off(void)
{
	if (S.active)
		handoff_add_skeleton(S.skel->skeleton);
}

void copy_link_end(void)
{
	if (S.loading)
		pthread_join(S.thread, NULL);
	S.loading = false;
	if (S.shared >= 0)
		close(S.shared);
	S.shared = -1;
	copy_link_bpf__destroy(S.skel);
	btf__free(S.btf);
	S.skel = NULL;
	S.btf = NULL;
	S.active = false;
}
