// SPDX-License-Identifier: Apache-2.0
/*
 * Classic BPF to eBPF. Register use inside the stub:
 *   r6 = A, r7 = X, r8 = packet start, r9 = linear length,
 *   stack: [-4] packet length, [-8 - 4*i] scratch M[i], [-80..-72] load buffer,
 *          [-144..-81] the packet's first 64 bytes, [-148] how many of them are valid,
 *          [-152] the mode argument, across the prefetch's helper call.
 * The first bytes are read once, as many of the first 64 as the fixed-offset
 * loads need (all of "host", "udp", "port" on IPv4 headers...): those loads
 * then cost no helper call, which matters because the filter runs for every
 * packet every probe sees. Other loads read the packet with
 * bpf_probe_read_kernel. Likewise only the scratch words some load reads are
 * zeroed first (the verifier wants them initialised).
 * A classic program returns 0 on an out-of-bounds load; so does this one.
 *
 * The direct form (for tp_btf programs on kernels that allow it, see
 * pcap_filter) gets the packet as a pointer the verifier lets it load from
 * (skb->head is read-only untrusted memory there; a faulting load reads 0):
 * no prefetch, no helper calls, each load one instruction after its bounds
 * check.
 */
#include "filter_translate.h"

#include "buf.h"

#include <linux/filter.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define R_A BPF_REG_6
#define R_X BPF_REG_7
#define R_DATA BPF_REG_8
#define R_LINLEN BPF_REG_9
#define OFF_PKTLEN (-4)
#define OFF_MEM(i) (-8 - 4 * (i))
#define OFF_LOADBUF (-80)
#define PREFETCH 64
#define OFF_PREFETCH (-144)
#define OFF_PREFETCH_LEN (-148)
#define OFF_MODE (-152)
#define CBPF_MEMWORDS 16

/* Jump targets not yet known while emitting: a classic index, or the exit paths. */
enum target_kind { T_NONE, T_CBPF, T_REJECT, T_FORM, T_HERE /* an emitted position, set later */ };

struct emitter {
	struct bpf_insn *insns;
	enum target_kind *kind; /* per emitted insn: what its offset points at */
	size_t *target;		/* classic index when kind == T_CBPF, the mode when T_FORM */
	size_t cnt, cap;
	size_t *cbpf_pos;	/* eBPF position of each classic insn of the current program */
	bool oom;
	__u32 prefetch;		/* bytes read ahead: the end of the furthest fixed-offset load, up to PREFETCH */
	__u16 mem_read;		/* scratch words some load reads */
	bool direct;		/* loads straight from the packet pointer (the direct form) */
};

static struct bpf_insn mk(__u8 code, __u8 dst, __u8 src, __s16 off, __s32 imm)
{
	struct bpf_insn i = { .code = code, .dst_reg = dst, .src_reg = src, .off = off, .imm = imm };

	return i;
}

static void emit_to(struct emitter *e, struct bpf_insn insn, enum target_kind kind, size_t target)
{
	if (e->cnt == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 256;
		struct bpf_insn *ni = realloc(e->insns, cap * sizeof(*ni));
		enum target_kind *nk = realloc(e->kind, cap * sizeof(*nk));
		size_t *nt = realloc(e->target, cap * sizeof(*nt));

		if (ni)
			e->insns = ni;
		if (nk)
			e->kind = nk;
		if (nt)
			e->target = nt;
		if (!ni || !nk || !nt) {
			e->oom = true;
			set_out_of_memory();
			return;
		}
		e->cap = cap;
	}
	e->insns[e->cnt] = insn;
	e->kind[e->cnt] = kind;
	e->target[e->cnt] = target;
	e->cnt++;
}

static void emit(struct emitter *e, struct bpf_insn insn)
{
	emit_to(e, insn, T_NONE, 0);
}

static void emit_reject_if(struct emitter *e, struct bpf_insn jmp)
{
	emit_to(e, jmp, T_REJECT, 0);
}

/* dst = big-endian load of size bytes at base + off: the stack's load buffer, or the packet (the direct form). */
static void emit_load_be(struct emitter *e, int dst, int base, __s16 off, int size)
{
	emit(e, mk(BPF_LDX | BPF_MEM | (size == 1 ? BPF_B : size == 2 ? BPF_H : BPF_W), dst, base, off, 0));
	if (size > 1)
		emit(e, mk(BPF_ALU | BPF_END | BPF_TO_BE, dst, 0, 0, size * 8));
}

/* dst = big-endian load of size bytes at r3 (already bounds-checked), through the load buffer. */
static void emit_read(struct emitter *e, int dst, int size)
{
	emit(e, mk(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_1, BPF_REG_10, 0, 0));
	emit(e, mk(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_1, 0, 0, OFF_LOADBUF));
	emit(e, mk(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_2, 0, 0, size));
	emit(e, mk(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_probe_read_kernel));
	emit_reject_if(e, mk(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_0, 0, 0, 0));
	emit_load_be(e, dst, BPF_REG_10, OFF_LOADBUF, size);
}

/* dst = P[k:size] from the prefetched bytes, assembled big-endian byte by byte (stack loads must be aligned). */
static void emit_prefetched(struct emitter *e, int dst, __u32 k, int size)
{
	emit(e, mk(BPF_LDX | BPF_MEM | BPF_B, dst, BPF_REG_10, OFF_PREFETCH + (int)k, 0));
	for (int i = 1; i < size; i++) {
		emit(e, mk(BPF_ALU | BPF_LSH | BPF_K, dst, 0, 0, 8));
		emit(e, mk(BPF_LDX | BPF_MEM | BPF_B, BPF_REG_2, BPF_REG_10, OFF_PREFETCH + (int)k + i, 0));
		emit(e, mk(BPF_ALU | BPF_OR | BPF_X, dst, BPF_REG_2, 0, 0));
	}
}

static void emit_load_abs_slow(struct emitter *e, int dst, __u32 k, int size);

/* dst = P[k:size]: from the prefetched bytes when they hold it, else read from the packet. */
static void emit_load_abs(struct emitter *e, int dst, __u32 k, int size)
{
	size_t to_slow, to_done;

	if (e->direct) {
		/* r9 holds a u32: a 64-bit compare against k + size cannot wrap. */
		emit_reject_if(e, mk(BPF_JMP | BPF_JLT | BPF_K, R_LINLEN, 0, 0, (__s32)(k + size)));
		emit_load_be(e, dst, R_DATA, (__s16)k, size);
		return;
	}
	if (k + size > e->prefetch) {
		emit_load_abs_slow(e, dst, k, size);
		return;
	}
	emit(e, mk(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_1, BPF_REG_10, OFF_PREFETCH_LEN, 0));
	to_slow = e->cnt;
	emit_to(e, mk(BPF_JMP | BPF_JLT | BPF_K, BPF_REG_1, 0, 0, (__s32)(k + size)), T_HERE, 0);
	emit_prefetched(e, dst, k, size);
	to_done = e->cnt;
	emit_to(e, mk(BPF_JMP | BPF_JA, 0, 0, 0, 0), T_HERE, 0);
	if (e->oom)
		return;
	e->target[to_slow] = e->cnt;
	emit_load_abs_slow(e, dst, k, size);
	if (e->oom)
		return;
	e->target[to_done] = e->cnt;
}

static void emit_load_abs_slow(struct emitter *e, int dst, __u32 k, int size)
{
	/* r9 holds a u32: a 64-bit compare against k + size cannot wrap. */
	emit_reject_if(e, mk(BPF_JMP | BPF_JLT | BPF_K, R_LINLEN, 0, 0, (__s32)(k + size)));
	emit(e, mk(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_3, R_DATA, 0, 0));
	emit(e, mk(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_3, 0, 0, (__s32)k));
	emit_read(e, dst, size);
}

/* A = P[X + k:size] */
static void emit_load_ind(struct emitter *e, __u32 k, int size)
{
	emit(e, mk(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_3, R_X, 0, 0));
	emit(e, mk(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_3, 0, 0, (__s32)k));
	emit(e, mk(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_2, BPF_REG_3, 0, 0));
	emit(e, mk(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, size));
	emit_reject_if(e, mk(BPF_JMP | BPF_JGT | BPF_X, BPF_REG_2, R_LINLEN, 0, 0));
	if (e->direct) {
		/* pointer += offset: the verifier keeps the pointer's type only with the pointer on the left */
		emit(e, mk(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_2, R_DATA, 0, 0));
		emit(e, mk(BPF_ALU64 | BPF_ADD | BPF_X, BPF_REG_2, BPF_REG_3, 0, 0));
		emit_load_be(e, R_A, BPF_REG_2, 0, size);
		return;
	}
	emit(e, mk(BPF_ALU64 | BPF_ADD | BPF_X, BPF_REG_3, R_DATA, 0, 0));
	emit_read(e, R_A, size);
}

static int size_of(__u16 code)
{
	switch (BPF_SIZE(code)) {
	case BPF_B:
		return 1;
	case BPF_H:
		return 2;
	default:
		return 4;
	}
}

/* Translates one classic program; its jumps are resolved by the caller. */
static int translate_program(struct emitter *e, const struct cbpf_insn *in, size_t n, char *err, size_t errlen)
{
	for (size_t pc = 0; pc < n; pc++) {
		const struct cbpf_insn *c = &in[pc];
		__u16 code = c->code;
		__u32 k = c->k;

		e->cbpf_pos[pc] = e->cnt;
		switch (BPF_CLASS(code)) {
		case BPF_LD:
		case BPF_LDX: {
			int dst = BPF_CLASS(code) == BPF_LD ? R_A : R_X;

			switch (BPF_MODE(code)) {
			case BPF_ABS:
				if (k >= 0x10000) { /* ancillary data (SKF_AD_*) or beyond any skb */
					snprintf(err, errlen, "unsupported classic BPF load at offset %#x", k);
					return -1;
				}
				emit_load_abs(e, dst, k, size_of(code));
				break;
			case BPF_IND:
				if (k >= 0x10000) {
					snprintf(err, errlen, "unsupported classic BPF load at offset %#x", k);
					return -1;
				}
				emit_load_ind(e, k, size_of(code));
				break;
			case BPF_LEN:
				emit(e, mk(BPF_LDX | BPF_MEM | BPF_W, dst, BPF_REG_10, OFF_PKTLEN, 0));
				break;
			case BPF_IMM:
				emit(e, mk(BPF_ALU | BPF_MOV | BPF_K, dst, 0, 0, (__s32)k));
				break;
			case BPF_MEM:
				if (k >= CBPF_MEMWORDS)
					goto bad;
				emit(e, mk(BPF_LDX | BPF_MEM | BPF_W, dst, BPF_REG_10, OFF_MEM(k), 0));
				break;
			case BPF_MSH: /* X = 4 * (P[k] & 0xf): the IPv4 header length */
				if (k >= 0x10000)
					goto bad;
				emit_load_abs(e, R_X, k, 1);
				emit(e, mk(BPF_ALU | BPF_AND | BPF_K, R_X, 0, 0, 0xf));
				emit(e, mk(BPF_ALU | BPF_LSH | BPF_K, R_X, 0, 0, 2));
				break;
			default:
				goto bad;
			}
			break;
		}
		case BPF_ST:
		case BPF_STX:
			if (k >= CBPF_MEMWORDS)
				goto bad;
			emit(e, mk(BPF_STX | BPF_MEM | BPF_W, BPF_REG_10, BPF_CLASS(code) == BPF_ST ? R_A : R_X,
				   OFF_MEM(k), 0));
			break;
		case BPF_ALU: {
			__u8 op = BPF_OP(code);

			if (op == BPF_NEG) {
				emit(e, mk(BPF_ALU | BPF_NEG, R_A, 0, 0, 0));
				break;
			}
			if (op != BPF_ADD && op != BPF_SUB && op != BPF_MUL && op != BPF_DIV && op != BPF_OR &&
			    op != BPF_AND && op != BPF_LSH && op != BPF_RSH && op != BPF_MOD && op != BPF_XOR)
				goto bad;
			if (BPF_SRC(code) == BPF_X) {
				/* Classic BPF rejects the packet on division by zero. */
				if (op == BPF_DIV || op == BPF_MOD)
					emit_reject_if(e, mk(BPF_JMP | BPF_JEQ | BPF_K, R_X, 0, 0, 0));
				emit(e, mk(BPF_ALU | op | BPF_X, R_A, R_X, 0, 0));
			} else {
				if ((op == BPF_DIV || op == BPF_MOD) && k == 0)
					emit_reject_if(e, mk(BPF_JMP | BPF_JA, 0, 0, 0, 0));
				else
					emit(e, mk(BPF_ALU | op | BPF_K, R_A, 0, 0, (__s32)k));
			}
			break;
		}
		case BPF_JMP: {
			__u8 op = BPF_OP(code);

			if (op == BPF_JA) {
				if (pc + 1 + k >= n)
					goto bad;
				emit_to(e, mk(BPF_JMP | BPF_JA, 0, 0, 0, 0), T_CBPF, pc + 1 + k);
				break;
			}
			if (op != BPF_JEQ && op != BPF_JGT && op != BPF_JGE && op != BPF_JSET)
				goto bad;
			if (pc + 1 + c->jt >= n || pc + 1 + c->jf >= n)
				goto bad;
			/* Classic comparisons are unsigned 32-bit: JMP32. */
			if (BPF_SRC(code) == BPF_X)
				emit_to(e, mk(BPF_JMP32 | op | BPF_X, R_A, R_X, 0, 0), T_CBPF, pc + 1 + c->jt);
			else
				emit_to(e, mk(BPF_JMP32 | op | BPF_K, R_A, 0, 0, (__s32)k), T_CBPF, pc + 1 + c->jt);
			if (c->jf != 0)
				emit_to(e, mk(BPF_JMP | BPF_JA, 0, 0, 0, 0), T_CBPF, pc + 1 + c->jf);
			break;
		}
		case BPF_RET:
			if (BPF_RVAL(code) == BPF_K)
				emit(e, mk(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, k ? 1 : 0));
			else if (BPF_RVAL(code) == BPF_A)
				emit(e, mk(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_0, R_A, 0, 0));
			else
				goto bad;
			emit(e, mk(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
			break;
		case BPF_MISC:
			if (BPF_MISCOP(code) == BPF_TAX)
				emit(e, mk(BPF_ALU | BPF_MOV | BPF_X, R_X, R_A, 0, 0));
			else if (BPF_MISCOP(code) == BPF_TXA)
				emit(e, mk(BPF_ALU | BPF_MOV | BPF_X, R_A, R_X, 0, 0));
			else
				goto bad;
			break;
		default:
			goto bad;
		}
		if (e->oom) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	return 0;
bad:
	snprintf(err, errlen, "unsupported classic BPF instruction");
	return -1;
}

/* Sets one jump's offset now that its destination is known. */
static int set_offset(struct emitter *e, size_t i, size_t to, char *err, size_t errlen)
{
	long off = (long)to - (long)(i + 1);

	if (off < -32768 || off > 32767) {
		snprintf(err, errlen, "filter too large: a jump spans %ld instructions", off);
		return -1;
	}
	e->insns[i].off = (__s16)off;
	e->kind[i] = T_NONE;
	return 0;
}

/* Resolves the jumps of the classic program just translated (from position first on). */
static int resolve_cbpf_jumps(struct emitter *e, size_t first, char *err, size_t errlen)
{
	for (size_t i = first; i < e->cnt; i++)
		if (e->kind[i] == T_CBPF && set_offset(e, i, e->cbpf_pos[e->target[i]], err, errlen) < 0)
			return -1;
	return 0;
}

/* Resolves the jumps to the shared reject path and to each form. */
static int resolve_exit_jumps(struct emitter *e, size_t reject_pos, const size_t *form_pos, char *err,
			      size_t errlen)
{
	for (size_t i = 0; i < e->cnt; i++) {
		if (e->kind[i] == T_REJECT && set_offset(e, i, reject_pos, err, errlen) < 0)
			return -1;
		if (e->kind[i] == T_FORM && set_offset(e, i, form_pos[e->target[i]], err, errlen) < 0)
			return -1;
		if (e->kind[i] == T_HERE && set_offset(e, i, e->target[i], err, errlen) < 0)
			return -1;
	}
	return 0;
}

static bool jumps_to_reject(const struct emitter *e)
{
	for (size_t i = 0; i < e->cnt; i++)
		if (e->kind[i] == T_REJECT)
			return true;
	return false;
}

/* What the prologue must prepare for a classic program: how far to read ahead, which scratch words to zero. */
static void plan(struct emitter *e, const struct cbpf_insn *in, size_t n)
{
	for (size_t pc = 0; pc < n; pc++) {
		__u16 code = in[pc].code;
		__u32 k = in[pc].k, end = 0;

		if (BPF_CLASS(code) != BPF_LD && BPF_CLASS(code) != BPF_LDX)
			continue;
		if (BPF_MODE(code) == BPF_ABS && k < PREFETCH)
			end = k + size_of(code);
		else if (BPF_MODE(code) == BPF_MSH && k < PREFETCH)
			end = k + 1;
		else if (BPF_MODE(code) == BPF_MEM && k < CBPF_MEMWORDS)
			e->mem_read |= (__u16)(1u << k);
		if (end <= PREFETCH && end > e->prefetch)
			e->prefetch = end;
	}
}

static void emit_prologue(struct emitter *e)
{
	emit(e, mk(BPF_ALU64 | BPF_MOV | BPF_X, R_DATA, BPF_REG_1, 0, 0));
	emit(e, mk(BPF_ALU | BPF_MOV | BPF_X, R_LINLEN, BPF_REG_2, 0, 0));
	emit(e, mk(BPF_STX | BPF_MEM | BPF_W, BPF_REG_10, BPF_REG_3, OFF_PKTLEN, 0));
	emit(e, mk(BPF_ALU64 | BPF_MOV | BPF_K, R_A, 0, 0, 0));
	emit(e, mk(BPF_ALU64 | BPF_MOV | BPF_K, R_X, 0, 0, 0));
	/* Scratch memory starts zeroed, as classic BPF has it and the verifier wants it initialised. */
	for (int i = 0; i < CBPF_MEMWORDS; i++)
		if (e->mem_read & (1u << i))
			emit(e, mk(BPF_STX | BPF_MEM | BPF_W, BPF_REG_10, R_A, OFF_MEM(i), 0));
	if (e->direct)
		return; /* no helper call will clobber the mode in r4, and nothing is read ahead */
	emit(e, mk(BPF_STX | BPF_MEM | BPF_W, BPF_REG_10, BPF_REG_4, OFF_MODE, 0));
	if (!e->prefetch) {
		emit(e, mk(BPF_STX | BPF_MEM | BPF_W, BPF_REG_10, R_A, OFF_PREFETCH_LEN, 0));
		return;
	}
	/* Prefetch: valid = read ok ? min(linear length, prefetch) : 0. */
	emit(e, mk(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_1, BPF_REG_10, 0, 0));
	emit(e, mk(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_1, 0, 0, OFF_PREFETCH));
	emit(e, mk(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_2, 0, 0, (__s32)e->prefetch));
	emit(e, mk(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_3, R_DATA, 0, 0));
	emit(e, mk(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_probe_read_kernel));
	emit(e, mk(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_1, 0, 0, 0));
	emit(e, mk(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_0, 0, 3, 0)); /* failed: store 0 */
	emit(e, mk(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_1, R_LINLEN, 0, 0));
	emit(e, mk(BPF_JMP | BPF_JLE | BPF_K, BPF_REG_1, 0, 1, (__s32)e->prefetch));
	emit(e, mk(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_1, 0, 0, (__s32)e->prefetch));
	emit(e, mk(BPF_STX | BPF_MEM | BPF_W, BPF_REG_10, BPF_REG_1, OFF_PREFETCH_LEN, 0));
	emit(e, mk(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_4, BPF_REG_10, OFF_MODE, 0));
}

static void emit_reject(struct emitter *e)
{
	emit(e, mk(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0));
	emit(e, mk(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
}

/* Emits one form of the filter, or a plain "no match" when that form did not compile. */
static int emit_form(struct emitter *e, const struct cbpf_insn *prog, size_t n, char *err, size_t errlen)
{
	size_t first = e->cnt;
	int ret;

	if (!prog || n == 0) {
		emit_reject(e);
		return 0;
	}
	e->cbpf_pos = calloc(n, sizeof(size_t));
	if (!e->cbpf_pos) {
		set_out_of_memory();
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ret = translate_program(e, prog, n, err, errlen);
	if (ret == 0)
		ret = resolve_cbpf_jumps(e, first, err, errlen);
	free(e->cbpf_pos);
	e->cbpf_pos = NULL;
	return ret;
}

/*
 * Layout: prologue; a jump per mode after the first to its form; the forms
 * in mode order (the first falls through); reject: r0 = 0, exit (when a load
 * can reject). Modes past nforms are never asked for.
 */
static int build(const struct cbpf_prog *const *forms, size_t nforms, bool direct, struct bpf_insn **out,
		 size_t *out_cnt, char *err, size_t errlen)
{
	struct emitter e = { .direct = direct };
	size_t form_pos[PCAP_MODES] = { 0 }, reject_pos;
	int ret = -1;

	for (size_t m = 0; m < nforms; m++)
		if (forms[m]->ok)
			plan(&e, forms[m]->insns, forms[m]->cnt);
	emit_prologue(&e);
	for (size_t m = 1; m < nforms; m++)
		emit_to(&e, mk(BPF_JMP32 | BPF_JEQ | BPF_K, BPF_REG_4, 0, 0, (__s32)m), T_FORM, m);
	for (size_t m = 0; m < nforms; m++) {
		form_pos[m] = e.cnt;
		if (emit_form(&e, forms[m]->ok ? forms[m]->insns : NULL, forms[m]->cnt, err, errlen) < 0)
			goto out;
	}
	reject_pos = e.cnt;
	/* Only when some load can fail: the verifier refuses unreachable code ("len > 100" loads nothing). */
	if (jumps_to_reject(&e))
		emit_reject(&e);
	if (e.oom) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (resolve_exit_jumps(&e, reject_pos, form_pos, err, errlen) < 0)
		goto out;
	*out = e.insns;
	*out_cnt = e.cnt;
	e.insns = NULL;
	ret = 0;
out:
	free(e.insns);
	free(e.kind);
	free(e.target);
	return ret;
}

int pcap_filter_build(const struct cbpf_prog *raw, const struct cbpf_prog *eth, const struct cbpf_prog *tunnel_raw,
		      const struct cbpf_prog *tunnel_eth, struct pcap_filter *out, char *err, size_t errlen)
{
	const struct cbpf_prog *forms[PCAP_MODES] = { raw, eth, tunnel_raw, tunnel_eth };
	/* Without a tunnel filter the inner forms are left out altogether (no jumps to them). */
	size_t nforms = tunnel_raw && tunnel_eth ? PCAP_MODES : 2;
	int ret;

	memset(out, 0, sizeof(*out));
	out->l3 = raw->ok;
	out->l2 = eth->ok;
	out->tunnel_l3 = nforms > 2 && tunnel_raw->ok;
	out->tunnel_l2 = nforms > 2 && tunnel_eth->ok;
	ret = build(forms, nforms, false, &out->insns, &out->cnt, err, errlen);
	if (ret == 0)
		ret = build(forms, nforms, true, &out->direct_insns, &out->direct_cnt, err, errlen);
	return ret;
}

void pcap_filter_match_all(struct pcap_filter *out)
{
	static const struct bpf_insn all[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 1 },
		{ .code = BPF_JMP | BPF_EXIT },
	};

	memset(out, 0, sizeof(*out));
	out->insns = malloc(sizeof(all));
	out->direct_insns = malloc(sizeof(all));
	if (out->insns && out->direct_insns) {
		memcpy(out->insns, all, sizeof(all));
		memcpy(out->direct_insns, all, sizeof(all));
		out->cnt = out->direct_cnt = 2;
	}
}

void pcap_filter_free(struct pcap_filter *f)
{
	free(f->insns);
	free(f->direct_insns);
	memset(f, 0, sizeof(*f));
}
