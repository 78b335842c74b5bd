/*
 * FUSE passthrough (Linux 6.9+): reads and writes of an open upper file go straight from
 * the kernel to the layer file, with no round trip through the daemon.
 *
 * libfuse 3.14 predates it, so ovlfs speaks that part of the protocol itself: the /dev/fuse
 * hooks (dev_hooks.c) offer FUSE_PASSTHROUGH in the INIT reply when the kernel does and
 * mark the OPEN or CREATE reply with FOPEN_PASSTHROUGH and the backing id; this file
 * registers a layer fd as a backing file (FUSE_DEV_IOC_BACKING_OPEN). Values below are the
 * kernel's uapi (include/uapi/linux/fuse.h, protocol 7.40).
 *
 * The kernel lets an inode be in one I/O mode at a time (cached, or passthrough with one
 * backing file) and wants every open of an inode in passthrough marked so: a node is
 * opened in passthrough only while no open file of it is cached; once one is, every other
 * open is marked too (with direct I/O if it must not use the layer file directly), and all
 * share one backing id.
 *
 * A small file opened read-only starts no passthrough: the page cache serves its warm
 * re-reads with no request at all, where passthrough costs a backing file per open. Except
 * the first read after it was written in passthrough: the page cache then holds none of
 * its data, and one READ request would cost more than the backing file (git writes each
 * object, git fsck reads it). When that read's last open is released, its data is put in
 * the page cache (FUSE_NOTIFY_STORE), so the next opens are served from there as if the
 * first had been. Under the lock, with no open file left: a later writer's passthrough
 * open, which empties the page cache, comes after it.
 * Files opened for writing stay in passthrough whatever their size: one created empty may
 * grow to any size, and the kernel fixes the mode for as long as the file is open.
 */
#include "frontend.h"
#include "passthrough.h"
#include "engine/hashtab.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

struct pt_backing_map {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};
#define PT_IOC_BACKING_OPEN _IOW(229, 1, struct pt_backing_map)
#define PT_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

struct pt_node {
	const void *node;
	int opens;	/* open files of the node, any mode */
	int pt_opens;	/* of which in passthrough */
	int backing_id; /* while pt_opens > 0 */
	bool cold_read; /* a first small read in passthrough: its data to the page cache */
	struct ovl_hlink link;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t pt_node_hash(const struct ovl_hlink *link);
static struct ovl_htab nodes = OVL_HTAB_EMPTY(pt_node_hash);
/* The backing id for the OPEN/CREATE reply this thread is about to send, or 0. */
static __thread int pending_id;

static uint64_t pt_node_hash(const struct ovl_hlink *link)
{
	return ovl_hash_u64((uintptr_t)ovl_entry_of(link, struct pt_node, link)->node);
}

static bool pt_node_is(const struct ovl_hlink *link, const void *node)
{
	return ovl_entry_of(link, struct pt_node, link)->node == node;
}

/* Nodes written in passthrough and not opened cached since: their page cache is cold.
 * Bounded (a node freed and its address reused only costs one passthrough open). */
struct cold_node {
	const void *node;
	struct ovl_hlink link;
};
#define COLD_MAX 65536
static uint64_t cold_hash(const struct ovl_hlink *link);
static struct ovl_htab cold = OVL_HTAB_EMPTY(cold_hash);
static size_t ncold;

static uint64_t cold_hash(const struct ovl_hlink *link)
{
	return ovl_hash_u64((uintptr_t)ovl_entry_of(link, struct cold_node, link)->node);
}

static bool cold_is(const struct ovl_hlink *link, const void *node)
{
	return ovl_entry_of(link, struct cold_node, link)->node == node;
}

/* Caller holds lock. */
static void mark_cold(const void *node, bool is_cold)
{
	struct ovl_hlink *link = ovl_htab_find(&cold, ovl_hash_u64((uintptr_t)node), cold_is, node);
	struct cold_node *c;

	if (!is_cold && link) {
		ovl_htab_remove(&cold, link);
		free(ovl_entry_of(link, struct cold_node, link));
		ncold--;
	} else if (is_cold && !link && ncold < COLD_MAX && (c = calloc(1, sizeof(*c)))) {
		c->node = node;
		if (ovl_htab_insert(&cold, &c->link) < 0)
			free(c);
		else
			ncold++;
	}
}

/* Caller holds lock. */
static bool is_cold(const void *node)
{
	return ovl_htab_find(&cold, ovl_hash_u64((uintptr_t)node), cold_is, node) != NULL;
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

/* A read-only open of a small file: the page cache serves it better (see the top). */
static bool cache_pays(int fd, int open_flags)
{
	struct stat st;

	if ((open_flags & O_ACCMODE) != O_RDONLY || fstat(fd, &st) < 0)
		return false;
	return st.st_size < OVL_PT_MIN_READ_SIZE;
}

enum ovl_pt_mode ovl_pt_open(struct ovl_frontend *fe, const void *node, int fd, int open_flags,
			     bool eligible)
{
	enum ovl_pt_mode mode = OVL_PT_CACHED;
	bool small_read = eligible && cache_pays(fd, open_flags);

	pthread_mutex_lock(&lock);
	bool start_pt = eligible && (!small_read || is_cold(node));
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
	} else if (start_pt && all_pt && atomic_load(&fe->pt_enabled) &&
		   fe->dev.passthrough_offered) {
		struct pt_backing_map map = {.fd = fd};
		int id = ioctl(fe->dev_fd, PT_IOC_BACKING_OPEN, &map);
		if (id > 0)
			p->backing_id = id;
		else if (errno == EPERM || errno == EOPNOTSUPP || errno == ENOTTY ||
			 errno == EINVAL || errno == ELOOP)
			atomic_store(&fe->pt_enabled,
				     false); /* not for us (ELOOP: a stacked upper) */
		if (p->backing_id > 0) {
			p->pt_opens++;
			pending_id = p->backing_id;
			mode = OVL_PT_PASSTHROUGH;
			p->cold_read = small_read;
		}
	}
	p->opens++;
	/* Written in passthrough: cold. Opened otherwise (cached, or read in passthrough
	 * once): its next small read goes through the page cache. */
	mark_cold(node, mode == OVL_PT_PASSTHROUGH && (open_flags & O_ACCMODE) != O_RDONLY);
	pthread_mutex_unlock(&lock);
	return mode;
}

void ovl_pt_reply_done(void)
{
	pending_id = 0;
}

int ovl_pt_pending_id(void)
{
	return pending_id;
}

/* Puts the small file open at fd into the node's page cache. Caller holds lock. */
static void store_pages(struct ovl_frontend *fe, const void *node, int fd)
{
	char *buf = malloc(OVL_PT_MIN_READ_SIZE);
	ssize_t n = buf ? pread(fd, buf, OVL_PT_MIN_READ_SIZE, 0) : -1;

	if (n > 0 && n < OVL_PT_MIN_READ_SIZE && fe->session) {
		struct fuse_bufvec bv = FUSE_BUFVEC_INIT((size_t)n);
		bv.buf[0].mem = buf;
		/* best effort: a failure only leaves the next read its READ request */
		(void)fuse_lowlevel_notify_store(fe->session, (fuse_ino_t)(uintptr_t)node, 0, &bv,
						 0);
	}
	free(buf);
}

void ovl_pt_release(struct ovl_frontend *fe, const void *node, enum ovl_pt_mode mode, int fd)
{
	pthread_mutex_lock(&lock);
	struct pt_node *p = find(node, false);
	if (p) {
		p->opens--;
		if (p->cold_read && p->opens == 0 && fd >= 0)
			store_pages(fe, node, fd);
		bool pt = mode == OVL_PT_PASSTHROUGH || mode == OVL_PT_PT_DIRECT;
		if (pt && --p->pt_opens == 0 && p->backing_id > 0) {
			uint32_t id = (uint32_t)p->backing_id;
			(void)ioctl(fe->dev_fd, PT_IOC_BACKING_CLOSE, &id);
			p->backing_id = 0;
		}
		drop_if_unused(p);
	}
	pthread_mutex_unlock(&lock);
}
