/* FUSE passthrough of open upper files (see passthrough.c). */
#ifndef OVLFS_PASSTHROUGH_H
#define OVLFS_PASSTHROUGH_H

#include <stdbool.h>

struct ovl_frontend;

enum ovl_pt_mode {
	OVL_PT_CACHED,	    /* through the daemon, page cache kept */
	OVL_PT_DIRECT,	    /* through the daemon, no page cache */
	OVL_PT_PASSTHROUGH, /* straight to the layer file */
	OVL_PT_PT_DIRECT,   /* through the daemon, no page cache, but marked passthrough: the
			     * kernel wants every open of an inode in passthrough to be */
};

/* Files opened read-only below this size are served through the page cache (kept across
 * opens) rather than in passthrough, unless the node is in passthrough already: the
 * backing file costs more per open than a cached read saves (bench/open_cost.py). */
#define OVL_PT_MIN_READ_SIZE (64 * 1024)

/* How to open node's file whose layer fd is fd, opened with open_flags; eligible: an upper
 * regular file that passthrough may serve. With OVL_PT_PASSTHROUGH, the next open reply
 * this thread sends carries it; ovl_pt_reply_done after the reply. Every call is paired
 * with ovl_pt_release. */
enum ovl_pt_mode ovl_pt_open(struct ovl_frontend *fe, const void *node, int fd, int open_flags,
			     bool eligible);
void ovl_pt_reply_done(void);
/* fd: the released file's layer fd (-1: none), read for the page cache after the first
 * read of a file written in passthrough. */
void ovl_pt_release(struct ovl_frontend *fe, const void *node, enum ovl_pt_mode mode, int fd);
/* For the /dev/fuse write hook: the backing id the open reply this thread is about to send
 * carries, or 0. */
int ovl_pt_pending_id(void);

#endif
