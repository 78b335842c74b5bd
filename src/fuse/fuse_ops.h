/* The libfuse3 low-level front end: maps requests onto the engine. */
#ifndef OVLFS_FUSE_OPS_H
#define OVLFS_FUSE_OPS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <stdbool.h>

extern const struct fuse_lowlevel_ops ovl_fuse_ops;

/* For notifications the front end sends the kernel. */
void ovl_fuse_set_session(struct fuse_session *se);

/* Requests that may block for long go to this pool (NULL: all run in the loop). */
struct ovl_pool;
void ovl_fuse_set_pool(struct ovl_pool *pool);

/* The kernel's writeback cache (-o writeback=1). Set before the session starts. */
void ovl_fuse_set_writeback(bool on);
/* FUSE passthrough of open upper files (passthrough.c), once ovl_dev_hooks_install worked. */
void ovl_fuse_set_passthrough(bool on);
/* POSIX ACLs: the kernel reads them through getxattr, caches them and enforces them. */
void ovl_fuse_set_acl(bool on);

/* The engine's attr_changed hook: drops the kernel's cached attributes of a node. */
struct ovl_node;
void ovl_fuse_attr_changed(void *ctx, struct ovl_node *node);

#endif
