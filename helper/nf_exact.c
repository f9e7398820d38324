// SPDX-License-Identifier: Apache-2.0
#include "nf_exact.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/types.h>

#include "../bpf/nf_verdict.h"
#include "kernel_btf.h"
#include "link_handoff.h"
#include "loader.h"
#include "nf_verdict.skel.h"

/* The walkers, by PWRU_NF_* kind - 1. */
static const struct walker {
	const char *func, *module;
	bool table_first; /* x_tables: (priv = table, skb, state), the order since 5.16 */
} walkers[] = {
	{ "nft_do_chain", "nf_tables", false },
	{ "ipt_do_table", "ip_tables", true },
	{ "ip6t_do_table", "ip6_tables", true },
	{ "arpt_do_table", "arp_tables", true },
};
#define NWALKERS (sizeof(walkers) / sizeof(walkers[0]))

static struct {
	bool usable[NWALKERS];
	bool rules; /* nft_immediate_eval can be probed, and struct nft_rule_dp is as bpf/nf_verdict.bpf.c reads it */
	struct btf *btf; /* vmlinux's, lent by the probes' load (kernel_btf_share) until libbpf takes it */
	struct nf_verdict_bpf *skel;
	int drops_fd;
	bool active;
	int shared[2]; /* nf_last, nf_inside: made here, shared with the probes' object */
	/* Loading and attaching in a thread (nf_exact_begin() to nf_exact_wait()). */
	pthread_t thread;
	bool loading;
	int ret;
	char why[256];
} S = { .drops_fd = -1, .shared = { -1, -1 } };

/* Whether func is in btf with the arguments the program reads. */
static bool walker_fits(const struct btf *btf, const struct walker *w)
{
	int id = btf__find_by_name_kind(btf, w->func, BTF_KIND_FUNC);
	const struct btf_type *proto;

	if (id < 0 || !(proto = btf__type_by_id(btf, btf__type_by_id(btf, id)->type)) || !btf_is_func_proto(proto))
		return false;
	if (!w->table_first)
		return btf_vlen(proto) == 2;
	return btf_vlen(proto) == 3 && strcmp(btf__name_by_offset(btf, btf_params(proto)[0].name_off), "priv") == 0;
}

/* Member i of struct t is name, at bit off, a bitfield of bits (0: not one). */
static bool member_is(const struct btf_type *t, const struct btf *btf, unsigned i, const char *name, unsigned off,
		      unsigned bits)
{
	const struct btf_member *m = btf_members(t) + i;

	return i < btf_vlen(t) && strcmp(btf__name_by_offset(btf, m->name_off), name) == 0 &&
	       btf_member_bit_offset(t, i) == off && btf_member_bitfield_size(t, i) == bits;
}

/*
 * Whether nf_tables' rules can be named by their drop verdicts here:
 * nft_immediate_eval(expr, regs, pkt), and the rules packed as
 * struct nft_rule_dp { u64 is_last:1, dlen:12, handle:42; data[] } (5.17+),
 * whose header word the program decodes itself.
 */
static bool rules_fit(const struct btf *btf)
{
	int id = btf__find_by_name_kind(btf, "nft_immediate_eval", BTF_KIND_FUNC);
	const struct btf_type *t;

	if (id < 0 || !(t = btf__type_by_id(btf, btf__type_by_id(btf, id)->type)) || !btf_is_func_proto(t) ||
	    btf_vlen(t) != 3)
		return false;
	id = btf__find_by_name_kind(btf, "nft_rule_dp", BTF_KIND_STRUCT);
	if (id < 0 || !(t = btf__type_by_id(btf, id)) || t->size != 8 || !btf_kflag(t))
		return false;
	return member_is(t, btf, 0, "is_last", 0, 1) && member_is(t, btf, 1, "dlen", 1, 12) &&
	       member_is(t, btf, 2, "handle", 13, 42) && member_is(t, btf, 3, "data", 64, 0);
}

bool nf_exact_possible(const struct btf *vmlinux)
{
	bool any = false;

	for (size_t i = 0; i < NWALKERS; i++) {
		const struct walker *w = &walkers[i];
		char path[64];

		if (btf__find_by_name_kind(vmlinux, w->func, BTF_KIND_FUNC) >= 0) {
			S.usable[i] = walker_fits(vmlinux, w);
			if (i == 0)
				S.rules = S.usable[i] && rules_fit(vmlinux);
		} else {
			/* A module not loaded has nothing to drop with. */
			snprintf(path, sizeof(path), "/sys/kernel/btf/%s", w->module);
			if (access(path, R_OK) != 0)
				continue;
			struct btf *mod = btf__load_module_btf(w->module, (struct btf *)vmlinux);
			if (!mod)
				continue;
			S.usable[i] = walker_fits(mod, w);
			if (i == 0)
				S.rules = S.usable[i] && rules_fit(mod);
			btf__free(mod);
		}
		any |= S.usable[i];
	}
	if (any)
		S.btf = kernel_btf_share((struct btf *)vmlinux);
	return any;
}

/* A map of the object made here, so that the probes' object can share it before either is loaded. */
static int create_shared(struct bpf_map *m, int *fd)
{
	LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = bpf_map__map_flags(m));

	*fd = bpf_map_create(bpf_map__type(m), bpf_map__name(m), bpf_map__key_size(m), bpf_map__value_size(m),
			     bpf_map__max_entries(m), &opts);
	if (*fd < 0)
		return -errno;
	return bpf_map__reuse_fd(m, *fd);
}

/* The targets set, the programs loaded and attached; -errno with why in S.why. */
static int load_attach(void)
{
	struct bpf_program *progs[NWALKERS] = {
		S.skel->progs.nf_nft_do_chain,
		S.skel->progs.nf_ipt_do_table,
		S.skel->progs.nf_ip6t_do_table,
		S.skel->progs.nf_arpt_do_table,
	};
	int ret;

	/* nft_do_chain has a second program: fentry, for the drops it makes itself. */
	bpf_program__set_autoload(S.skel->progs.nf_nft_enter, S.usable[0]);
	if (S.usable[0] && (ret = bpf_program__set_attach_target(S.skel->progs.nf_nft_enter, 0, walkers[0].func))) {
		snprintf(S.why, sizeof(S.why), "%s: %s", walkers[0].func, strerror(-ret));
		return ret;
	}
	/* And a third, for the rule: on the immediate verdicts it runs. */
	bpf_program__set_autoload(S.skel->progs.nf_nft_immediate, S.rules);
	if (S.rules &&
	    (ret = bpf_program__set_attach_target(S.skel->progs.nf_nft_immediate, 0, "nft_immediate_eval"))) {
		snprintf(S.why, sizeof(S.why), "nft_immediate_eval: %s", strerror(-ret));
		return ret;
	}
	for (size_t i = 0; i < NWALKERS; i++) {
		bpf_program__set_autoload(progs[i], S.usable[i]);
		if (S.usable[i] && (ret = bpf_program__set_attach_target(progs[i], 0, walkers[i].func))) {
			snprintf(S.why, sizeof(S.why), "%s: %s", walkers[i].func, strerror(-ret));
			return ret;
		}
	}
	ret = nf_verdict_bpf__load(S.skel);
	if (!ret)
		ret = nf_verdict_bpf__attach(S.skel);
	if (ret)
		snprintf(S.why, sizeof(S.why), "fexit on the netfilter table walkers: %s", strerror(-ret));
	return ret;
}

/* In the loading thread. */
static void *load_thread(void *arg)
{
	int ret;

	(void)arg;
	/* A load the kernel may refuse (fentry on a sandboxed kernel): its log is noise. */
	loader_quiet_thread();
	/* Before the targets are set: setting one makes libbpf load the kernel's BTF, this one. */
	kernel_btf_give_to_libbpf(S.btf);
	S.btf = NULL;
	ret = load_attach();
	/*
	 * The rule's program is the newest and reads the most of nf_tables: a
	 * kernel that refuses it still gets the table and chain, without it
	 * (its drops' rules then come from the counters).
	 */
	if (ret && S.rules) {
		nf_verdict_bpf__destroy(S.skel);
		S.rules = false;
		S.skel = nf_verdict_bpf__open();
		if (!S.skel || bpf_map__reuse_fd(S.skel->maps.nf_last, S.shared[0]) ||
		    bpf_map__reuse_fd(S.skel->maps.nf_inside, S.shared[1]))
			snprintf(S.why, sizeof(S.why), "reopening the netfilter programs: %s", strerror(errno));
		else
			ret = load_attach();
	}
	kernel_btf_give_to_libbpf(NULL); /* what libbpf did not take */
	S.ret = ret;
	return NULL;
}

bool nf_exact_begin(int *nf_last_fd, int *nf_inside_fd, char *why, size_t len)
{
	sigset_t all, was;
	int ret;

	S.skel = nf_verdict_bpf__open();
	if (!S.skel) {
		snprintf(why, len, "cannot open the netfilter programs: %s", strerror(errno));
		return false;
	}
	if ((ret = create_shared(S.skel->maps.nf_last, &S.shared[0])) ||
	    (ret = create_shared(S.skel->maps.nf_inside, &S.shared[1]))) {
		snprintf(why, len, "the maps shared with the probes: %s", strerror(-ret));
		nf_exact_end();
		return false;
	}
	*nf_last_fd = S.shared[0];
	*nf_inside_fd = S.shared[1];
	/* Signals stay with the main thread, which watches for them. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &was);
	S.loading = pthread_create(&S.thread, NULL, load_thread, NULL) == 0;
	pthread_sigmask(SIG_SETMASK, &was, NULL);
	if (!S.loading)
		load_thread(NULL);
	return true;
}

bool nf_exact_wait(int nf_drops_fd, char *why, size_t len)
{
	if (S.loading)
		pthread_join(S.thread, NULL);
	S.loading = false;
	if (S.ret) {
		snprintf(why, len, "%s", S.why);
		nf_verdict_bpf__destroy(S.skel);
		S.skel = NULL;
		return false;
	}
	if (!S.skel)
		return false;
	S.drops_fd = nf_drops_fd;
	S.active = true;
	return true;
}

bool nf_exact_active(void)
{
	return S.active;
}

static const char *nft_family(unsigned family)
{
	switch (family) {
	case 1: return "inet";
	case 2: return "ip";
	case 3: return "arp";
	case 5: return "netdev";
	case 7: return "bridge";
	case 10: return "ip6";
	default: return "?";
	}
}

/* nft's hook names, by family (nft list ruleset's words). */
static const char *nft_hook(unsigned family, unsigned hook)
{
	static const char *const inet[] = { "prerouting", "input", "forward", "output", "postrouting", "ingress" };

	if (family == 5)
		return hook == 0 ? "ingress" : hook == 1 ? "egress" : "?";
	if (family == 3)
		return hook == 0 ? "input" : hook == 1 ? "output" : hook == 2 ? "forward" : "?";
	return hook < sizeof(inet) / sizeof(inet[0]) ? inet[hook] : "?";
}

/* The built-in chain of an x_tables hook: iptables' words. */
static const char *xt_chain(int kind, unsigned hook)
{
	static const char *const inet[] = { "PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING" };
	static const char *const arp[] = { "INPUT", "OUTPUT", "FORWARD" };

	if (kind == PWRU_NF_ARPT)
		return hook < 3 ? arp[hook] : "?";
	return hook < 5 ? inet[hook] : "?";
}

bool nf_exact_of(uint64_t skb, uint64_t ts, struct nf_exact *out)
{
	struct nf_verdict v = { 0 };
	struct nf_drop_key key = { .skb = skb, .ts = ts };

	memset(out, 0, sizeof(*out));
	if (!S.active || bpf_map_lookup_elem(S.drops_fd, &key, &v) || v.drop_ts != ts)
		return false;
	bpf_map_delete_elem(S.drops_fd, &key); /* read once: room for the next */
	out->known = v.known && v.kind >= 1 && v.kind <= NWALKERS;
	if (!out->known)
		return true;
	out->by = walkers[v.kind - 1].func;
	out->nft = v.kind == PWRU_NF_NFT;
	snprintf(out->table, sizeof(out->table), "%.*s", (int)sizeof(v.table), v.table);
	if (out->nft) {
		out->family = nft_family(v.family);
		out->hook = nft_hook(v.family == 1 ? v.pf : v.family, v.hook);
		snprintf(out->chain, sizeof(out->chain), "%.*s", (int)sizeof(v.chain), v.chain);
		out->rule = !S.rules ? NF_RULE_NOT_PROBED
			    : v.rule == PWRU_NF_RULE_EXACT ? NF_RULE_EXACT
			    : v.rule == PWRU_NF_RULE_LOST  ? NF_RULE_LOST
							   : NF_RULE_NO_IMMEDIATE;
		if (out->rule == NF_RULE_EXACT) {
			out->handle = v.handle;
			snprintf(out->rule_chain, sizeof(out->rule_chain), "%.*s", (int)sizeof(v.rule_chain),
				 v.rule_chain);
		}
	} else {
		out->family = v.kind == PWRU_NF_IPT ? "ip" : v.kind == PWRU_NF_IP6T ? "ip6" : "arp";
		out->hook = xt_chain(v.kind, v.hook);
		snprintf(out->chain, sizeof(out->chain), "%s", out->hook);
	}
	return true;
}

void nf_exact_hand_off(void)
{
	if (S.active)
		handoff_add_skeleton(S.skel->skeleton);
}

void nf_exact_end(void)
{
	if (S.loading)
		pthread_join(S.thread, NULL);
	S.loading = false;
	for (int i = 0; i < 2; i++)
		if (S.shared[i] >= 0)
			close(S.shared[i]);
	S.shared[0] = S.shared[1] = -1;
	nf_verdict_bpf__destroy(S.skel);
	btf__free(S.btf);
	S.skel = NULL;
	S.btf = NULL;
	S.active = false;
}
