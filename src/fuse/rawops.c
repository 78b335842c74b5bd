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
#define RAW_STATX 52
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

_Static_assert(sizeof(struct raw_in_header) == 40, "fuse_in_header is 40 bytes");
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

size_t ovl_raw_answer(struct ovl_frontend *fe, const char *req, size_t len, char *out)
{
	struct raw_in_header in;
	struct raw_out_header oh = {.len = sizeof(oh)};

	if (len < sizeof(in))
		return 0;
	memcpy(&in, req, sizeof(in));
	if (in.opcode != RAW_STATX && in.opcode != RAW_SYNCFS)
		return 0;
	oh.unique = in.unique;
	if (in.opcode == RAW_SYNCFS) {
		oh.error = ovl_syncfs(fe->fs);
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
			(unsigned long long)in.unique, in.opcode == RAW_STATX ? "STATX" : "SYNCFS",
			in.opcode, (unsigned long long)in.nodeid, oh.error);
	return oh.len;
}
