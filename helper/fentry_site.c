// SPDX-License-Identifier: Apache-2.0
#include "fentry_site.h"

#include <elf.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The kernel's memory as /proc/kcore maps it: one PT_LOAD a region. */
struct kcore_seg {
	uint64_t vaddr, size, offset;
};

struct fentry_sites {
	int fd;
	size_t nseg;
	struct kcore_seg *seg;
};

struct fentry_sites *fentry_sites_open(void)
{
	struct fentry_sites *fs = NULL;
	Elf64_Ehdr eh;
	Elf64_Phdr *ph = NULL;
	int fd = open("/proc/kcore", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	if (pread(fd, &eh, sizeof(eh), 0) != sizeof(eh) || memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0)
		goto fail;
	ph = calloc(eh.e_phnum, sizeof(*ph));
	fs = calloc(1, sizeof(*fs));
	if (!ph || !fs)
		goto fail;
	fs->seg = calloc(eh.e_phnum, sizeof(*fs->seg));
	if (!fs->seg)
		goto fail;
	ssize_t want = (ssize_t)eh.e_phnum * (ssize_t)sizeof(*ph);
	if (pread(fd, ph, want, eh.e_phoff) != want)
		goto fail;
	for (size_t i = 0; i < eh.e_phnum; i++)
		if (ph[i].p_type == PT_LOAD && ph[i].p_filesz)
			fs->seg[fs->nseg++] = (struct kcore_seg){ ph[i].p_vaddr, ph[i].p_filesz, ph[i].p_offset };
	free(ph);
	fs->fd = fd;
	return fs;
fail:
	free(ph);
	if (fs)
		free(fs->seg);
	free(fs);
	close(fd);
	return NULL;
}

void fentry_sites_close(struct fentry_sites *fs)
{
	if (!fs)
		return;
	close(fs->fd);
	free(fs->seg);
	free(fs);
}

/* endbr64, and the two nops the kernel seals an unused one into at boot (6.1: osp nopl (%rax); 6.2+: nopl -42(%rax)). */
static const uint8_t endbr[][4] = {
	{ 0xf3, 0x0f, 0x1e, 0xfa },
	{ 0x66, 0x0f, 0x1f, 0x00 },
	{ 0x0f, 0x1f, 0x40, 0xd6 },
};

/* ftrace's 5-byte nop at a call site nobody traces: nopl 0(%rax,%rax,1), or K8's (5.10 on some CPUs). */
static const uint8_t nop5[][5] = {
	{ 0x0f, 0x1f, 0x44, 0x00, 0x00 },
	{ 0x66, 0x66, 0x90, 0x66, 0x90 },
};

#define CALL_REL32 0xe8
#define ENDBR_LEN 4
#define SITE_LEN 5

bool fentry_site_in(const uint8_t *code, size_t len)
{
	size_t at = 0;

	if (len < ENDBR_LEN + SITE_LEN)
		return false;
	for (size_t i = 0; i < sizeof(endbr) / sizeof(endbr[0]); i++)
		if (memcmp(code, endbr[i], ENDBR_LEN) == 0)
			at = ENDBR_LEN;
	if (code[at] == CALL_REL32)
		return true; /* traced by someone: ftrace's call */
	for (size_t i = 0; i < sizeof(nop5) / sizeof(nop5[0]); i++)
		if (memcmp(code + at, nop5[i], SITE_LEN) == 0)
			return true;
	return false;
}

bool fentry_site_at(const struct fentry_sites *fs, uint64_t addr)
{
	uint8_t code[ENDBR_LEN + SITE_LEN];

	if (!fs || !addr)
		return false;
	for (size_t i = 0; i < fs->nseg; i++) {
		const struct kcore_seg *s = &fs->seg[i];

		if (addr < s->vaddr || s->size < sizeof(code) || addr - s->vaddr > s->size - sizeof(code))
			continue;
		if (pread(fs->fd, code, sizeof(code), (off_t)(s->offset + (addr - s->vaddr))) != sizeof(code))
			return false;
		return fentry_site_in(code, sizeof(code));
	}
	return false;
}
