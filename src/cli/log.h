/* Messages of the daemon: stderr in the foreground, syslog once daemonized. */
#ifndef OVLFS_LOG_H
#define OVLFS_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <syslog.h> /* LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG */

/*
 * Chooses where messages go: syslog (openlog("ovlfs", LOG_PID, LOG_DAEMON)) or stderr.
 * On stderr LOG_NOTICE and above are written as "ovlfs: <message>", LOG_INFO and
 * LOG_DEBUG only with debug; syslog gets LOG_INFO and above (LOG_DEBUG with debug).
 * Also routes libfuse's own messages (its -d request trace included) through here.
 * May be called again (e.g. after daemonizing) to switch.
 */
void ovl_log_init(bool to_syslog, bool debug);

/* One message; a trailing newline is optional. Thread-safe. */
__attribute__((format(printf, 2, 3))) void ovl_log(int level, const char *fmt, ...);
void ovl_vlog(int level, const char *fmt, va_list ap);

#endif
