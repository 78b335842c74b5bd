/* Open files: open and create, reads and writes (spliced, direct or through an io_uring
 * queue's buffer), release, fsync, fallocate, lseek and copy_file_range. */
#include "fuse_ops.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

/* With the writeback cache the kernel writes whole pages (it may read a page to fill it) at
 * offsets it chooses, appends included: the layer file must be readable, not O_APPEND. */
static int layer_open_flags(struct ovl_frontend *fe, int flags)
{
	if (!fe->writeback)
		return flags;
	if ((flags & O_ACCMODE) == O_WRONLY)
		flags = (flags & ~O_ACCMODE) | O_RDWR;
	return flags & ~O_APPEND;
}

static void set_open_flags(struct ovl_frontend *fe, struct fuse_file_info *fi,
			   struct ovl_file *file, struct ovl_node *node)
{
	enum ovl_pt_mode mode = OVL_PT_CACHED;

	/* O_DIRECT. With the writeback cache the kernel runs O_DIRECT itself: it owns the mtime
	 * then and sets it only there. */
	fi->direct_io = ovl_file_is_direct(file) && !fe->writeback;
	if (fe->passthrough) {
		/* (passthrough runs without the writeback cache: direct_io covers O_DIRECT) */
		bool eligible =
		    !fi->direct_io && ovl_node_type(node) == S_IFREG && ovl_file_on_upper(file);
		if (eligible) {
			mode =
			    ovl_pt_open(fe, node, ovl_file_get_fd(fe->fs, file), fi->flags, true);
			ovl_file_put_fd(file);
		} else {
			mode = ovl_pt_open(fe, node, -1, fi->flags, false);
		}
		if (mode == OVL_PT_PASSTHROUGH)
			fi->direct_io = 0;
		else if (mode == OVL_PT_DIRECT || mode == OVL_PT_PT_DIRECT)
			fi->direct_io = 1;
	}
	/* Passthrough leaves the FUSE inode's page cache unused: the kernel refuses it. */
	fi->keep_cache = !fi->direct_io && mode == OVL_PT_CACHED;
	fi->fh = fh_of(file, mode);
}

/* After an open reply (sent or not): the next reply of this thread is another one. */
static void open_replied(struct ovl_frontend *fe, int reply_err, struct ovl_node *node,
			 struct fuse_file_info *fi)
{
	if (!fe->passthrough)
		return;
	ovl_pt_reply_done();
	if (reply_err)
		ovl_pt_release(fe, node, pt_mode_of(fi), -1);
}

static void do_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ovl_file *file;
	struct ovl_frontend *fe = fe_of(req);
	int err = ovl_open(fe->fs, node_of(req, ino), layer_open_flags(fe, fi->flags), &file);

	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	/* The kernel hands O_TRUNC to us whole (atomic_o_trunc): truncating is a write. */
	if ((fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY)
		drop_setid(req, ino, file);
	set_open_flags(fe, fi, file, node_of(req, ino));
	int rerr = fuse_reply_open(req, fi);
	open_replied(fe, rerr, node_of(req, ino), fi);
	if (rerr != 0)
		ovl_release(fe->fs, file);
}

static void run_open(struct deferred *d)
{
	do_open(d->req, d->ino, &d->fi);
}

void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
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

void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
	       struct fuse_file_info *fi)
{
	struct ovl_cred cred = cred_of(req);
	struct ovl_frontend *fe = fe_of(req);
	struct ovl_fs *fs = fe->fs;
	struct fuse_entry_param e;
	struct ovl_file *file;
	struct ovl_node *node;
	struct stat st;
	int err = ovl_create(fs, node_of(req, parent), name, mode, layer_open_flags(fe, fi->flags),
			     &cred, &node, &st, &file);

	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	fill_entry(&e, fs, node, &st);
	set_open_flags(fe, fi, file, node);
	int rerr = fuse_reply_create(req, &e, fi);
	open_replied(fe, rerr, node, fi);
	if (rerr != 0) {
		ovl_release(fs, file);
		ovl_forget(fs, node, 1);
	}
}

int tmpfile_open(struct ovl_frontend *fe, struct ovl_node *parent, mode_t mode, int flags,
		 const struct ovl_cred *cred, struct fuse_entry_param *e, struct fuse_file_info *fi)
{
	struct ovl_file *file;
	struct ovl_node *node;
	struct stat st;
	int err =
	    ovl_tmpfile(fe->fs, parent, mode, layer_open_flags(fe, flags), cred, &node, &st, &file);

	if (err)
		return err;
	fill_entry(e, fe->fs, node, &st);
	memset(fi, 0, sizeof(*fi));
	fi->flags = flags;
	set_open_flags(fe, fi, file, node);
	return 0;
}

void tmpfile_replied(struct ovl_frontend *fe, bool sent, const struct fuse_entry_param *e,
		     struct fuse_file_info *fi)
{
	struct ovl_node *node = (struct ovl_node *)(uintptr_t)e->ino;

	open_replied(fe, sent ? 0 : -EIO, node, fi);
	if (!sent) {
		ovl_release(fe->fs, file_of(fi));
		ovl_forget(fe->fs, node, 1);
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

/* A write of the kernel's cached pages. With the writeback cache the kernel owns the mtime
 * (a failure leaves the layer file's a little late, no reason to fail the write); without
 * it, these are a shared mapping's pages and the write moves the mtime as any write. */
static void keep_kernel_mtime(fuse_req_t req, struct ovl_file *file)
{
	if (fe_of(req)->writeback)
		(void)ovl_file_keep_kernel_mtime(fs_of(req), file);
}

/* After a WRITE of n bytes (or -errno): what it changed beyond the data, then the reply.
 * A write-back of cached pages (writepage) carries the kernel's times; any other write is
 * the caller's, under the setuid rule (the kernel applies that itself only to writes into
 * its page cache, never to direct I/O). */
static void reply_written(fuse_req_t req, fuse_ino_t ino, struct ovl_file *file, ssize_t n,
			  bool writepage)
{
	if (n > 0 && writepage)
		keep_kernel_mtime(req, file);
	if (n > 0 && !writepage)
		drop_setid(req, ino, file);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
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
	reply_written(req, ino, file, n, writepage);
	free(buf);
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct ovl_file *file = file_of(fi);
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
	(void)ino;

	if (ovl_file_is_direct(file)) {
		direct_read(req, file, size, off);
		return;
	}
	/* Over io_uring: read straight into the queue's reply buffer. */
	char *space = ovl_uring_reply_space(&fe_of(req)->uring, size);
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

void op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
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
	reply_written(req, ino, file, n, fi->writepage);
}

void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (fe_of(req)->passthrough) {
		struct ovl_file *file = file_of(fi);
		/* (a read in passthrough may leave its data to the page cache) */
		bool reader =
		    pt_mode_of(fi) == OVL_PT_PASSTHROUGH && (fi->flags & O_ACCMODE) == O_RDONLY;
		int fd = reader ? ovl_file_get_fd(fs_of(req), file) : -1;
		ovl_pt_release(fe_of(req), node_of(req, ino), pt_mode_of(fi), fd);
		if (fd >= 0)
			ovl_file_put_fd(file);
	}
	ovl_release(fs_of(req), file_of(fi));
	fuse_reply_err(req, 0);
}

static void run_fsync(struct deferred *d)
{
	fuse_reply_err(d->req, -ovl_fsync(fs_of(d->req), file_of(&d->fi), d->datasync != 0));
}

void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct deferred d = deferred(req, ino, fi, run_fsync);

	d.datasync = datasync;
	submit(&d);
}

static void run_fallocate(struct deferred *d)
{
	int err = ovl_fallocate(fs_of(d->req), file_of(&d->fi), d->mode, d->off, d->len);

	if (!err)
		drop_setid(d->req, d->ino, file_of(&d->fi)); /* done already on Linux 5.x+ */
	fuse_reply_err(d->req, -err);
}

void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
		  struct fuse_file_info *fi)
{
	struct deferred d = deferred(req, ino, fi, run_fallocate);

	d.mode = mode;
	d.off = off;
	d.len = len;
	submit(&d);
}

void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi)
{
	(void)ino;
	off_t res = ovl_lseek(fs_of(req), file_of(fi), off, whence);

	if (res < 0)
		fuse_reply_err(req, (int)-res);
	else
		fuse_reply_lseek(req, res);
}

void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			struct fuse_file_info *fi_out, size_t len, int flags)
{
	(void)ino_in;
	ssize_t n = ovl_copy_file_range(fs_of(req), file_of(fi_in), off_in, file_of(fi_out),
					off_out, len, (unsigned)flags);
	if (n > 0)
		drop_setid(req, ino_out, file_of(fi_out)); /* done already on Linux 5.x+ */
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
}
