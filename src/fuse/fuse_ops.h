/* What the front end's request handlers share (fuse_ops.c, fuse_dir.c, fuse_file.c,
 * fuse_xattr.c): each request becomes one engine call; nothing of the overlay's logic lives
 * here. The session's userdata is the struct ovl_frontend. */
#ifndef OVLFS_FUSE_OPS_H
#define OVLFS_FUSE_OPS_H

#include "frontend.h"
#include "engine/engine.h"
#include "passthrough.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

extern const struct fuse_lowlevel_ops ovl_fuse_ops;

/* Names and attributes change only through this daemon, and the kernel drops what a change
 * makes stale; so the kernel may cache them long (as fuse-overlayfs does). A change made to
 * a layer behind the mount's back is seen once this runs out, as on the kernel overlayfs
 * such a change is undefined. */
static const double cache_timeout = 3600.0;

/* A copy-up of more than this goes to a worker; a smaller one costs less than the hand-off. */
static const off_t long_copy_up = 1 << 20;

static inline struct ovl_frontend *fe_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static inline struct ovl_fs *fs_of(fuse_req_t req)
{
	return fe_of(req)->fs;
}

/* A node's inode number, to the kernel, is its address. */
_Static_assert(sizeof(fuse_ino_t) >= sizeof(uintptr_t), "fuse_ino_t must hold a node pointer");

static inline struct ovl_node *node_of(fuse_req_t req, fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? ovl_root(fs_of(req)) : (struct ovl_node *)(uintptr_t)ino;
}

/* fh: the ovl_file, its passthrough mode in the low bits, which malloc's alignment leaves
 * zero. */
#define FH_MODE_MASK ((uint64_t)3)
_Static_assert(sizeof(uint64_t) >= sizeof(uintptr_t), "a file handle must hold a pointer");
_Static_assert(_Alignof(max_align_t) > FH_MODE_MASK, "malloc must leave the mode bits zero");
_Static_assert(OVL_PT_CACHED <= FH_MODE_MASK && OVL_PT_DIRECT <= FH_MODE_MASK &&
		   OVL_PT_PASSTHROUGH <= FH_MODE_MASK && OVL_PT_PT_DIRECT <= FH_MODE_MASK,
	       "every passthrough mode must fit in the file handle's low bits");

static inline uint64_t fh_of(struct ovl_file *file, enum ovl_pt_mode mode)
{
	return (uint64_t)(uintptr_t)file | (uint64_t)mode;
}

static inline struct ovl_file *file_of(struct fuse_file_info *fi)
{
	return (struct ovl_file *)(uintptr_t)(fi->fh & ~FH_MODE_MASK);
}

static inline enum ovl_pt_mode pt_mode_of(struct fuse_file_info *fi)
{
	return (enum ovl_pt_mode)(fi->fh & FH_MODE_MASK);
}

/* The caller's ids, for the engine's permission rules. */
struct ovl_cred cred_of(fuse_req_t req);
/* After the caller changed the file's data where the kernel leaves the setuid rule to us. */
void drop_setid(fuse_req_t req, fuse_ino_t ino, struct ovl_file *file);
/* How long the kernel may cache node's attributes st (see fuse_ops.c). */
double attr_timeout(struct ovl_node *node, const struct stat *st);
void fill_entry(struct fuse_entry_param *e, struct ovl_fs *fs, struct ovl_node *node,
		const struct stat *st);
/* Replies with node's entry, or with err if it is not 0. */
void reply_entry(fuse_req_t req, int err, struct ovl_node *node, const struct stat *st);

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

struct deferred deferred(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
			 void (*run)(struct deferred *));
/* Runs d->run on a worker, or in this thread when there is no pool or no memory. */
void submit(struct deferred *d);

/* The handlers ovl_fuse_ops lists, by file. fuse_dir.c: */
void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void op_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name);
void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name);
void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
	       const char *newname, unsigned int flags);
void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi);
void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
/* fuse_file.c: */
void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
	       struct fuse_file_info *fi);
/* O_TMPFILE (FUSE_TMPFILE, which libfuse 3.14 does not know: rawops.c answers it): the new
 * unnamed file's entry and open, as op_create gives them; 0 or -errno. After the reply, and
 * before this thread sends another, tmpfile_replied (sent: the kernel took it; if not, the
 * file and the node go). */
int tmpfile_open(struct ovl_frontend *fe, struct ovl_node *parent, mode_t mode, int flags,
		 const struct ovl_cred *cred, struct fuse_entry_param *e,
		 struct fuse_file_info *fi);
void tmpfile_replied(struct ovl_frontend *fe, bool sent, const struct fuse_entry_param *e,
		     struct fuse_file_info *fi);
void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
		  struct fuse_file_info *fi);
void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
		  struct fuse_file_info *fi);
void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi);
void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			struct fuse_file_info *fi_out, size_t len, int flags);
/* fuse_xattr.c: */
void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size,
		 int flags);
void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

#endif
