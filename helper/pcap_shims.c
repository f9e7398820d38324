// SPDX-License-Identifier: Apache-2.0
/*
 * Debian's static libpcap pulls in libdbus for its D-Bus capture source, and
 * static libdbus wants two systemd socket-activation calls. The helper only
 * compiles filters and never opens a capture, so these are never reached;
 * they only satisfy the static link (libsystemd ships no static library).
 */
int sd_listen_fds(int unset_environment);
int sd_is_socket(int fd, int family, int type, int listening);

int sd_listen_fds(int unset_environment)
{
	(void)unset_environment;
	return 0;
}

int sd_is_socket(int fd, int family, int type, int listening)
{
	(void)fd;
	(void)family;
	(void)type;
	(void)listening;
	return 0;
}
