/* The FUSE front end: each request becomes one engine call; nothing of the overlay's
 * logic lives here. The session's userdata is the engine's struct ovl_fs. */
#include "fuse_ops.h"
#include "engine/engine.h"
#include "workers.h"
#include "passthrough.h"
#include "uring.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Names and attributes change only through this daemon, and the kernel drops what a change
 * makes stale; so the kernel may cache them long (as fuse-overlayfs does). A change made to
 * a layer behind the mount's back is seen once this runs out, as on the kernel overlayfs
 * such a change is undefined. */
static const double cache_timeout = 3600.0;

static struct fuse_session *session;
static struct ovl_pool *pool;
static bool writeback;
static bool acl = true;
static bool passthrough;
static bool zero_message_opendir; /* the kernel opens directories without OPENDIR */

void ovl_fuse_set_passthrough(bool on)
{
	passthrough = on;
}

void ovl_fuse_set_writeback(bool on)
{
	writeback = on;
}

void ovl_fuse_set_acl(bool on)
{
	acl = on;
}

/* With the writeback cache the kernel writes whole pages (it may read a page to fill it) at
 * offsets it chooses, appends included: the layer file must be readable, not O_APPEND. */
static int layer_open_flags(int flags)
{
	if (!writeback)
		return flags;
	if ((flags & O_ACCMODE) == O_WRONLY)
		flags = (flags & ~O_ACCMODE) | O_RDWR;
	return flags & ~O_APPEND;
}

void ovl_fuse_set_pool(struct ovl_pool *p)
{
	pool = p;
}

void ovl_fuse_set_session(struct fuse_session *se)
{
	session = se;
}

void ovl_fuse_attr_changed(void *ctx, struct ovl_node *node)
{
	(void)ctx;
	/* Attributes only (offset -1): the kernel takes no lock a running request holds. */
	if (session)
		fuse_lowlevel_notify_inval_inode(session, (fuse_ino_t)(uintptr_t)node, -1, 0);
}

static struct ovl_fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct ovl_node *node_of(fuse_req_t req, fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? ovl_root(fs_of(req)) : (struct ovl_node *)(uintptr_t)ino;
}

/*
 * The names of a hard-linked file are inodes of their own to the kernel. Their files are
 * opened for direct I/O (no page cache to go stale), and after a change through one name
 * the others' attributes are dropped. Attributes only: dropping pages could wait on a page
 * held by a write through another name that is waiting for us (a deadlock).
 */
static void inval_aliases(fuse_req_t req, fuse_ino_t ino)
{
	struct ovl_node *aliases[64];
	size_t n;

	if (!session || ino == FUSE_ROOT_ID)
		return;
	n = ovl_node_aliases(fs_of(req), node_of(req, ino), aliases, 64);
	for (size_t i = 0; i < n; i++)
		fuse_lowlevel_notify_inval_inode(session, (fuse_ino_t)(uintptr_t)aliases[i], -1, 0);
}

/* fh: the ovl_file, its passthrough mode in the low bits (malloc aligns to 16). */
static struct ovl_file *file_of(struct fuse_file_info *fi)
{
	return (struct ovl_file *)(uintptr_t)(fi->fh & ~(uint64_t)3);
}

static enum ovl_pt_mode pt_mode_of(struct fuse_file_info *fi)
{
	return (enum ovl_pt_mode)(fi->fh & 3);
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

static struct ovl_cred cred_of(fuse_req_t req)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	return (struct ovl_cred){
	    .uid = ctx->uid, .gid = ctx->gid, .in_group = req_in_group, .ctx = req};
}

/* After the caller changed the file's data where the kernel leaves the setuid rule to us
 * (see ovl_drop_setid_on_write); the kernel's cached mode goes when it changed. */
static void drop_setid(fuse_req_t req, fuse_ino_t ino, struct ovl_file *file)
{
	struct ovl_cred cred = cred_of(req);

	if (ovl_drop_setid_on_write(fs_of(req), node_of(req, ino), file, &cred) > 0 && session)
		fuse_lowlevel_notify_inval_inode(session, ino, -1, 0);
}

/* Attributes another name can change behind this inode's back are not cached: a hard
 * link's, one indexed with other names (a passthrough fd opened before a link writes
 * without a request, so nothing could drop them), and those of a name removed while open
 * (its object may have other names). */
static double attr_timeout(struct ovl_node *node, const struct stat *st)
{
	if (S_ISDIR(st->st_mode))
		return cache_timeout;
	return st->st_nlink > 1 || ovl_node_hard_linked(node) || ovl_node_is_unlinked(node)
		   ? 0
		   : cache_timeout;
}

static void fill_entry(struct fuse_entry_param *e, struct ovl_fs *fs, struct ovl_node *node,
		       const struct stat *st)
{
	memset(e, 0, sizeof(*e));
	e->ino = node == ovl_root(fs) ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)node;
	e->attr = *st;
	e->attr_timeout = attr_timeout(node, st);
	e->entry_timeout = cache_timeout;
}

static void reply_entry(fuse_req_t req, int err, struct ovl_node *node, const struct stat *st)
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

/*
 * The request loop answers in its own thread (a hand-off to another thread costs more than
 * most requests here); what may block for long (copy-up, fsync, rename of a directory
 * tree) goes to the worker pool, so that it never holds up unrelated requests.
 */
struct deferred {
	fuse_req_t req;
	fuse_ino_t ino, newparent;
	struct fuse_file_info fi;
	bool has_fi;
	struct stat attr;
	int to_set, datasync, mode;
	off_t off, len;
	unsigned flags;
	const char *name, *newname; /* the request's; a worker's copy has its own */
	void (*run)(struct deferred *d);
};

/* A copy-up of more than this goes to a worker; a smaller one costs less than the hand-off. */
static const off_t long_copy_up = 1 << 20;

static struct deferred deferred(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
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
static void submit(struct deferred *d)
{
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
	(void)userdata;
	unsigned want = FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_READ | FUSE_CAP_READDIRPLUS |
			FUSE_CAP_ATOMIC_O_TRUNC | FUSE_CAP_AUTO_INVAL_DATA |
			FUSE_CAP_CACHE_SYMLINKS;
	conn->want |= want & conn->capable;
	/* 1 MiB writes (libfuse's receive buffer holds one); the kernel's default is 128 KiB,
	 * eight round trips where one does. */
	conn->max_write = 1 << 20;
	/* Replies to io_uring requests are copied into their queue's buffers: no splicing. */
	if (ovl_uring_wanted())
		conn->want &= ~(unsigned)FUSE_CAP_SPLICE_WRITE;
	ovl_uring_set_max_write(conn->max_write);
	/* Keep the kernel's per-directory serialization of lookups and changes, and let it
	 * clear setuid on write: the layer I/O runs as the mounter, who would keep it. */
	conn->want &= ~(unsigned)(FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_READDIRPLUS_AUTO |
				  FUSE_CAP_HANDLE_KILLPRIV | FUSE_CAP_WRITEBACK_CACHE |
				  FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
	/* -o writeback=1: the kernel gathers small writes into pages and keeps what was
	 * written cached (fuse-overlayfs's default). Off by default: the kernel then owns
	 * mtime, and the layer file's can end up a little later than what was shown. */
	if (writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE))
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	else
		writeback = false;
	/* POSIX ACLs, as the kernel overlayfs honours them: the kernel asks for an inode's
	 * ACL once, caches it and checks permissions with it (without this, ls -l asks the
	 * daemon for every entry's ACL and permission checks see mode bits only). The kernel
	 * still applies the umask itself: no FUSE_CAP_DONT_MASK. */
	if (acl && (conn->capable & FUSE_CAP_POSIX_ACL))
		conn->want |= FUSE_CAP_POSIX_ACL;
	else
		conn->want &= ~(unsigned)FUSE_CAP_POSIX_ACL;
	zero_message_opendir = conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT;
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
	int err =
	    ovl_setattr(fs_of(req), node_of(req, ino), fi ? file_of(fi) : NULL, set, attr, &st);
	if (!err)
		inval_aliases(req, ino);
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

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct ovl_cred cred = cred_of(req);
	struct ovl_node *node;
	struct stat st;
	int err = ovl_mknod(fs_of(req), node_of(req, parent), name, mode, rdev, &cred, &node, &st);
	reply_entry(req, err, node, &st);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct ovl_cred cred = cred_of(req);
	struct ovl_node *node;
	struct stat st;
	int err = ovl_mkdir(fs_of(req), node_of(req, parent), name, mode, &cred, &node, &st);
	reply_entry(req, err, node, &st);
}

static void op_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
	struct ovl_cred cred = cred_of(req);
	struct ovl_node *node;
	struct stat st;
	int err = ovl_symlink(fs_of(req), node_of(req, parent), name, target, &cred, &node, &st);
	reply_entry(req, err, node, &st);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name)
{
	struct ovl_node *node;
	struct stat st;
	int err = ovl_link(fs_of(req), node_of(req, ino), node_of(req, parent), name, &node, &st);

	/* The new name is a node of its own: the source's cached link count is stale now.
	 * Attributes only, so the kernel takes no lock we could wait on. */
	if (!err && session)
		fuse_lowlevel_notify_inval_inode(session, ino, -1, 0);
	reply_entry(req, err, node, &st);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -ovl_unlink(fs_of(req), node_of(req, parent), name));
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -ovl_rmdir(fs_of(req), node_of(req, parent), name));
}

/* Renames and replies. A rename between two links of one file does nothing (POSIX), but
 * the kernel, which sees two inodes, moves its dentries as for any rename: after the reply,
 * tell it to look both names up again. */
static void do_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned flags)
{
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

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct deferred d = deferred(req, parent, NULL, run_rename);

	d.newparent = newparent;
	d.flags = flags;
	d.name = name;
	d.newname = newname;
	submit(&d);
}

static void set_open_flags(struct ovl_fs *fs, struct fuse_file_info *fi, struct ovl_file *file,
			   struct ovl_node *node)
{
	enum ovl_pt_mode mode = OVL_PT_CACHED;

	/* O_DIRECT, or a file with several names (see inval_aliases). With the writeback cache
	 * the kernel runs O_DIRECT itself: it owns the mtime then and sets it only there. */
	fi->direct_io = (ovl_file_is_direct(file) && !writeback) || ovl_node_hard_linked(node);
	if (passthrough) {
		/* (passthrough runs without the writeback cache: direct_io covers O_DIRECT) */
		bool eligible =
		    !fi->direct_io && ovl_node_type(node) == S_IFREG && ovl_file_on_upper(file);
		if (eligible) {
			mode = ovl_pt_open(node, ovl_file_get_fd(fs, file), true);
			ovl_file_put_fd(file);
		} else {
			mode = ovl_pt_open(node, -1, false);
		}
		if (mode == OVL_PT_PASSTHROUGH)
			fi->direct_io = 0;
		else if (mode == OVL_PT_DIRECT || mode == OVL_PT_PT_DIRECT)
			fi->direct_io = 1;
	}
	/* Passthrough leaves the FUSE inode's page cache unused: the kernel refuses it. */
	fi->keep_cache = !fi->direct_io && mode == OVL_PT_CACHED;
	fi->fh = (uint64_t)(uintptr_t)file | (uint64_t)mode;
}

/* After an open reply (sent or not): the next reply of this thread is another one. */
static void open_replied(int reply_err, struct ovl_node *node, struct fuse_file_info *fi)
{
	if (!passthrough)
		return;
	ovl_pt_reply_done();
	if (reply_err)
		ovl_pt_release(node, pt_mode_of(fi));
}

static void do_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ovl_file *file;
	int err = ovl_open(fs_of(req), node_of(req, ino), layer_open_flags(fi->flags), &file);

	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	/* The kernel hands O_TRUNC to us whole (atomic_o_trunc): truncating is a write. */
	if ((fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY)
		drop_setid(req, ino, file);
	set_open_flags(fs_of(req), fi, file, node_of(req, ino));
	int rerr = fuse_reply_open(req, fi);
	open_replied(rerr, node_of(req, ino), fi);
	if (rerr != 0)
		ovl_release(fs_of(req), file);
}

static void run_open(struct deferred *d)
{
	do_open(d->req, d->ino, &d->fi);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	bool write = (fi->flags & O_ACCMODE) != O_RDONLY;

	if (write && !(fi->flags & O_TRUNC) &&
	    ovl_copy_up_is_long(fs_of(req), node_of(req, ino), long_copy_up)) {
		struct deferred d = deferred(req, ino, fi, run_open);
		submit(&d);
		return;
	}
	do_open(req, ino, fi);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct ovl_cred cred = cred_of(req);
	struct ovl_fs *fs = fs_of(req);
	struct fuse_entry_param e;
	struct ovl_file *file;
	struct ovl_node *node;
	struct stat st;
	int err = ovl_create(fs, node_of(req, parent), name, mode, layer_open_flags(fi->flags),
			     &cred, &node, &st, &file);

	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	fill_entry(&e, fs, node, &st);
	set_open_flags(fs, fi, file, node);
	int rerr = fuse_reply_create(req, &e, fi);
	open_replied(rerr, node, fi);
	if (rerr != 0) {
		ovl_release(fs, file);
		ovl_forget(fs, node, 1);
	}
}

/* O_DIRECT needs aligned buffers, which the request's own are not. */
static void *aligned_buf(size_t size)
{
	void *p = NULL;
	return posix_memalign(&p, 4096, size ? size : 1) == 0 ? p : NULL;
}

static void direct_read(fuse_req_t req, struct ovl_file *file, size_t size, off_t off)
{
	void *buf = aligned_buf(size);
	ssize_t n = buf ? ovl_read(fs_of(req), file, buf, size, off) : -ENOMEM;

	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

/* A write of the kernel's cached pages (writeback cache): the kernel owns the mtime. A
 * failure leaves the layer file's mtime a little late, no reason to fail the write. */
static void keep_kernel_mtime(fuse_req_t req, struct ovl_file *file)
{
	(void)ovl_file_keep_kernel_mtime(fs_of(req), file);
}

static void direct_write(fuse_req_t req, fuse_ino_t ino, struct ovl_file *file,
			 struct fuse_bufvec *in, off_t off, bool writepage)
{
	size_t size = fuse_buf_size(in);
	void *buf = aligned_buf(size);
	struct fuse_bufvec mem = FUSE_BUFVEC_INIT(size);
	ssize_t n = buf ? 0 : -ENOMEM;

	mem.buf[0].mem = buf;
	if (buf)
		n = fuse_buf_copy(&mem, in, 0);
	if (n >= 0 && writepage)
		n = ovl_write_buffered(fs_of(req), file, buf, (size_t)n, off);
	else if (n >= 0)
		n = ovl_write(fs_of(req), file, buf, (size_t)n, off);
	if (n > 0 && writepage)
		keep_kernel_mtime(req, file);
	if (n > 0 && !writepage)
		drop_setid(req, ino, file); /* the kernel does not for direct I/O */
	if (n > 0)
		inval_aliases(req, ino);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
	free(buf);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct ovl_file *file = file_of(fi);
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
	(void)ino;

	if (ovl_file_is_direct(file)) {
		direct_read(req, file, size, off);
		return;
	}
	/* Over io_uring: read straight into the queue's reply buffer. */
	char *space = ovl_uring_reply_space(size);
	if (space) {
		ssize_t n = ovl_read(fs_of(req), file, space, size, off);
		if (n < 0)
			fuse_reply_err(req, (int)-n);
		else
			fuse_reply_buf(req, space, (size_t)n);
		return;
	}
	/* Zero-copy: libfuse splices from the layer file into the reply. */
	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = ovl_file_get_fd(fs_of(req), file);
	buf.buf[0].pos = off;
	fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
	ovl_file_put_fd(file);
}

static void op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
			 struct fuse_file_info *fi)
{
	struct ovl_file *file = file_of(fi);
	struct fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));

	if (ovl_file_is_direct(file)) {
		direct_write(req, ino, file, in, off, fi->writepage);
		return;
	}
	out.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	out.buf[0].fd = ovl_file_get_fd(fs_of(req), file);
	out.buf[0].pos = off;
	ssize_t n = fuse_buf_copy(&out, in, 0);
	ovl_file_put_fd(file);
	if (n > 0 && fi->writepage)
		keep_kernel_mtime(req, file);
	if (n > 0 && !fi->writepage)
		drop_setid(req, ino, file); /* done already unless the file is direct_io */
	if (n > 0)
		inval_aliases(req, ino);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (passthrough)
		ovl_pt_release(node_of(req, ino), pt_mode_of(fi));
	ovl_release(fs_of(req), file_of(fi));
	fuse_reply_err(req, 0);
}

static void run_fsync(struct deferred *d)
{
	fuse_reply_err(d->req, -ovl_fsync(fs_of(d->req), file_of(&d->fi), d->datasync != 0));
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct deferred d = deferred(req, ino, fi, run_fsync);

	d.datasync = datasync;
	submit(&d);
}

/* Where the kernel allows it (Linux 5.1+), ENOSYS once makes it open directories without
 * asking (no OPENDIR, no RELEASEDIR: two round trips fewer per directory) and keep their
 * listings; READDIR then comes without a handle (ovl_readdir_node). Either way the kernel
 * may keep listings: every change to a directory comes through us, and the kernel drops a
 * listing its own change makes stale. */
static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ovl_dir *dir;

	if (zero_message_opendir) {
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

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
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

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct deferred d = deferred(req, ino, fi, run_fsyncdir);

	d.datasync = datasync;
	submit(&d);
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

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	int err = ovl_setxattr(fs_of(req), node_of(req, ino), name, value, size, flags);
	if (!err && strcmp(name, "system.posix_acl_access") == 0) {
		/* The kernel leaves this to us without FUSE_SETXATTR_EXT (not negotiated). */
		struct ovl_cred cred = cred_of(req);
		int r = ovl_drop_setgid_on_acl(fs_of(req), node_of(req, ino), &cred);
		if (r > 0 && session)
			fuse_lowlevel_notify_inval_inode(session, ino, -1, 0);
	}
	if (!err)
		inval_aliases(req, ino); /* ctime */
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

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char *buf = size ? malloc(size) : NULL;

	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	reply_xattr(req, ovl_getxattr(fs_of(req), node_of(req, ino), name, buf, size), buf, size);
	free(buf);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
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

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	int err = ovl_removexattr(fs_of(req), node_of(req, ino), name);
	if (!err)
		inval_aliases(req, ino);
	fuse_reply_err(req, -err);
}

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	fuse_reply_err(req, -ovl_access(fs_of(req), node_of(req, ino), mask));
}

static void run_fallocate(struct deferred *d)
{
	int err = ovl_fallocate(fs_of(d->req), file_of(&d->fi), d->mode, d->off, d->len);

	if (!err)
		drop_setid(d->req, d->ino, file_of(&d->fi)); /* done already on Linux 5.x+ */
	if (!err)
		inval_aliases(d->req, d->ino);
	fuse_reply_err(d->req, -err);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	struct deferred d = deferred(req, ino, fi, run_fallocate);

	d.mode = mode;
	d.off = off;
	d.len = len;
	submit(&d);
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	(void)ino;
	off_t res = ovl_lseek(fs_of(req), file_of(fi), off, whence);

	if (res < 0)
		fuse_reply_err(req, (int)-res);
	else
		fuse_reply_lseek(req, res);
}

static void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			       struct fuse_file_info *fi_out, size_t len, int flags)
{
	(void)ino_in;
	ssize_t n = ovl_copy_file_range(fs_of(req), file_of(fi_in), off_in, file_of(fi_out),
					off_out, len, (unsigned)flags);
	if (n > 0)
		drop_setid(req, ino_out, file_of(fi_out)); /* done already on Linux 5.x+ */
	if (n > 0)
		inval_aliases(req, ino_out);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
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
};
