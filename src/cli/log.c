/* Messages of the daemon: stderr in the foreground, syslog once daemonized. */
#include "log.h"

#include <errno.h>
#include <fuse_log.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Set before the session's threads start; read-only afterwards. */
static bool use_syslog;
static bool debug_on;

static bool wanted(int level)
{
	if (level >= LOG_DEBUG)
		return debug_on;
	return level <= LOG_NOTICE || use_syslog || debug_on;
}

/* Formats into one heap string without trailing newlines; NULL when out of memory. */
static char *format_line(const char *fmt, va_list ap)
{
	char *s;
	size_t n;

	if (vasprintf(&s, fmt, ap) < 0)
		return NULL;
	n = strlen(s);
	while (n && s[n - 1] == '\n')
		s[--n] = '\0';
	return s;
}

static void emit(int level, const char *prefix, const char *fmt, va_list ap)
{
	int saved = errno;
	char *line = format_line(fmt, ap);
	const char *msg = line ? line : "(message lost: out of memory)";

	if (use_syslog)
		syslog(level, "%s", msg);
	else
		/* One stdio call per line: lines of several threads do not interleave. */
		fprintf(stderr, "%s%s\n", prefix, msg);
	free(line);
	errno = saved;
}

void ovl_vlog(int level, const char *fmt, va_list ap)
{
	if (wanted(level))
		emit(level, "ovlfs: ", fmt, ap);
}

void ovl_log(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ovl_vlog(level, fmt, ap);
	va_end(ap);
}

/* libfuse's messages (its levels are syslog's): on stderr exactly as libfuse writes them. */
static void fuse_message(enum fuse_log_level level, const char *fmt, va_list ap)
{
	if (!use_syslog) {
		int saved = errno;

		vfprintf(stderr, fmt, ap);
		errno = saved;
	} else if ((int)level < LOG_DEBUG || debug_on) {
		emit((int)level, "", fmt, ap);
	}
}

void ovl_log_init(bool to_syslog, bool debug)
{
	if (use_syslog && !to_syslog)
		closelog();
	if (to_syslog && !use_syslog)
		openlog("ovlfs", LOG_PID, LOG_DAEMON);
	use_syslog = to_syslog;
	debug_on = debug;
	fuse_set_log_func(fuse_message);
}
