// SPDX-License-Identifier: Apache-2.0
#include "probes.h"
#include "fentry_site.h"
#include "traceable.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TP_PREFIX "btf_trace_"

struct probe *probes_add(struct probe_set *set, const char *name)
{
	if (set->cnt == set->cap) {
		size_t cap = set->cap ? set->cap * 2 : 256;
		struct probe *v = realloc(set->v, cap * sizeof(*v));

		if (!v)
			return NULL;
		set->v = v;
		set->cap = cap;
	}
	struct probe *p = &set->v[set->cnt];
	memset(p, 0, sizeof(*p));
	p->name = strdup(name);
	if (!p->name)
		return NULL;
	set->cnt++;
	return p;
}

void probes_free(struct probe_set *set)
{
	for (size_t i = 0; i < set->cnt; i++)
		free(set->v[i].name);
	free(set->v);
	memset(set, 0, sizeof(*set));
}

static const struct btf_type *skip_mods(const struct btf *btf, __u32 id)
{
	const struct btf_type *t = btf__type_by_id(btf, id);

	while (t && (btf_is_mod(t) || btf_is_typedef(t)))
		t = btf__type_by_id(btf, t->type);
	return t;
}

static bool is_skb_ptr(const struct btf *btf, __u32 id)
{
	const struct btf_type *t = skip_mods(btf, id);

	if (!t || !btf_is_ptr(t))
		return false;
	t = skip_mods(btf, t->type);
	return t && btf_is_struct(t) && strcmp(btf__name_by_offset(btf, t->name_off), "sk_buff") == 0;
}

static bool is_enum_named(const struct btf *btf, __u32 id, const char *name)
{
	const struct btf_type *t = skip_mods(btf, id);

	return t && (btf_is_enum(t) || btf_is_enum64(t)) &&
	       strcmp(btf__name_by_offset(btf, t->name_off), name) == 0;
}

/* 1-based position of the first skb parameter among params [first, first + 5), or 0. */
static int skb_position(const struct btf *btf, const struct btf_type *proto, int first)
{
	const struct btf_param *params = btf_params(proto);
	int n = btf_vlen(proto);

	for (int i = first; i < n && i < first + MAX_SKB_POS; i++)
		if (is_skb_ptr(btf, params[i].type))
			return i - first + 1;
	return 0;
}

static bool wanted(const regex_t *re, const char *name)
{
	return !re || regexec(re, name, 0, NULL, 0) == 0;
}

int probes_find_tracepoints(const struct btf *btf, const regex_t *re, struct probe_set *out)
{
	__u32 n = btf__type_cnt(btf);

	for (__u32 id = 1; id < n; id++) {
		const struct btf_type *t = btf__type_by_id(btf, id);
		const char *name;

		if (!btf_is_typedef(t))
			continue;
		name = btf__name_by_offset(btf, t->name_off);
		if (strncmp(name, TP_PREFIX, sizeof(TP_PREFIX) - 1) != 0)
			continue;
		name += sizeof(TP_PREFIX) - 1;
		const struct btf_type *ptr = btf__type_by_id(btf, t->type);
		if (!ptr || !btf_is_ptr(ptr))
			continue;
		const struct btf_type *proto = btf__type_by_id(btf, ptr->type);
		if (!proto || !btf_is_func_proto(proto))
			continue;
		/* Parameter 0 is the tracepoint's private data pointer. */
		int pos = skb_position(btf, proto, 1);
		if (!pos)
			continue;

		enum tp_role role = TP_GENERIC;
		if (strcmp(name, "kfree_skb") == 0 && pos == 1) {
			const struct btf_param *params = btf_params(proto);

			role = btf_vlen(proto) >= 4 && is_enum_named(btf, params[3].type, "skb_drop_reason")
				       ? TP_KFREE_SKB_REASON
				       : TP_KFREE_SKB;
		} else if (strcmp(name, "consume_skb") == 0 && pos == 1) {
			const struct btf_type *loc = btf_vlen(proto) >= 3 ? skip_mods(btf, btf_params(proto)[2].type) : NULL;

			role = loc && btf_is_ptr(loc) ? TP_CONSUME_SKB_LOCATION : TP_CONSUME_SKB;
		}
		/* The drop and free tracepoints are always on: they end every packet's path. */
		if (role == TP_GENERIC && !wanted(re, name))
			continue;
		struct probe *p = probes_add(out, name);
		if (!p)
			return -ENOMEM;
		p->kind = PROBE_TRACEPOINT;
		p->skb_pos = pos;
		p->btf_id = id;
		p->role = role;
	}
	return 0;
}

int probes_find_functions(const struct btf *btf, const regex_t *re, struct probe_set *out)
{
	__u32 n = btf__type_cnt(btf);

	/* Split BTF (a module's) starts after vmlinux's ids. */
	for (__u32 id = 1; id < n; id++) {
		const struct btf_type *t = btf__type_by_id(btf, id);
		const char *name;

		if (!btf_is_func(t))
			continue;
		name = btf__name_by_offset(btf, t->name_off);
		const struct btf_type *proto = btf__type_by_id(btf, t->type);
		if (!proto || !btf_is_func_proto(proto))
			continue;
		int pos = skb_position(btf, proto, 0);
		if (!pos || !wanted(re, name))
			continue;
		struct probe *p = probes_add(out, name);
		if (!p)
			return -ENOMEM;
		p->kind = PROBE_FUNC;
		p->skb_pos = pos;
		p->btf_id = id;
	}
	return 0;
}

/* The message when nothing is left to probe. */
static int nothing_to_probe(const char *what, const char *filter_func, char *err, size_t errlen)
{
	if (filter_func)
		snprintf(err, errlen, "--filter-func '%s' matches no %s that takes a struct sk_buff *", filter_func, what);
	else
		snprintf(err, errlen, "found no %s that takes a struct sk_buff *", what);
	return -ENOENT;
}

/*
 * Functions the kernel can trace. When tracefs is readable its list is the
 * truth, or, given sites, each function's first bytes; otherwise kallsyms
 * (inlined functions have no symbol) is the best guess. Attach failures are
 * handled by the backend (kprobe-multi skips what the kernel refuses).
 */
int probes_place(struct probe_set *set, const struct kallsyms *ks, bool ftrace_addrs,
		 const struct fentry_sites *sites, const char *filter_func, char *err, size_t errlen)
{
	const struct traceable_list *traceable = sites ? NULL : traceable_get();
	bool listed = traceable && traceable_count(traceable) > 0;
	size_t kept = 0, functions = 0;

	err[0] = 0;
	set->ftrace_addrs = ftrace_addrs;
	for (size_t i = 0; i < set->cnt; i++) {
		struct probe *p = &set->v[i];
		uint64_t addr = 0;
		bool keep = true;

		if (p->kind == PROBE_FUNC) {
			keep = !listed || traceable_find(traceable, p->name, &addr);
			if (keep && !ftrace_addrs) {
				const struct ksym *sym = kallsyms_by_name(ks, p->name);

				keep = sym != NULL; /* none: inlined everywhere, nothing to probe */
				addr = sym ? sym->addr : 0;
				if (keep && sites)
					keep = fentry_site_at(sites, addr);
			}
			p->addr = addr;
			functions += keep;
		}
		if (!keep) {
			free(p->name);
			continue;
		}
		set->v[kept++] = *p; /* tracepoints come first: their ids stay */
	}
	set->cnt = kept;
	if (traceable)
		traceable_release();
	return functions ? 0 : nothing_to_probe("probeable function", filter_func, err, errlen);
}

int drop_reasons_load(const struct btf *btf, struct drop_reasons *out)
{
	static const char prefix[] = "SKB_DROP_REASON_";
	__s32 id = btf__find_by_name_kind(btf, "skb_drop_reason", BTF_KIND_ENUM);

	memset(out, 0, sizeof(*out));
	if (id < 0)
		return 0; /* before 5.17 */
	const struct btf_type *t = btf__type_by_id(btf, id);
	const struct btf_enum *e = btf_enum(t);
	int n = btf_vlen(t);

	out->v = calloc(n ? n : 1, sizeof(*out->v));
	if (!out->v)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		const char *name = btf__name_by_offset(btf, e[i].name_off);

		if (strncmp(name, prefix, sizeof(prefix) - 1) == 0)
			name += sizeof(prefix) - 1;
		else if (strncmp(name, "SKB_", 4) == 0)
			name += 4; /* SKB_CONSUMED, SKB_NOT_DROPPED_YET */
		out->v[i].value = (uint32_t)e[i].val;
		out->v[i].name = strdup(name); /* the BTF goes to libbpf, which frees it */
		if (!out->v[i].name) {
			drop_reasons_free(out);
			return -ENOMEM;
		}
		out->cnt++;
		if (out->v[i].value < MAX_DROP_REASON && out->v[i].value >= out->nvalues)
			out->nvalues = out->v[i].value + 1;
	}
	out->by_value = calloc(out->nvalues ? out->nvalues : 1, sizeof(*out->by_value));
	if (!out->by_value) {
		drop_reasons_free(out);
		return -ENOMEM;
	}
	for (size_t i = 0; i < out->cnt; i++)
		if (out->v[i].value < out->nvalues)
			out->by_value[out->v[i].value] = out->v[i].name;
	return 0;
}

const struct drop_reason *drop_reason_named(const struct drop_reasons *d, const char *name)
{
	for (size_t i = 0; i < d->cnt; i++)
		if (strcmp(d->v[i].name, name) == 0)
			return &d->v[i];
	return NULL;
}

void drop_reasons_free(struct drop_reasons *d)
{
	for (size_t i = 0; i < d->cnt; i++)
		free(d->v[i].name);
	free(d->v);
	free(d->by_value);
	memset(d, 0, sizeof(*d));
}

/* Adds the functions of every module with BTF (--all-kmods). */
static int add_module_functions(struct btf *vmlinux, const regex_t *re, struct probe_set *probes, bool *any_module)
{
	DIR *dir = opendir("/sys/kernel/btf");
	struct dirent *de;
	char path[300];
	int ret = 0;

	*any_module = false;
	if (!dir)
		return 0;
	while (!ret && (de = readdir(dir))) {
		if (de->d_name[0] == '.' || strcmp(de->d_name, "vmlinux") == 0)
			continue;
		snprintf(path, sizeof(path), "/sys/kernel/btf/%s", de->d_name);
		struct btf *mod = btf__parse_split(path, vmlinux);
		if (!mod)
			continue;
		ret = probes_find_functions(mod, re, probes);
		btf__free(mod);
		*any_module = true;
	}
	closedir(dir);
	return ret;
}

int probes_choose(struct btf *btf, const struct probe_request *req, struct probe_set *out, char *err, size_t errlen)
{
	const char *what = req->functions ? "probeable function" : "tracepoint";
	struct probe_set functions = { 0 };
	regex_t none;
	size_t chosen = 0;
	int ret;

	err[0] = 0;
	if (!req->functions) {
		ret = probes_find_tracepoints(btf, req->re, out);
	} else {
		/* Tracepoints first (their ids are stable): only the always-on drop and free ones, functions cover the path. */
		regcomp(&none, "^$", REG_EXTENDED | REG_NOSUB);
		ret = probes_find_tracepoints(btf, &none, out);
		regfree(&none);
		if (!ret)
			ret = probes_find_functions(btf, req->re, &functions);
		if (!ret && req->all_kmods) {
			bool any_module;

			ret = add_module_functions(btf, req->re, &functions, &any_module);
			if (!ret && !any_module)
				snprintf(err, errlen, "--all-kmods: this kernel has no module BTF (needs 5.11+ with "
						      "CONFIG_DEBUG_INFO_BTF_MODULES=y): only built-in functions are probed");
		}
		for (size_t i = 0; !ret && i < functions.cnt; i++) {
			struct probe *p = probes_add(out, functions.v[i].name);

			if (!p) {
				ret = -ENOMEM;
				break;
			}
			char *name = p->name;
			*p = functions.v[i];
			p->name = name;
		}
		probes_free(&functions);
	}
	if (ret)
		return ret;
	for (size_t i = 0; i < out->cnt; i++)
		if (out->v[i].kind == PROBE_FUNC || out->v[i].role == TP_GENERIC)
			chosen++;
	return chosen ? 0 : nothing_to_probe(what, req->filter_func, err, errlen);
}
