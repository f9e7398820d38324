/* SPDX-License-Identifier: Apache-2.0 */
#ifndef PWRU_PRIVILEGES_H
#define PWRU_PRIVILEGES_H

#include <stdbool.h>

/* Whether the helper may trace: CAP_BPF with CAP_PERFMON (5.8+), or CAP_SYS_ADMIN. */
bool privileged(void);

#endif
