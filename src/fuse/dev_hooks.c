/*
 * libfuse's custom I/O hooks on /dev/fuse. libfuse 3.14 predates FUSE passthrough, shared
 * mmap of direct_io files and FUSE over io_uring, so ovlfs speaks those parts of the
 * protocol here, on the raw messages: the INIT reply accepts FUSE_DIRECT_IO_ALLOW_MMAP and
 * offers FUSE_PASSTHROUGH when the kernel does, an OPEN or CREATE reply
 * carries FOPEN_PASSTHROUGH and the backing id passthrough.c registered, and every reply
 * goes back the way its request came: /dev/fuse, or an io_uring queue (uring.c), and
 * requests libfuse does not know are answered before it sees them (rawops.c). Values
 * below are the kernel's uapi (include/uapi/linux/fuse.h, protocol 7.40). libfuse hands
 * each hook the session's userdata: the frontend.
 */
#include "frontend.h"
#include "dev_hooks.h"
#include "passthrough.h"
#include "rawops.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define PT_OP_OPEN 14
#define PT_OP_INIT 26
#define PT_OP_CREATE 35
#define PT_INIT_EXT (1u << 30)
#define PT_WRITEBACK_CACHE (1u << 16)
#define PT_KILLPRIV_V2 (1u << 28)	/* FUSE_HANDLE_KILLPRIV_V2 */
#define PT_FLAGS2_PASSTHROUGH (1u << 5) /* FUSE_PASSTHROUGH, bit 37 of the 64-bit flags */
#define PT_FLAGS2_ALLOW_MMAP (1u << 4)	/* FUSE_DIRECT_IO_ALLOW_MMAP, bit 36 (Linux 6.6+) */
#define PT_FLAGS2_NO_EXPORT (1u << 6)	/* FUSE_NO_EXPORT_SUPPORT, bit 38 (Linux 6.9+) */
#define PT_FOPEN_PASSTHROUGH (1u << 7)
#define PT_MIN_MINOR 40

/* Byte offsets in the protocol structures this file touches. */
enum {
	IN_HDR = 40,	   /* fuse_in_header */
	IN_OPCODE = 4,	   /* uint32 */
	IN_UNIQUE = 8,	   /* uint64 */
	INIT_IN_MINOR = 4, /* fuse_init_in, after the header */
	INIT_IN_FLAGS = 12,
	INIT_IN_FLAGS2 = 16,
	OUT_HDR = 16, /* fuse_out_header: len, error, unique */
	OUT_UNIQUE = 8,
	INIT_OUT_FLAGS = 12, /* fuse_init_out */
	INIT_OUT_FLAGS2 = 32,
	INIT_OUT_STACK_DEPTH = 36,
	OPEN_OUT_SIZE = 16, /* fuse_open_out: fh, open_flags, backing_id */
	OPEN_OUT_FLAGS = 8,
	OPEN_OUT_BACKING_ID = 12,
	ENTRY_OUT_SIZE = 128,
};

/* Requests read from /dev/fuse, per opcode (SIGUSR1 logs them, see stats.c): what a
 * workload costs in round trips. One process serves one session. io_uring's are not
 * counted. */
#define OPCODES 53
static atomic_uint_fast64_t requests_seen[OPCODES];

/* The kernel's names (include/uapi/linux/fuse.h), without FUSE_. */
static const char *const opcode_names[OPCODES] = {
    [1] = "LOOKUP",	   [2] = "FORGET",	   [3] = "GETATTR",
    [4] = "SETATTR",	   [5] = "READLINK",	   [6] = "SYMLINK",
    [8] = "MKNOD",	   [9] = "MKDIR",	   [10] = "UNLINK",
    [11] = "RMDIR",	   [12] = "RENAME",	   [13] = "LINK",
    [14] = "OPEN",	   [15] = "READ",	   [16] = "WRITE",
    [17] = "STATFS",	   [18] = "RELEASE",	   [20] = "FSYNC",
    [21] = "SETXATTR",	   [22] = "GETXATTR",	   [23] = "LISTXATTR",
    [24] = "REMOVEXATTR",  [25] = "FLUSH",	   [26] = "INIT",
    [27] = "OPENDIR",	   [28] = "READDIR",	   [29] = "RELEASEDIR",
    [30] = "FSYNCDIR",	   [31] = "GETLK",	   [32] = "SETLK",
    [33] = "SETLKW",	   [34] = "ACCESS",	   [35] = "CREATE",
    [36] = "INTERRUPT",	   [37] = "BMAP",	   [38] = "DESTROY",
    [39] = "IOCTL",	   [40] = "POLL",	   [41] = "NOTIFY_REPLY",
    [42] = "BATCH_FORGET", [43] = "FALLOCATE",	   [44] = "READDIRPLUS",
    [45] = "RENAME2",	   [46] = "LSEEK",	   [47] = "COPY_FILE_RANGE",
    [48] = "SETUPMAPPING", [49] = "REMOVEMAPPING", [50] = "SYNCFS",
    [51] = "TMPFILE",	   [52] = "STATX",
};

size_t ovl_dev_requests_format(char *buf, size_t size)
{
	size_t len = 0;

	if (size)
		buf[0] = '\0';
	for (unsigned op = 0; op < OPCODES; op++) {
		uint64_t n = atomic_load_explicit(&requests_seen[op], memory_order_relaxed);
		if (n == 0 || len >= size)
			continue;
		int w = opcode_names[op] ? snprintf(buf + len, size - len, " %s=%llu",
						    opcode_names[op], (unsigned long long)n)
					 : snprintf(buf + len, size - len, " op%u=%llu", op,
						    (unsigned long long)n);
		if (w > 0)
			len += (size_t)w;
	}
	return len < size ? len : size ? size - 1 : 0;
}

void ovl_dev_count_request(const char *req, size_t len)
{
	uint32_t op;

	if (len < IN_HDR)
		return;
	memcpy(&op, req + IN_OPCODE, sizeof(op));
	if (op < OPCODES)
		atomic_fetch_add_explicit(&requests_seen[op], 1, memory_order_relaxed);
}

static uint32_t get32(const char *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static void put32(char *p, uint32_t v)
{
	memcpy(p, &v, sizeof(v));
}

/* Every reply goes out here: through its io_uring queue if it came that way. */
static ssize_t dev_send(struct ovl_frontend *fe, int fd, const struct iovec *iov, int count,
			size_t total)
{
	if (ovl_uring_reply(&fe->uring, iov, count))
		return (ssize_t)total;
	return writev(fd, iov, count);
}

/* Answers req here if libfuse does not know it (rawops.c); false: libfuse's to dispatch. */
static bool answer_raw(struct ovl_frontend *fe, int fd, const char *req, size_t len)
{
	char out[OVL_RAW_REPLY_MAX];
	size_t n = ovl_raw_answer(fe, req, len, out);

	if (n == 0)
		return false;
	struct iovec iov = {out, n};
	/* A failed write is a request the kernel gave up on (interrupted): what the reply
	 * handed over goes again. */
	ovl_raw_sent(fe, req, out, dev_send(fe, fd, &iov, 1, n) == (ssize_t)n);
	return true;
}

/* The io_uring queues' entry to answer_raw (uring.h). */
static bool uring_raw(void *arg, const char *req, size_t len)
{
	struct ovl_frontend *fe = arg;

	return answer_raw(fe, fe->dev_fd, req, len);
}

static ssize_t dev_read(int fd, void *buf, size_t len, void *userdata)
{
	struct ovl_frontend *fe = userdata;
	const char *p = buf;
	ssize_t n;

	/* A request answered here never reaches libfuse: wait for the next one. */
	while ((n = read(fd, buf, len)) > 0) {
		ovl_dev_count_request(buf, (size_t)n);
		if (!answer_raw(fe, fd, buf, (size_t)n))
			break;
	}

	if (n >= IN_HDR + INIT_IN_FLAGS2 + 4 && get32(p + IN_OPCODE) == PT_OP_INIT) {
		uint32_t minor = get32(p + IN_HDR + INIT_IN_MINOR);
		uint32_t flags = get32(p + IN_HDR + INIT_IN_FLAGS);
		uint32_t flags2 = get32(p + IN_HDR + INIT_IN_FLAGS2);
		memcpy(&fe->dev.init_unique, p + IN_UNIQUE, sizeof(fe->dev.init_unique));
		fe->dev.init_seen = true;
		fe->dev.kernel_offers = minor >= PT_MIN_MINOR && (flags & PT_INIT_EXT) &&
					(flags2 & PT_FLAGS2_PASSTHROUGH);
		fe->dev.kernel_allows_mmap =
		    (flags & PT_INIT_EXT) && (flags2 & PT_FLAGS2_ALLOW_MMAP);
		fe->dev.kernel_no_export = (flags & PT_INIT_EXT) && (flags2 & PT_FLAGS2_NO_EXPORT);
		fe->dev.kernel_killpriv_v2 = flags & PT_KILLPRIV_V2;
	}
	return n;
}

/* Copies the reply into one buffer, lets fix() patch it, and sends that. */
static ssize_t send_patched(struct ovl_frontend *fe, int fd, const struct iovec *iov, int count,
			    size_t total, void (*fix)(char *payload, size_t len, void *arg),
			    void *arg)
{
	char *buf = malloc(total);
	size_t off = 0;

	if (!buf)
		return dev_send(fe, fd, iov, count, total);
	for (int i = 0; i < count; i++) {
		memcpy(buf + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	fix(buf + OUT_HDR, total - OUT_HDR, arg);
	struct iovec one = {buf, total};
	ssize_t n = dev_send(fe, fd, &one, 1, total);
	free(buf);
	return n;
}

/* Whether the INIT reply needs fix_init. */
static bool init_to_fix(const struct ovl_frontend *fe)
{
	return (fe->dev.kernel_offers && fe->dev.offer_passthrough) || fe->dev.kernel_allows_mmap ||
	       fe->dev.kernel_no_export || fe->dev.kernel_killpriv_v2;
}

/* arg: the frontend. */
static void fix_init(char *out, size_t len, void *arg)
{
	struct ovl_frontend *fe = arg;

	if (len < INIT_OUT_STACK_DEPTH + 4)
		return;
	put32(out + INIT_OUT_FLAGS, get32(out + INIT_OUT_FLAGS) | PT_INIT_EXT);
	/* Files opened with direct_io (O_DIRECT) map MAP_SHARED as on the
	 * kernel overlayfs; their reads and writes flush and drop the mapped pages first. */
	if (fe->dev.kernel_allows_mmap)
		put32(out + INIT_OUT_FLAGS2, get32(out + INIT_OUT_FLAGS2) | PT_FLAGS2_ALLOW_MMAP);
	/* Our node ids die with FORGET, so a file handle could not be decoded later: the kernel
	 * then encodes only FIDs (fanotify), as the kernel overlayfs does with nfs_export=off,
	 * and name_to_handle_at without AT_HANDLE_FID fails with EOPNOTSUPP (fs/fuse/inode.c,
	 * process_init_reply: fuse_export_fid_operations). */
	if (fe->dev.kernel_no_export)
		put32(out + INIT_OUT_FLAGS2, get32(out + INIT_OUT_FLAGS2) | PT_FLAGS2_NO_EXPORT);
	/* The setuid rule is ours on every write that reaches us (fuse_file.c drop_setid), on
	 * truncate and chown (fuse_ops.c): the kernel then asks for security.capability once
	 * per inode (SB_NOSEC), not before each write (fs/fuse/inode.c, process_init_reply). */
	if (fe->dev.kernel_killpriv_v2)
		put32(out + INIT_OUT_FLAGS, get32(out + INIT_OUT_FLAGS) | PT_KILLPRIV_V2);
	if (!fe->dev.kernel_offers || !fe->dev.offer_passthrough ||
	    (get32(out + INIT_OUT_FLAGS) & PT_WRITEBACK_CACHE))
		return;
	put32(out + INIT_OUT_FLAGS2, get32(out + INIT_OUT_FLAGS2) | PT_FLAGS2_PASSTHROUGH);
	/* Backing files must sit on a filesystem that stacks on nothing (ext4, xfs...). */
	put32(out + INIT_OUT_STACK_DEPTH, 1);
	fe->dev.passthrough_offered = true;
}

/* arg: the backing id. */
static void fix_open(char *out, size_t len, void *arg)
{
	const int *backing_id = arg;
	char *open_out = out + len - OPEN_OUT_SIZE; /* CREATE: after the entry */

	put32(open_out + OPEN_OUT_FLAGS, get32(open_out + OPEN_OUT_FLAGS) | PT_FOPEN_PASSTHROUGH);
	put32(open_out + OPEN_OUT_BACKING_ID, (uint32_t)*backing_id);
}

static ssize_t dev_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	struct ovl_frontend *fe = userdata;
	size_t total = 0;
	for (int i = 0; i < count; i++)
		total += iov[i].iov_len;
	if (fe->dev.init_seen && !fe->dev.init_answered && count > 0 && iov[0].iov_len >= OUT_HDR) {
		uint64_t unique;
		memcpy(&unique, (char *)iov[0].iov_base + OUT_UNIQUE, sizeof(unique));
		if (unique == fe->dev.init_unique) {
			fe->dev.init_answered = true;
			ssize_t n = init_to_fix(fe)
					? send_patched(fe, fd, iov, count, total, fix_init, fe)
					: writev(fd, iov, count);
			/* The kernel has taken the INIT reply: io_uring queues may register. */
			ovl_uring_init_answered(&fe->uring);
			return n;
		}
	}
	int pending_id = ovl_pt_pending_id();
	if (pending_id > 0 && (total == OUT_HDR + OPEN_OUT_SIZE ||
			       total == OUT_HDR + ENTRY_OUT_SIZE + OPEN_OUT_SIZE)) {
		ssize_t n = send_patched(fe, fd, iov, count, total, fix_open, &pending_id);
		ovl_pt_reply_done();
		return n;
	}
	return dev_send(fe, fd, iov, count, total);
}

static ssize_t dev_splice_send(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
			       unsigned int flags, void *userdata)
{
	(void)userdata;
	return splice(fdin, offin, fdout, offout, len, flags);
}

static ssize_t dev_splice_receive(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
				  unsigned int flags, void *userdata)
{
	(void)userdata;
	return splice(fdin, offin, fdout, offout, len, flags);
}

int ovl_dev_hooks_install(struct ovl_frontend *fe, bool passthrough)
{
	static const struct fuse_custom_io io = {
	    .read = dev_read,
	    .writev = dev_writev,
	    .splice_send = dev_splice_send,
	    .splice_receive = dev_splice_receive,
	};
	int err = fuse_session_custom_io(fe->session, &io, fe->dev_fd);

	if (err)
		return err;
	fe->dev.offer_passthrough = passthrough;
	fe->dev.hooked = true;
	fe->uring.raw = uring_raw;
	fe->uring.raw_arg = fe;
	atomic_store(&fe->pt_enabled, passthrough);
	return 0;
}
