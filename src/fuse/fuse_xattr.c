/* Extended attributes (ACLs included: the kernel reads and writes them as xattrs). */
#include "fuse_ops.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size,
		 int flags)
{
	int err = ovl_setxattr(fs_of(req), node_of(req, ino), name, value, size, flags);
	if (!err && strcmp(name, "system.posix_acl_access") == 0) {
		/* The kernel leaves this to us without FUSE_SETXATTR_EXT (not negotiated). */
		struct ovl_cred cred = cred_of(req);
		int r = ovl_drop_setgid_on_acl(fs_of(req), node_of(req, ino), &cred);
		if (r > 0 && fe_of(req)->session)
			fuse_lowlevel_notify_inval_inode(fe_of(req)->session, ino, -1, 0);
	}
	fuse_reply_err(req, -err);
}

static void reply_xattr(fuse_req_t req, ssize_t n, const char *buf, size_t size)
{
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char *buf = size ? malloc(size) : NULL;

	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	reply_xattr(req, ovl_getxattr(fs_of(req), node_of(req, ino), name, buf, size), buf, size);
	free(buf);
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char *buf = size ? malloc(size) : NULL;

	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* The daemon is the mounter; what a caller may see is decided by the caller's ids
	 * (FUSE passes no capabilities: uid 0 stands for CAP_SYS_ADMIN). */
	bool privileged = fuse_req_ctx(req)->uid == 0;
	reply_xattr(req, ovl_listxattr(fs_of(req), node_of(req, ino), buf, size, privileged), buf,
		    size);
	free(buf);
}

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	int err = ovl_removexattr(fs_of(req), node_of(req, ino), name);
	fuse_reply_err(req, -err);
}
