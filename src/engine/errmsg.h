/* The parsers' way to fail with a reason: one line into the caller's buffer (if it gave
 * one), and -1. */
#ifndef OVLFS_ERRMSG_H
#define OVLFS_ERRMSG_H

#include <stdarg.h>
#include <stdio.h>

__attribute__((format(printf, 3, 4))) static inline int ovl_errmsg(char *err, size_t errlen,
								   const char *fmt, ...)
{
	va_list ap;

	if (errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

#endif
