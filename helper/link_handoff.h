/* SPDX-License-Identifier: Apache-2.0 */
#ifndef PWRU_LINK_HANDOFF_H
#define PWRU_LINK_HANDOFF_H

#include <stdbool.h>

struct bpf_object_skeleton;

/*
 * Function probes handed to the kernel to remove once the helper is gone.
 *
 * Removing a kprobe-multi link or an fexit trampoline waits for RCU grace
 * periods, one removal after the other under ftrace's lock (~0.15-0.2 s each
 * in the 6.12 guest: ~1 s for the probes' link and the netfilter walkers' and
 * copy functions' trampolines). The programs are stopped before (they return
 * at their first instruction), so nothing needs the helper to wait for that.
 *
 * handoff_pin() forks a child that pins each link given in a bpffs of its
 * own (mounted in a private mount namespace) and closes its copies; the
 * helper then closes its descriptors as usual, which no longer waits (the
 * pins hold the links). handoff_end() lets the child exit: its namespace, its
 * bpffs and the pins go with it, and the kernel releases each link from a
 * worker of its own (bpf_link_put() from the pinned inode's RCU callback).
 * If the helper or the child is killed on the way, the pins go all the same.
 * Where this cannot be done (no CAP_SYS_ADMIN to mount, no fork), nothing is
 * pinned and closing the descriptors waits, as before.
 */
void handoff_add(int link_fd);
/* Every link a skeleton attached. */
void handoff_add_skeleton(const struct bpf_object_skeleton *s);
/* Returns whether the links given are now pinned (closing them will not wait). */
bool handoff_pin(void);
/* After the last descriptor is closed: the child exits, the kernel goes on alone. */
void handoff_end(void);

#endif
