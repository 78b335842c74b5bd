/* FUSE passthrough of open upper files (see passthrough.c). */
#ifndef OVLFS_PASSTHROUGH_H
#define OVLFS_PASSTHROUGH_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <stdatomic.h>
#include <stdbool.h>

enum ovl_pt_mode {
	OVL_PT_CACHED,	    /* through the daemon, page cache kept */
	OVL_PT_DIRECT,	    /* through the daemon, no page cache */
	OVL_PT_PASSTHROUGH, /* straight to the layer file */
	OVL_PT_PT_DIRECT,   /* through the daemon, no page cache, but marked passthrough: the
			     * kernel wants every open of an inode in passthrough to be */
};

/* Hooks /dev/fuse I/O so that the INIT and OPEN replies can carry passthrough (if
 * passthrough) and replies to io_uring requests go back through their queue. After
 * fuse_session_mount; passthrough only for a daemon with CAP_SYS_ADMIN. 0 or -errno. */
int ovl_dev_hooks_install(struct fuse_session *se, bool passthrough);
/* How to open node's file whose layer fd is fd; eligible: an upper regular file that
 * passthrough may serve. With OVL_PT_PASSTHROUGH, the next open reply this thread sends
 * carries it; ovl_pt_reply_done after the reply. Every call is paired with ovl_pt_release. */
enum ovl_pt_mode ovl_pt_open(const void *node, int fd, bool eligible);
void ovl_pt_reply_done(void);
void ovl_pt_release(const void *node, enum ovl_pt_mode mode);

#endif
