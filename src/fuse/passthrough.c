/*
 * FUSE passthrough (Linux 6.9+): reads and writes of an open upper file go straight from
 * the kernel to the layer file, with no round trip through the daemon.
 *
 * libfuse 3.14 predates it, so this file speaks that part of the protocol itself, through
 * libfuse's custom I/O hooks on /dev/fuse: it offers FUSE_PASSTHROUGH in the INIT reply
 * when the kernel does, registers a layer fd as a backing file (FUSE_DEV_IOC_BACKING_OPEN)
 * and marks the OPEN or CREATE reply with FOPEN_PASSTHROUGH and the backing id. The same
 * hooks send each reply back the way its request came: /dev/fuse, or an io_uring queue
 * (uring.c). Values below are the kernel's uapi (include/uapi/linux/fuse.h, protocol 7.40).
 *
 * The kernel lets an inode be in one I/O mode at a time (cached, or passthrough with one
 * backing file) and wants every open of an inode in passthrough marked so: a node is
 * opened in passthrough only while no open file of it is cached; once one is, every other
 * open is marked too (with direct I/O if it must not use the layer file directly), and all
 * share one backing id.
 */
#include "passthrough.h"
#include "uring.h"
#include "engine/hashtab.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#define PT_OP_OPEN 14
#define PT_OP_INIT 26
#define PT_OP_CREATE 35
#define PT_INIT_EXT (1u << 30)
#define PT_WRITEBACK_CACHE (1u << 16)
#define PT_FLAGS2_PASSTHROUGH (1u << 5) /* FUSE_PASSTHROUGH, bit 37 of the 64-bit flags */
#define PT_FOPEN_PASSTHROUGH (1u << 7)
#define PT_MIN_MINOR 40

struct pt_backing_map {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};
#define PT_IOC_BACKING_OPEN _IOW(229, 1, struct pt_backing_map)
#define PT_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

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

struct pt_node {
	const void *node;
	int opens;	/* open files of the node, any mode */
	int pt_opens;	/* of which in passthrough */
	int backing_id; /* while pt_opens > 0 */
	struct ovl_hlink link;
};

static int dev_fd = -1;
static bool kernel_offers, offered, offer_passthrough, init_seen, init_answered;
static atomic_bool enabled;
static uint64_t init_unique;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t pt_node_hash(const struct ovl_hlink *link);
static struct ovl_htab nodes = OVL_HTAB_EMPTY(pt_node_hash);
/* The backing id for the OPEN/CREATE reply this thread is about to send, or 0. */
static __thread int pending_id;

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
static ssize_t dev_send(int fd, const struct iovec *iov, int count, size_t total)
{
	if (ovl_uring_reply(iov, count))
		return (ssize_t)total;
	return writev(fd, iov, count);
}

static ssize_t pt_read(int fd, void *buf, size_t len, void *userdata)
{
	(void)userdata;
	ssize_t n = read(fd, buf, len);
	const char *p = buf;

	if (n >= IN_HDR + INIT_IN_FLAGS2 + 4 && get32(p + IN_OPCODE) == PT_OP_INIT) {
		uint32_t minor = get32(p + IN_HDR + INIT_IN_MINOR);
		uint32_t flags = get32(p + IN_HDR + INIT_IN_FLAGS);
		uint32_t flags2 = get32(p + IN_HDR + INIT_IN_FLAGS2);
		memcpy(&init_unique, p + IN_UNIQUE, sizeof(init_unique));
		init_seen = true;
		kernel_offers = minor >= PT_MIN_MINOR && (flags & PT_INIT_EXT) &&
				(flags2 & PT_FLAGS2_PASSTHROUGH);
	}
	return n;
}

/* Copies the reply into one buffer, lets fix() patch it, and sends that. */
static ssize_t send_patched(int fd, const struct iovec *iov, int count, size_t total,
			    void (*fix)(char *payload, size_t len))
{
	char *buf = malloc(total);
	size_t off = 0;

	if (!buf)
		return dev_send(fd, iov, count, total);
	for (int i = 0; i < count; i++) {
		memcpy(buf + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	fix(buf + OUT_HDR, total - OUT_HDR);
	struct iovec one = {buf, total};
	ssize_t n = dev_send(fd, &one, 1, total);
	free(buf);
	return n;
}

static void fix_init(char *out, size_t len)
{
	if (len < INIT_OUT_STACK_DEPTH + 4 || (get32(out + INIT_OUT_FLAGS) & PT_WRITEBACK_CACHE))
		return;
	put32(out + INIT_OUT_FLAGS, get32(out + INIT_OUT_FLAGS) | PT_INIT_EXT);
	put32(out + INIT_OUT_FLAGS2, get32(out + INIT_OUT_FLAGS2) | PT_FLAGS2_PASSTHROUGH);
	/* Backing files must sit on a filesystem that stacks on nothing (ext4, xfs...). */
	put32(out + INIT_OUT_STACK_DEPTH, 1);
	offered = true;
}

static void fix_open(char *out, size_t len)
{
	char *open_out = out + len - OPEN_OUT_SIZE; /* CREATE: after the entry */

	put32(open_out + OPEN_OUT_FLAGS, get32(open_out + OPEN_OUT_FLAGS) | PT_FOPEN_PASSTHROUGH);
	put32(open_out + OPEN_OUT_BACKING_ID, (uint32_t)pending_id);
}

static ssize_t pt_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	(void)userdata;
	size_t total = 0;
	for (int i = 0; i < count; i++)
		total += iov[i].iov_len;
	if (init_seen && !init_answered && count > 0 && iov[0].iov_len >= OUT_HDR) {
		uint64_t unique;
		memcpy(&unique, (char *)iov[0].iov_base + OUT_UNIQUE, sizeof(unique));
		if (unique == init_unique) {
			init_answered = true;
			ssize_t n = kernel_offers && offer_passthrough
					? send_patched(fd, iov, count, total, fix_init)
					: writev(fd, iov, count);
			/* The kernel has taken the INIT reply: io_uring queues may register. */
			ovl_uring_init_answered();
			return n;
		}
	}
	if (pending_id > 0 && (total == OUT_HDR + OPEN_OUT_SIZE ||
			       total == OUT_HDR + ENTRY_OUT_SIZE + OPEN_OUT_SIZE)) {
		ssize_t n = send_patched(fd, iov, count, total, fix_open);
		pending_id = 0;
		return n;
	}
	return dev_send(fd, iov, count, total);
}

static ssize_t pt_splice_send(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
			      unsigned int flags, void *userdata)
{
	(void)userdata;
	return splice(fdin, offin, fdout, offout, len, flags);
}

static ssize_t pt_splice_receive(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
				 unsigned int flags, void *userdata)
{
	(void)userdata;
	return splice(fdin, offin, fdout, offout, len, flags);
}

int ovl_dev_hooks_install(struct fuse_session *se, bool passthrough)
{
	static const struct fuse_custom_io io = {
	    .read = pt_read,
	    .writev = pt_writev,
	    .splice_send = pt_splice_send,
	    .splice_receive = pt_splice_receive,
	};
	int fd = fuse_session_fd(se);
	int err = fuse_session_custom_io(se, &io, fd);

	if (err)
		return err;
	dev_fd = fd;
	offer_passthrough = passthrough;
	atomic_store(&enabled, passthrough);
	return 0;
}

static uint64_t pt_node_hash(const struct ovl_hlink *link)
{
	return ovl_hash_u64((uintptr_t)ovl_entry_of(link, struct pt_node, link)->node);
}

static bool pt_node_is(const struct ovl_hlink *link, const void *node)
{
	return ovl_entry_of(link, struct pt_node, link)->node == node;
}

/* Caller holds lock. */
static struct pt_node *find(const void *node, bool create)
{
	struct ovl_hlink *link =
	    ovl_htab_find(&nodes, ovl_hash_u64((uintptr_t)node), pt_node_is, node);
	struct pt_node *p;

	if (link)
		return ovl_entry_of(link, struct pt_node, link);
	if (!create || !(p = calloc(1, sizeof(*p))))
		return NULL;
	p->node = node;
	if (ovl_htab_insert(&nodes, &p->link) < 0) {
		free(p);
		return NULL;
	}
	return p;
}

/* Caller holds lock. */
static void drop_if_unused(struct pt_node *p)
{
	if (p->opens > 0)
		return;
	ovl_htab_remove(&nodes, &p->link);
	free(p);
}

enum ovl_pt_mode ovl_pt_open(const void *node, int fd, bool eligible)
{
	enum ovl_pt_mode mode = OVL_PT_CACHED;

	pthread_mutex_lock(&lock);
	struct pt_node *p = find(node, true);
	if (!p) {
		pthread_mutex_unlock(&lock);
		return OVL_PT_DIRECT; /* no memory to track it: uncached, through the daemon */
	}
	bool all_pt = p->pt_opens == p->opens;
	if (p->pt_opens > 0) {
		p->pt_opens++;
		pending_id = p->backing_id;
		mode = eligible ? OVL_PT_PASSTHROUGH : OVL_PT_PT_DIRECT;
	} else if (eligible && all_pt && atomic_load(&enabled) && offered) {
		struct pt_backing_map map = {.fd = fd};
		int id = ioctl(dev_fd, PT_IOC_BACKING_OPEN, &map);
		if (id > 0)
			p->backing_id = id;
		else if (errno == EPERM || errno == EOPNOTSUPP || errno == ENOTTY ||
			 errno == EINVAL || errno == ELOOP)
			atomic_store(&enabled, false); /* not for us (ELOOP: a stacked upper) */
		if (p->backing_id > 0) {
			p->pt_opens++;
			pending_id = p->backing_id;
			mode = OVL_PT_PASSTHROUGH;
		}
	}
	p->opens++;
	pthread_mutex_unlock(&lock);
	return mode;
}

void ovl_pt_reply_done(void)
{
	pending_id = 0;
}

void ovl_pt_release(const void *node, enum ovl_pt_mode mode)
{
	pthread_mutex_lock(&lock);
	struct pt_node *p = find(node, false);
	if (p) {
		p->opens--;
		bool pt = mode == OVL_PT_PASSTHROUGH || mode == OVL_PT_PT_DIRECT;
		if (pt && --p->pt_opens == 0 && p->backing_id > 0) {
			uint32_t id = (uint32_t)p->backing_id;
			(void)ioctl(dev_fd, PT_IOC_BACKING_CLOSE, &id);
			p->backing_id = 0;
		}
		drop_if_unused(p);
	}
	pthread_mutex_unlock(&lock);
}
