// SPDX-License-Identifier: Apache-2.0
#include "privileges.h"

#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CAP_BIT(c) (1ULL << (c))
#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif

bool privileged(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2] = { 0 };
	unsigned long long eff;

	if (syscall(SYS_capget, &hdr, data) != 0)
		return geteuid() == 0;
	eff = data[0].effective | ((unsigned long long)data[1].effective << 32);
	return (eff & CAP_BIT(CAP_SYS_ADMIN)) || ((eff & CAP_BIT(CAP_BPF)) && (eff & CAP_BIT(CAP_PERFMON)));
}
