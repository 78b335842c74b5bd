/*
 * Requests newer than libfuse 3.14, answered on the raw message before libfuse's dispatch
 * sees it (which would answer ENOSYS). The /dev/fuse read hook and the io_uring queues hand
 * every request here first (dev_hooks.c, uring.c).
 *
 * - STATX (protocol 7.39, Linux 6.6): the kernel asks it for a statx(2) that wants the
 *   creation time, until a daemon answers ENOSYS. The answer is the getattr one plus the
 *   layer object's btime, as the kernel overlayfs reports the real file's.
 * - SYNCFS (7.36): syncfs(2) of the upper layer. Linux sends it only on connections marked
 *   sync_fs, which only virtiofs sets (fs/fuse/inode.c fuse_sync_fs): a /dev/fuse mount
 *   never gets it today, so this answers it for a kernel that one day does.
 * - TMPFILE (7.37, Linux 6.1): open(dir, O_TMPFILE). The kernel sends CREATE's arguments
 *   (fs/fuse/dir.c fuse_tmpfile, fuse_create_open) and wants CREATE's reply: the entry of
 *   the new unnamed file (link count 0: the kernel's vfs_link then lets only a tmpfile
 *   opened without O_EXCL be linked) and its open. Until a daemon answers, the kernel
 *   answers EOPNOTSUPP.
 *
 * The structures are laid out by hand from the kernel's uapi (include/uapi/linux/fuse.h):
 * the installed <linux/fuse.h> may predate them, and it clashes with libfuse's headers.
 */
#include "rawops.h"
#include "fuse_ops.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#define RAW_SYNCFS 50
#define RAW_TMPFILE 51
#define RAW_STATX 52
#define RAW_FOPEN_DIRECT_IO (1u << 0)
#define RAW_FOPEN_KEEP_CACHE (1u << 1)
#define RAW_FOPEN_PASSTHROUGH (1u << 7)
#define RAW_GETATTR_FH (1u << 0)

struct raw_in_header {
	uint32_t len, opcode;
	uint64_t unique, nodeid;
	uint32_t uid, gid, pid;
	uint16_t total_extlen, padding;
};

struct raw_out_header {
	uint32_t len;
	int32_t error;
	uint64_t unique;
};

struct raw_statx_in {
	uint32_t getattr_flags, reserved;
	uint64_t fh;
	uint32_t sx_flags, sx_mask;
};

struct raw_sx_time {
	int64_t tv_sec;
	uint32_t tv_nsec;
	int32_t reserved;
};

struct raw_statx {
	uint32_t mask, blksize;
	uint64_t attributes;
	uint32_t nlink, uid, gid;
	uint16_t mode, spare0;
	uint64_t ino, size, blocks, attributes_mask;
	struct raw_sx_time atime, btime, ctime, mtime;
	uint32_t rdev_major, rdev_minor, dev_major, dev_minor;
	uint64_t spare2[14];
};

struct raw_statx_out {
	uint64_t attr_valid;
	uint32_t attr_valid_nsec, flags;
	uint64_t spare[2];
	struct raw_statx stat;
};

struct raw_create_in {
	uint32_t flags, mode, umask, open_flags;
};

struct raw_attr {
	uint64_t ino, size, blocks, atime, mtime, ctime;
	uint32_t atimensec, mtimensec, ctimensec, mode, nlink, uid, gid, rdev, blksize, flags;
};

struct raw_entry_out {
	uint64_t nodeid, generation, entry_valid, attr_valid;
	uint32_t entry_valid_nsec, attr_valid_nsec;
	struct raw_attr attr;
};

struct raw_open_out {
	uint64_t fh;
	uint32_t open_flags;
	int32_t backing_id;
};

struct raw_create_out {
	struct raw_entry_out entry;
	struct raw_open_out open;
};

_Static_assert(sizeof(struct raw_in_header) == 40, "fuse_in_header is 40 bytes");
_Static_assert(sizeof(struct raw_create_in) == 16, "fuse_create_in is 16 bytes");
_Static_assert(sizeof(struct raw_entry_out) == 128, "fuse_entry_out is 128 bytes");
_Static_assert(sizeof(struct raw_open_out) == 16, "fuse_open_out is 16 bytes");
_Static_assert(sizeof(struct raw_out_header) + sizeof(struct raw_create_out) <= OVL_RAW_REPLY_MAX,
	       "the TMPFILE reply must fit OVL_RAW_REPLY_MAX");
_Static_assert(sizeof(struct raw_statx_in) == 24, "fuse_statx_in is 24 bytes");
_Static_assert(sizeof(struct raw_statx) == 256, "fuse_statx is 256 bytes");
_Static_assert(sizeof(struct raw_out_header) + sizeof(struct raw_statx_out) <= OVL_RAW_REPLY_MAX,
	       "the STATX reply must fit OVL_RAW_REPLY_MAX");

static struct raw_sx_time sx_time(struct timespec ts)
{
	return (struct raw_sx_time){.tv_sec = ts.tv_sec, .tv_nsec = (uint32_t)ts.tv_nsec};
}

static struct ovl_node *raw_node(struct ovl_fs *fs, uint64_t nodeid)
{
	return nodeid == FUSE_ROOT_ID ? ovl_root(fs) : (struct ovl_node *)(uintptr_t)nodeid;
}

/* The getattr answer (same attributes, same cache time) plus the layer object's btime. */
static int answer_statx(struct ovl_frontend *fe, const struct raw_in_header *in,
			const struct raw_statx_in *arg, struct raw_statx_out *out)
{
	struct ovl_node *node = raw_node(fe->fs, in->nodeid);
	struct ovl_file *file = NULL;
	struct timespec btime;
	struct stat st;

	/* The kernel sends an open file's handle for regular files only. */
	if (arg->getattr_flags & RAW_GETATTR_FH)
		file = (struct ovl_file *)(uintptr_t)(arg->fh & ~FH_MODE_MASK);
	int err = ovl_getattr_file(fe->fs, node, file, &st);
	if (err)
		return err;
	memset(out, 0, sizeof(*out));
	struct raw_statx *sx = &out->stat;
	/* A layer without creation times (or an object gone meanwhile) answers without one,
	 * as a statx of it would. First: it ends what attr_timeout says of a stale btime. */
	if (ovl_btime(fe->fs, node, &btime) == 0) {
		sx->mask |= STATX_BTIME;
		sx->btime = sx_time(btime);
	}
	double timeout = attr_timeout(node, &st);
	out->attr_valid = (uint64_t)timeout;
	out->attr_valid_nsec = (uint32_t)((timeout - (double)out->attr_valid) * 1e9);
	sx->mask |= STATX_BASIC_STATS;
	sx->blksize = (uint32_t)st.st_blksize;
	sx->nlink = (uint32_t)st.st_nlink;
	sx->uid = st.st_uid;
	sx->gid = st.st_gid;
	sx->mode = (uint16_t)st.st_mode;
	sx->ino = st.st_ino;
	sx->size = (uint64_t)st.st_size;
	sx->blocks = (uint64_t)st.st_blocks;
	sx->atime = sx_time(st.st_atim);
	sx->mtime = sx_time(st.st_mtim);
	sx->ctime = sx_time(st.st_ctim);
	sx->rdev_major = major(st.st_rdev);
	sx->rdev_minor = minor(st.st_rdev);
	sx->dev_major = major(st.st_dev);
	sx->dev_minor = minor(st.st_dev);
	return 0;
}

/* A timeout in seconds as the protocol carries it (libfuse's rounding). */
static void raw_timeout(double t, uint64_t *sec, uint32_t *nsec)
{
	*sec = t <= 0 ? 0 : (uint64_t)t;
	*nsec = t <= 0 ? 0 : (uint32_t)((t - (double)*sec) * 1e9);
}

static void raw_entry(const struct fuse_entry_param *e, struct raw_entry_out *o)
{
	const struct stat *st = &e->attr;

	memset(o, 0, sizeof(*o));
	o->nodeid = e->ino;
	o->generation = e->generation;
	raw_timeout(e->entry_timeout, &o->entry_valid, &o->entry_valid_nsec);
	raw_timeout(e->attr_timeout, &o->attr_valid, &o->attr_valid_nsec);
	o->attr = (struct raw_attr){.ino = st->st_ino,
				    .size = (uint64_t)st->st_size,
				    .blocks = (uint64_t)st->st_blocks,
				    .atime = (uint64_t)st->st_atim.tv_sec,
				    .mtime = (uint64_t)st->st_mtim.tv_sec,
				    .ctime = (uint64_t)st->st_ctim.tv_sec,
				    .atimensec = (uint32_t)st->st_atim.tv_nsec,
				    .mtimensec = (uint32_t)st->st_mtim.tv_nsec,
				    .ctimensec = (uint32_t)st->st_ctim.tv_nsec,
				    .mode = st->st_mode,
				    .nlink = (uint32_t)st->st_nlink,
				    .uid = st->st_uid,
				    .gid = st->st_gid,
				    .rdev = (uint32_t)st->st_rdev,
				    .blksize = (uint32_t)st->st_blksize};
}

/* CREATE's reply for an unnamed file in directory in->nodeid. */
static int answer_tmpfile(struct ovl_frontend *fe, const struct raw_in_header *in,
			  const struct raw_create_in *arg, struct raw_create_out *out)
{
	/* The umask comes unapplied where FUSE_DONT_MASK was agreed (the kernel applied it
	 * otherwise); the daemon answers for the caller's ids as a CREATE does. */
	struct ovl_cred cred = {
	    .uid = in->uid, .gid = in->gid, .umask = fe->dont_mask ? (mode_t)arg->umask : 0};
	struct fuse_entry_param e;
	struct fuse_file_info fi;
	int err = tmpfile_open(fe, raw_node(fe->fs, in->nodeid), (mode_t)arg->mode, (int)arg->flags,
			       &cred, &e, &fi);

	if (err)
		return err;
	raw_entry(&e, &out->entry);
	memset(&out->open, 0, sizeof(out->open));
	out->open.fh = fi.fh;
	if (fi.direct_io)
		out->open.open_flags |= RAW_FOPEN_DIRECT_IO;
	if (fi.keep_cache)
		out->open.open_flags |= RAW_FOPEN_KEEP_CACHE;
	/* What dev_hooks.c's write hook adds to a CREATE reply; this one does not pass it. */
	int backing_id = ovl_pt_pending_id();
	if (backing_id > 0) {
		out->open.open_flags |= RAW_FOPEN_PASSTHROUGH;
		out->open.backing_id = backing_id;
	}
	ovl_pt_reply_done();
	return 0;
}

void ovl_raw_sent(struct ovl_frontend *fe, const char *req, const char *out, bool sent)
{
	struct raw_in_header in;
	struct raw_out_header oh;
	struct raw_create_out co;

	memcpy(&in, req, sizeof(in));
	memcpy(&oh, out, sizeof(oh));
	if (in.opcode != RAW_TMPFILE || oh.error != 0)
		return;
	memcpy(&co, out + sizeof(oh), sizeof(co));
	struct fuse_entry_param e = {.ino = co.entry.nodeid};
	struct fuse_file_info fi = {.fh = co.open.fh};
	tmpfile_replied(fe, sent, &e, &fi);
}

static const char *raw_name(uint32_t opcode)
{
	return opcode == RAW_STATX ? "STATX" : opcode == RAW_SYNCFS ? "SYNCFS" : "TMPFILE";
}

size_t ovl_raw_answer(struct ovl_frontend *fe, const char *req, size_t len, char *out)
{
	struct raw_in_header in;
	struct raw_out_header oh = {.len = sizeof(oh)};

	if (len < sizeof(in))
		return 0;
	memcpy(&in, req, sizeof(in));
	if (in.opcode != RAW_STATX && in.opcode != RAW_SYNCFS && in.opcode != RAW_TMPFILE)
		return 0;
	oh.unique = in.unique;
	if (in.opcode == RAW_SYNCFS) {
		oh.error = ovl_syncfs(fe->fs);
	} else if (in.opcode == RAW_TMPFILE) {
		struct raw_create_in arg;
		struct raw_create_out co;
		if (len < sizeof(in) + sizeof(arg)) {
			oh.error = -EIO;
		} else {
			memcpy(&arg, req + sizeof(in), sizeof(arg));
			oh.error = answer_tmpfile(fe, &in, &arg, &co);
		}
		if (!oh.error) {
			oh.len += sizeof(co);
			memcpy(out + sizeof(oh), &co, sizeof(co));
		}
	} else if (len < sizeof(in) + sizeof(struct raw_statx_in)) {
		oh.error = -EIO;
	} else {
		struct raw_statx_in arg;
		struct raw_statx_out sxo;
		memcpy(&arg, req + sizeof(in), sizeof(arg));
		oh.error = answer_statx(fe, &in, &arg, &sxo);
		if (!oh.error) {
			oh.len += sizeof(sxo);
			memcpy(out + sizeof(oh), &sxo, sizeof(sxo));
		}
	}
	memcpy(out, &oh, sizeof(oh));
	/* -d traces these too, in libfuse's words, since libfuse never sees them. */
	if (fe->opts.debug)
		fprintf(stderr,
			"unique: %llu, opcode: %s (%u), nodeid: %llu: answered, error: %d\n",
			(unsigned long long)in.unique, raw_name(in.opcode), in.opcode,
			(unsigned long long)in.nodeid, oh.error);
	return oh.len;
}
