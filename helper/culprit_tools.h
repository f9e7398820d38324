/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The node's own netfilter tools (iptables-legacy-save, iptables-nft-save,
 * their ip6 twins, nft), run in the network namespaces a culprit is looked
 * for in. A child process enters the host's mount namespace (the tools must
 * be the node's: in Kubernetes mode the helper runs in a debug pod's image)
 * and then each namespace in turn, runs the tools and sends back what they
 * printed; the helper never blocks on it (tools_pump), and a child that takes
 * too long is killed.
 */
#ifndef PWRU_CULPRIT_TOOLS_H
#define PWRU_CULPRIT_TOOLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"

/* What each tool is called in a CULPRIT frame and how it is run; the order is the parse order. */
enum nf_tool { TOOL_IPT_LEGACY, TOOL_IP6T_LEGACY, TOOL_IPT_NFT, TOOL_IP6T_NFT, TOOL_NFT, TOOL_COUNT };
extern const char *const tool_names[TOOL_COUNT];
/* Answers that are not a tool's: the namespace could not be entered; the node's mount namespace could not be. */
#define TOOL_NO_NETNS (-1)
#define TOOL_NOTE (-2)

/* A namespace to look in: its inode, and a file of it (/run/netns/NAME, /proc/PID/ns/net). */
struct ns_ref {
	unsigned int inode;
	char path[300];
};

/* One tool's answer in one namespace, as the child reported it. */
struct tool_output {
	unsigned int netns;
	int tool;	  /* enum nf_tool, TOOL_NO_NETNS or TOOL_NOTE (the text says what) */
	int status;	  /* exit status; 127: not found on the node; -1: not run (nothing of its kind in the namespace) */
	const char *text; /* what it printed (or why the namespace could not be entered), not NUL-terminated */
	size_t len;
	uint64_t at; /* CLOCK_MONOTONIC ns once the tool had exited: its counters were read before */
};

struct tool_job {
	pid_t pid;	   /* 0: not running */
	int fd;		   /* the child's output */
	uint64_t started;  /* CLOCK_MONOTONIC ns before the child read anything: counters include what came before */
	double deadline;   /* CLOCK_MONOTONIC s */
	struct buf out;
	bool done, timed_out;
};

/* Every namespace that exists now: /run/netns names and processes' namespaces. Returns how many (at most max). */
size_t tools_find_namespaces(struct ns_ref *out, size_t max);
/* The inode of the helper's own network namespace. */
int tools_own_netns(unsigned int *inode);
/* The file of one namespace; false when nothing names it any more. */
bool tools_find_namespace(unsigned int inode, struct ns_ref *out);

/* Starts a child that runs every tool in each namespace; 0 or -errno. */
int tools_start(struct tool_job *j, const struct ns_ref *ns, size_t n, double timeout_s);
/* Reads what the child wrote so far, without blocking; true once the job is over (done, or killed at its deadline). */
bool tools_pump(struct tool_job *j);
/* The next answer in a finished job's output (*off starts at 0); false at the end. */
bool tools_next(const struct tool_job *j, size_t *off, struct tool_output *o);
/* Kills a child still running and frees the job. */
void tools_free(struct tool_job *j);

#endif
