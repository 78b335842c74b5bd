/* Requests libfuse 3.14 does not know, answered on the raw message (see rawops.c). */
#ifndef OVLFS_RAWOPS_H
#define OVLFS_RAWOPS_H

#include <stdbool.h>
#include <stddef.h>

struct ovl_frontend;

/* Room for the longest reply ovl_raw_answer writes. */
#define OVL_RAW_REPLY_MAX 512

/* req: one whole request (fuse_in_header first), len bytes. If it is one of ours, writes
 * its reply (fuse_out_header first) into out and returns the reply's length; 0: not ours,
 * libfuse's dispatch takes it. */
size_t ovl_raw_answer(struct ovl_frontend *fe, const char *req, size_t len, char *out);
/* After the reply out to req went (sent: the kernel took it), before this thread answers
 * anything else: what a reply that never arrived leaves behind (a TMPFILE's file) goes. */
void ovl_raw_sent(struct ovl_frontend *fe, const char *req, const char *out, bool sent);

#endif
