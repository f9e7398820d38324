/* SPDX-License-Identifier: Apache-2.0 */
#ifndef PWRU_HELPER_VERSION
#define PWRU_HELPER_VERSION "0.1.0"
#endif
