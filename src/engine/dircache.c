/* The directory fd cache: an O_PATH fd of a directory node's object in one layer, kept so
 * that a request on a name in that directory opens it relative to the fd instead of
 * walking the whole path from the layer root again (layer.c). Bounded: a fixed table of
 * OVL_DIRCACHE_SETS x OVL_DIRCACHE_WAYS fds (RLIMIT_NOFILE is shared with the open files),
 * least recently used first out within a set.
 *
 * Validity: an entry is keyed by the node's address and the layer (a temporary node on the
 * stack, inode number 0, is never cached), and stamped with the generation it was opened in.
 * Whatever may change which object a directory node's path names in a layer bumps the generation,
 * which invalidates every entry at once: a rename (the rename lock written: moves, redirects, whole
 * trees copied up), a directory's node unlinked (rmdir), a directory copied up, a node's layers
 * found anew, the first redirect seen, and a directory's node freed (its address may come back for
 * another). These are rare next to the requests that use the entries. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define OVL_DIRCACHE_SETS 64
#define OVL_DIRCACHE_WAYS 4

struct ovl_dircache_entry {
	const struct ovl_node *node; /* NULL: free */
	uint64_t gen;
	uint64_t used; /* the tick of its last use */
	int layer;
	int fd;
	int refs; /* borrowers: an entry in use is neither evicted nor closed */
};

struct ovl_dircache {
	pthread_mutex_t lock; /* the entries and the tick */
	_Atomic uint64_t gen;
	uint64_t tick;
	struct ovl_dircache_entry e[OVL_DIRCACHE_SETS * OVL_DIRCACHE_WAYS];
};

int ovl_dircache_init(struct ovl_fs *fs)
{
	struct ovl_dircache *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	atomic_init(&c->gen, 1);
	for (size_t i = 0; i < sizeof(c->e) / sizeof(c->e[0]); i++)
		c->e[i].fd = -1;
	fs->dircache = c;
	return 0;
}

void ovl_dircache_close(struct ovl_fs *fs)
{
	struct ovl_dircache *c = fs->dircache;

	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < sizeof(c->e) / sizeof(c->e[0]); i++) {
		if (c->e[i].fd >= 0 && c->e[i].refs == 0) {
			close(c->e[i].fd);
			c->e[i].fd = -1;
			c->e[i].node = NULL;
		}
	}
	atomic_fetch_add(&c->gen, 1);
	pthread_mutex_unlock(&c->lock);
}

void ovl_dircache_free(struct ovl_fs *fs)
{
	if (!fs->dircache)
		return;
	ovl_dircache_close(fs);
	pthread_mutex_destroy(&fs->dircache->lock);
	free(fs->dircache);
	fs->dircache = NULL;
}

void ovl_dircache_invalidate(struct ovl_fs *fs)
{
	if (fs->dircache)
		atomic_fetch_add(&fs->dircache->gen, 1);
}

void ovl_redirects_seen(struct ovl_fs *fs)
{
	/* Paths go by the nodes' redirected layers from now on: entries opened by plain
	 * paths go. */
	if (!atomic_load(&fs->redirects_seen) && !atomic_exchange(&fs->redirects_seen, true))
		ovl_dircache_invalidate(fs);
}

uint64_t ovl_dircache_gen(struct ovl_fs *fs)
{
	return atomic_load(&fs->dircache->gen);
}

static struct ovl_dircache_entry *set_of(struct ovl_dircache *c, const struct ovl_node *node,
					 int layer)
{
	uint64_t h = ((uint64_t)(uintptr_t)node * 0x9E3779B97F4A7C15ull) ^
		     ((uint64_t)layer * 0xC2B2AE3D27D4EB4Full);
	return &c->e[((h >> 32) % OVL_DIRCACHE_SETS) * OVL_DIRCACHE_WAYS];
}

int ovl_dircache_get(struct ovl_fs *fs, const struct ovl_node *node, int layer,
		     struct ovl_dircache_entry **out)
{
	struct ovl_dircache *c = fs->dircache;
	int fd = -1;

	*out = NULL;
	if (!c || !atomic_load(&node->ino))
		return -1;
	uint64_t gen = atomic_load(&c->gen);
	struct ovl_dircache_entry *set = set_of(c, node, layer);
	pthread_mutex_lock(&c->lock);
	for (int i = 0; i < OVL_DIRCACHE_WAYS; i++) {
		struct ovl_dircache_entry *e = &set[i];
		if (e->node == node && e->layer == layer && e->gen == gen) {
			e->refs++;
			e->used = ++c->tick;
			fd = e->fd;
			*out = e;
			break;
		}
	}
	pthread_mutex_unlock(&c->lock);
	return fd;
}

void ovl_dircache_put(struct ovl_fs *fs, struct ovl_dircache_entry *e)
{
	if (!e)
		return;
	pthread_mutex_lock(&fs->dircache->lock);
	e->refs--;
	pthread_mutex_unlock(&fs->dircache->lock);
}

/* Which entry goes first: a free one, then a stale one, then a valid one. */
static int rank(const struct ovl_dircache_entry *e, uint64_t now)
{
	return !e->node ? 0 : e->gen != now ? 1 : 2;
}

bool ovl_dircache_add(struct ovl_fs *fs, const struct ovl_node *node, int layer, uint64_t gen,
		      int fd, struct ovl_dircache_entry **out)
{
	struct ovl_dircache *c = fs->dircache;
	struct ovl_dircache_entry *victim = NULL;
	int old = -1;

	*out = NULL;
	if (!c || !atomic_load(&node->ino))
		return false;
	struct ovl_dircache_entry *set = set_of(c, node, layer);
	pthread_mutex_lock(&c->lock);
	uint64_t now = atomic_load(&c->gen);
	for (int i = 0; i < OVL_DIRCACHE_WAYS; i++) {
		struct ovl_dircache_entry *e = &set[i];
		if (e->refs)
			continue;
		if (e->node == node && e->layer == layer) { /* an older copy: replaced */
			victim = e;
			break;
		}
		if (!victim || rank(e, now) < rank(victim, now) ||
		    (rank(e, now) == rank(victim, now) && e->used < victim->used))
			victim = e;
	}
	if (victim) {
		old = victim->fd;
		victim->node = node;
		victim->layer = layer;
		victim->gen = gen;
		victim->fd = fd;
		victim->refs = 1;
		victim->used = ++c->tick;
		*out = victim;
	}
	pthread_mutex_unlock(&c->lock);
	if (old >= 0)
		close(old);
	return victim != NULL;
}
