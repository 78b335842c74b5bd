/* The namespace: creating, linking, removing and renaming names, and listing directories. */
#include "fuse_ops.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct ovl_cred cred = cred_of(req);
	struct ovl_node *node;
	struct stat st;
	int err = ovl_mknod(fs_of(req), node_of(req, parent), name, mode, rdev, &cred, &node, &st);
	reply_entry(req, err, node, &st);
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct ovl_cred cred = cred_of(req);
	struct ovl_node *node;
	struct stat st;
	int err = ovl_mkdir(fs_of(req), node_of(req, parent), name, mode, &cred, &node, &st);
	reply_entry(req, err, node, &st);
}

void op_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
	struct ovl_cred cred = cred_of(req);
	struct ovl_node *node;
	struct stat st;
	int err = ovl_symlink(fs_of(req), node_of(req, parent), name, target, &cred, &node, &st);
	reply_entry(req, err, node, &st);
}

void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name)
{
	struct ovl_node *node;
	struct stat st;
	int err = ovl_link(fs_of(req), node_of(req, ino), node_of(req, parent), name, &node, &st);

	/* The new name is a node of its own: the source's cached link count is stale now.
	 * Attributes only, so the kernel takes no lock we could wait on. */
	if (!err && fe_of(req)->session)
		fuse_lowlevel_notify_inval_inode(fe_of(req)->session, ino, -1, 0);
	reply_entry(req, err, node, &st);
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -ovl_unlink(fs_of(req), node_of(req, parent), name));
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -ovl_rmdir(fs_of(req), node_of(req, parent), name));
}

/* Renames and replies. A rename between two links of one file does nothing (POSIX), but
 * the kernel, which sees two inodes, moves its dentries as for any rename: after the reply,
 * tell it to look both names up again. */
static void do_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned flags)
{
	struct fuse_session *session = fe_of(req)->session;
	bool kept = false;
	int err = ovl_rename2(fs_of(req), node_of(req, parent), name, node_of(req, newparent),
			      newname, flags, &kept);

	fuse_reply_err(req, -err);
	if (!err && kept && session) {
		fuse_lowlevel_notify_inval_entry(session, parent, name, strlen(name));
		fuse_lowlevel_notify_inval_entry(session, newparent, newname, strlen(newname));
	}
}

static void run_rename(struct deferred *d)
{
	do_rename(d->req, d->ino, d->name, d->newparent, d->newname, d->flags);
}

void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
	       const char *newname, unsigned int flags)
{
	struct deferred d = deferred(req, parent, NULL, run_rename);

	d.newparent = newparent;
	d.flags = flags;
	d.name = name;
	d.newname = newname;
	submit(&d);
}

/* Where the kernel allows it (Linux 5.1+), ENOSYS once makes it open directories without
 * asking (no OPENDIR, no RELEASEDIR: two round trips fewer per directory) and keep their
 * listings; READDIR then comes without a handle (ovl_readdir_node). Either way the kernel
 * may keep listings: every change to a directory comes through us, and the kernel drops a
 * listing its own change makes stale. */
void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ovl_dir *dir;

	if (fe_of(req)->zero_message_opendir) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	int err = ovl_opendir(fs_of(req), node_of(req, ino), &dir);
	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)dir;
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	if (fuse_reply_open(req, fi) != 0)
		ovl_releasedir(fs_of(req), dir);
}

struct dirbuf {
	fuse_req_t req;
	struct ovl_node *dir;
	struct ovl_dirfds *fds; /* readdirplus: the directory's layers, opened once */
	bool fds_tried;
	char *buf;
	size_t size, pos;
	bool plus;
};

static int add_entry(void *ctx, const char *name, uint64_t ino, unsigned dtype, off_t next)
{
	struct dirbuf *b = ctx;
	struct ovl_fs *fs = fs_of(b->req);
	size_t n;

	if (!b->plus) {
		struct stat st = {.st_ino = ino, .st_mode = dtype << 12};
		n = fuse_add_direntry(b->req, b->buf + b->pos, b->size - b->pos, name, &st, next);
	} else {
		struct fuse_entry_param e = {.attr = {.st_ino = ino, .st_mode = dtype << 12}};
		struct ovl_node *node = NULL;
		struct stat st;
		bool dot = strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
		if (!dot && !b->fds_tried) {
			b->fds = ovl_dirfds_open(fs, b->dir);
			b->fds_tried = true;
		}
		if (!dot && ovl_lookup_in(fs, b->dir, name, b->fds, &node, &st) == 0)
			fill_entry(&e, fs, node, &st);
		n = fuse_add_direntry_plus(b->req, b->buf + b->pos, b->size - b->pos, name, &e,
					   next);
		if (n > b->size - b->pos && node)
			ovl_forget(fs, node, 1);
	}
	if (n > b->size - b->pos)
		return 1;
	b->pos += n;
	return 0;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct dirbuf b = {.req = req, .dir = node_of(req, ino), .size = size, .plus = plus};
	int err;

	b.buf = malloc(size);
	if (!b.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (fi->fh)
		err = ovl_readdir(fs_of(req), (struct ovl_dir *)(uintptr_t)fi->fh, off, add_entry,
				  &b);
	else
		err = ovl_readdir_node(fs_of(req), b.dir, off, add_entry, &b);
	ovl_dirfds_close(b.fds);
	if (err && b.pos == 0)
		fuse_reply_err(req, -err);
	else
		fuse_reply_buf(req, b.buf, b.pos);
	free(b.buf);
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	ovl_releasedir(fs_of(req), (struct ovl_dir *)(uintptr_t)fi->fh); /* opened by op_opendir */
	fuse_reply_err(req, 0);
}

static void run_fsyncdir(struct deferred *d)
{
	fuse_reply_err(d->req,
		       -ovl_fsyncdir(fs_of(d->req), node_of(d->req, d->ino), d->datasync != 0));
}

void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct deferred d = deferred(req, ino, fi, run_fsyncdir);

	d.datasync = datasync;
	submit(&d);
}
