/* libfuse's custom I/O hooks on /dev/fuse (see dev_hooks.c). */
#ifndef OVLFS_DEV_HOOKS_H
#define OVLFS_DEV_HOOKS_H

#include <stdbool.h>
#include <stddef.h>

struct ovl_frontend;

/* Hooks /dev/fuse I/O so that the INIT reply accepts shared mmap of direct_io files, the
 * INIT and OPEN replies can carry passthrough (if passthrough), replies to io_uring
 * requests go back through their queue, and requests newer than libfuse (rawops.c) are
 * answered; requests are then read, never spliced. After
 * fuse_session_mount (fe->session and fe->dev_fd set); passthrough only for a daemon with
 * CAP_SYS_ADMIN. 0 or -errno. */
int ovl_dev_hooks_install(struct ovl_frontend *fe, bool passthrough);

/* The requests read so far, per opcode, as " LOOKUP=12 CREATE=3..." (nonzero ones) in buf,
 * cut to size; returns the length written. */
size_t ovl_dev_requests_format(char *buf, size_t size);
/* Counts one request (its raw bytes, the fuse_in_header first): those read from /dev/fuse
 * are counted here already; io_uring's come through uring.c. */
void ovl_dev_count_request(const char *req, size_t len);

#endif
