/* The FUSE front end's core: the shared helpers, INIT, lookup and attributes, and the table
 * of handlers (the others are in fuse_dir.c, fuse_file.c and fuse_xattr.c). */
#include "fuse_ops.h"
#include "workers.h"

#include <errno.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>

void ovl_frontend_attr_changed(void *ctx, struct ovl_node *node)
{
	struct ovl_frontend *fe = ctx;

	/* Attributes only (offset -1): the kernel takes no lock a running request holds. */
	if (fe->session)
		fuse_lowlevel_notify_inval_inode(fe->session, (fuse_ino_t)(uintptr_t)node, -1, 0);
}

/* The caller's supplementary groups, read (from /proc) only when a rule asks. Unknown
 * groups count as not held: the rules that ask take a privilege away. */
static bool req_in_group(void *ctx, gid_t gid)
{
	gid_t list[256];
	int n = fuse_req_getgroups((fuse_req_t)ctx, 256, list);

	for (int i = 0; i < n && i < 256; i++)
		if (list[i] == gid)
			return true;
	return false;
}

struct ovl_cred cred_of(fuse_req_t req)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	return (struct ovl_cred){.uid = ctx->uid,
				 .gid = ctx->gid,
				 .in_group = req_in_group,
				 .ctx = req,
				 .umask = fe_of(req)->dont_mask ? ctx->umask : 0};
}

/* After the caller changed the file's data where the kernel leaves the setuid rule to us
 * (see ovl_drop_setid_on_write); the kernel's cached mode goes when it changed. */
void drop_setid(fuse_req_t req, fuse_ino_t ino, struct ovl_file *file)
{
	struct ovl_cred cred = cred_of(req);
	struct ovl_frontend *fe = fe_of(req);

	if (ovl_drop_setid_on_write(fe->fs, node_of(req, ino), file, &cred) > 0 && fe->session)
		fuse_lowlevel_notify_inval_inode(fe->session, ino, -1, 0);
}

/* Attributes are cached as on any FUSE filesystem (all names of a file are one inode),
 * except for a name removed while open: its node may stand apart from a name of the same
 * object looked up later (ovl_alias_resolve_table_locked). */
double attr_timeout(struct ovl_node *node, const struct stat *st)
{
	/* Nor those of a node the kernel holds an old btime of: it asks for a new one (STATX,
	 * rawops.c) only once they are invalid. */
	if (ovl_node_btime_stale(node))
		return 0;
	if (S_ISDIR(st->st_mode))
		return cache_timeout;
	return ovl_node_is_unlinked(node) ? 0 : cache_timeout;
}

void fill_entry(struct fuse_entry_param *e, struct ovl_fs *fs, struct ovl_node *node,
		const struct stat *st)
{
	memset(e, 0, sizeof(*e));
	e->ino = node == ovl_root(fs) ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)node;
	e->attr = *st;
	e->attr_timeout = attr_timeout(node, st);
	e->entry_timeout = cache_timeout;
}

void reply_entry(fuse_req_t req, int err, struct ovl_node *node, const struct stat *st)
{
	struct fuse_entry_param e;

	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	fill_entry(&e, fs_of(req), node, st);
	if (fuse_reply_entry(req, &e) != 0)
		ovl_forget(fs_of(req), node, 1); /* the kernel never got it */
}

struct deferred deferred(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
			 void (*run)(struct deferred *))
{
	struct deferred d = {.req = req, .ino = ino, .run = run, .has_fi = fi != NULL};

	if (fi)
		d.fi = *fi;
	return d;
}

static void run_copy(void *arg)
{
	struct deferred *d = arg;

	d->run(d);
	free((char *)d->name);
	free((char *)d->newname);
	free(d);
}

/* Runs the request on a worker, or in this thread when there is no pool (-s) or no memory
 * for the hand-off. The request's strings live only until this returns: a worker's copy
 * gets its own. */
void submit(struct deferred *d)
{
	struct ovl_pool *pool = fe_of(d->req)->pool;
	struct deferred *copy = pool ? malloc(sizeof(*copy)) : NULL;

	if (copy) {
		*copy = *d;
		copy->name = d->name ? strdup(d->name) : NULL;
		copy->newname = d->newname ? strdup(d->newname) : NULL;
		if ((!d->name || copy->name) && (!d->newname || copy->newname) &&
		    ovl_pool_submit(pool, run_copy, copy) == 0)
			return;
		free((char *)copy->name);
		free((char *)copy->newname);
		free(copy);
	}
	d->run(d);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct ovl_frontend *fe = userdata;
	unsigned want = FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_READ | FUSE_CAP_READDIRPLUS |
			FUSE_CAP_ATOMIC_O_TRUNC | FUSE_CAP_AUTO_INVAL_DATA |
			FUSE_CAP_CACHE_SYMLINKS | FUSE_CAP_IOCTL_DIR;
	conn->want |= want & conn->capable;
	/* 1 MiB writes (libfuse's receive buffer holds one); the kernel's default is 128 KiB,
	 * eight round trips where one does. */
	conn->max_write = 1 << 20;
	/* The read hook answers requests libfuse does not know (rawops.c): it must see each
	 * one in memory, so requests are read, not spliced into a pipe it cannot look into
	 * (for small requests one read costs less than libfuse's splice plus read anyway). */
	if (fe->dev.hooked)
		conn->want &= ~(unsigned)FUSE_CAP_SPLICE_READ;
	/* Replies to io_uring requests are copied into their queue's buffers: no splicing. */
	if (ovl_uring_wanted(&fe->uring))
		conn->want &= ~(unsigned)FUSE_CAP_SPLICE_WRITE;
	ovl_uring_set_max_write(&fe->uring, conn->max_write);
	/* Keep the kernel's per-directory serialization of lookups and changes, and let it
	 * clear setuid on write: the layer I/O runs as the mounter, who would keep it. */
	conn->want &= ~(unsigned)(FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_READDIRPLUS_AUTO |
				  FUSE_CAP_HANDLE_KILLPRIV | FUSE_CAP_WRITEBACK_CACHE |
				  FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
	/* -o writeback=1: the kernel gathers small writes into pages and keeps what was
	 * written cached (fuse-overlayfs's default). Off by default: the kernel then owns
	 * mtime, and the layer file's can end up a little later than what was shown. */
	fe->writeback = fe->opts.writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE);
	if (fe->writeback)
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	/* POSIX ACLs, as the kernel overlayfs honours them: the kernel asks for an inode's
	 * ACL once, caches it and checks permissions with it (without this, ls -l asks the
	 * daemon for every entry's ACL and permission checks see mode bits only). The umask
	 * then comes unapplied (FUSE_CAP_DONT_MASK): a default ACL of the parent replaces it,
	 * which only the engine can see. Without ACLs the kernel's VFS applies it before the
	 * request (namei.c mode_strip_umask), as it did. */
	if (fe->opts.acl && (conn->capable & FUSE_CAP_POSIX_ACL)) {
		conn->want |= FUSE_CAP_POSIX_ACL;
		if (conn->capable & FUSE_CAP_DONT_MASK)
			conn->want |= FUSE_CAP_DONT_MASK;
	} else {
		conn->want &= ~(unsigned)(FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK);
	}
	fe->dont_mask = conn->want & FUSE_CAP_DONT_MASK;
	fe->zero_message_opendir = conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ovl_node *node;
	struct stat st;
	int err = ovl_lookup(fs_of(req), node_of(req, parent), name, &node, &st);

	if (err == -ENOENT) {
		/* A negative entry the kernel may cache: creates come through us. */
		struct fuse_entry_param e = {.entry_timeout = cache_timeout};
		fuse_reply_entry(req, &e);
		return;
	}
	reply_entry(req, err, node, &st);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	if (ino != FUSE_ROOT_ID)
		ovl_forget(fs_of(req), node_of(req, ino), nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		if (forgets[i].ino != FUSE_ROOT_ID)
			ovl_forget(fs_of(req), node_of(req, forgets[i].ino), forgets[i].nlookup);
	fuse_reply_none(req);
}

static void reply_attr(fuse_req_t req, int err, struct ovl_node *node, const struct stat *st)
{
	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_attr(req, st, attr_timeout(node, st));
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	int err = ovl_getattr_file(fs_of(req), node_of(req, ino), fi ? file_of(fi) : NULL, &st);
	reply_attr(req, err, node_of(req, ino), &st);
}

static void do_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	static const struct {
		int fuse, ovl;
	} map[] = {
	    {FUSE_SET_ATTR_MODE, OVL_SET_MODE},
	    {FUSE_SET_ATTR_UID, OVL_SET_UID},
	    {FUSE_SET_ATTR_GID, OVL_SET_GID},
	    {FUSE_SET_ATTR_SIZE, OVL_SET_SIZE},
	    {FUSE_SET_ATTR_ATIME, OVL_SET_ATIME},
	    {FUSE_SET_ATTR_MTIME, OVL_SET_MTIME},
	    {FUSE_SET_ATTR_ATIME_NOW, OVL_SET_ATIME_NOW},
	    {FUSE_SET_ATTR_MTIME_NOW, OVL_SET_MTIME_NOW},
	    {FUSE_SET_ATTR_CTIME, OVL_SET_CTIME},
	};
	struct stat st;
	int set = 0;

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (to_set & map[i].fuse)
			set |= map[i].ovl;
	if (set & OVL_SET_ATIME_NOW)
		set &= ~OVL_SET_ATIME;
	if (set & OVL_SET_MTIME_NOW)
		set &= ~OVL_SET_MTIME;
	int err = 0;
	/* FATTR_KILL_SUIDGID (libfuse's KILL_SUID bit), under HANDLE_KILLPRIV_V2 (dev_hooks.c) */
	if (to_set & FUSE_SET_ATTR_KILL_SUID)
		err = ovl_setattr_kill_suidgid(fs_of(req), node_of(req, ino),
					       fi ? file_of(fi) : NULL, &set, attr);
	if (!err)
		err = ovl_setattr(fs_of(req), node_of(req, ino), fi ? file_of(fi) : NULL, set, attr,
				  &st);
	reply_attr(req, err, node_of(req, ino), &st);
}

static void run_setattr(struct deferred *d)
{
	do_setattr(d->req, d->ino, &d->attr, d->to_set, d->has_fi ? &d->fi : NULL);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	if (ovl_copy_up_is_long(fs_of(req), node_of(req, ino), long_copy_up)) {
		struct deferred d = deferred(req, ino, fi, run_setattr);
		d.attr = *attr;
		d.to_set = to_set;
		submit(&d);
		return;
	}
	do_setattr(req, ino, attr, to_set, fi);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	int n = ovl_readlink(fs_of(req), node_of(req, ino), buf, PATH_MAX);

	if (n < 0) {
		fuse_reply_err(req, -n);
		return;
	}
	buf[n] = '\0';
	fuse_reply_readlink(req, buf);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs st;
	(void)ino;
	int err = ovl_statfs(fs_of(req), &st);

	if (err)
		fuse_reply_err(req, -err);
	else
		fuse_reply_statfs(req, &st);
}

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	fuse_reply_err(req, -ovl_access(fs_of(req), node_of(req, ino), mask));
}

/* The file-attribute ioctls the kernel's FUSE sends for chattr/lsattr (fs/fuse/ioctl.c
 * fuse_fileattr_get/set, on a handle of its own); nothing else is an ioctl here. */
static void op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
		     struct fuse_file_info *fi, unsigned flags, const void *in_buf, size_t in_bufsz,
		     size_t out_bufsz)
{
	struct ovl_node *node = node_of(req, ino);
	struct fsxattr fa;
	unsigned attr;
	int err;

	(void)arg;
	(void)fi;
	(void)flags;
	switch (cmd) {
	case FS_IOC_GETFLAGS:
		if (out_bufsz < sizeof(attr))
			break;
		err = ovl_get_flags(fs_of(req), node, &attr);
		if (err)
			fuse_reply_err(req, -err);
		else
			fuse_reply_ioctl(req, 0, &attr, sizeof(attr));
		return;
	case FS_IOC_SETFLAGS:
		if (in_bufsz < sizeof(attr))
			break;
		memcpy(&attr, in_buf, sizeof(attr));
		err = ovl_set_flags(fs_of(req), node, attr);
		if (err)
			fuse_reply_err(req, -err);
		else
			fuse_reply_ioctl(req, 0, NULL, 0);
		return;
	case FS_IOC_FSGETXATTR:
		if (out_bufsz < sizeof(fa))
			break;
		err = ovl_get_fsxattr(fs_of(req), node, &fa);
		if (err)
			fuse_reply_err(req, -err);
		else
			fuse_reply_ioctl(req, 0, &fa, sizeof(fa));
		return;
	case FS_IOC_FSSETXATTR:
		if (in_bufsz < sizeof(fa))
			break;
		memcpy(&fa, in_buf, sizeof(fa));
		err = ovl_set_fsxattr(fs_of(req), node, &fa);
		if (err)
			fuse_reply_err(req, -err);
		else
			fuse_reply_ioctl(req, 0, NULL, 0);
		return;
	}
	fuse_reply_err(req, ENOTTY);
}

const struct fuse_lowlevel_ops ovl_fuse_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .symlink = op_symlink,
    .link = op_link,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .rename = op_rename,
    .open = op_open,
    .create = op_create,
    .read = op_read,
    .write_buf = op_write_buf,
    .release = op_release,
    .fsync = op_fsync,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .fsyncdir = op_fsyncdir,
    .statfs = op_statfs,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
    .access = op_access,
    .fallocate = op_fallocate,
    .lseek = op_lseek,
    .copy_file_range = op_copy_file_range,
    .ioctl = op_ioctl,
};
