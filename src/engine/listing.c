/* Directory reads without an open handle. The kernel's zero-message opendir (the daemon
 * answers OPENDIR with ENOSYS once) saves two round trips per directory, and READDIR then
 * comes with no handle: the merged listing is kept on the node between requests instead.
 *
 * An offset names its listing: a hash of the listing's names (its gen) above the position
 * in it. Offsets stay below 2^31 (11 bits of gen over 20 of position) so that 32-bit
 * programs can hold them, except in directories of a million entries or more (31 bits of
 * gen over 32 of position). A read from offset 0 merges afresh; a later read continues in
 * the listing its offset names, so two readers of one directory each keep their snapshot
 * across one change of it. If that listing is gone (read to its end, or replaced twice), a
 * fresh merge serves the position, which is the same listing when the directory did not
 * change in between (layer listings come in a stable order). The last entry's offset is a
 * mark for the end: the request after it (the kernel always makes one) lets go of the
 * listing, and needs none. Not before: the kernel may have passed on only part of a reply
 * that reached the end, and read the rest from its offset after a change. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct ovl_listing {
	atomic_int refs;
	uint32_t gen; /* hash of the names and types, 1 .. GEN_MAX(big) */
	bool big;     /* the wide offset layout */
	size_t count;
	struct ovl_dirent *ents;
	struct ovl_listing *older; /* the listing this one replaced, while a reader may use it */
};

#define SMALL_POS_BITS 20
#define GEN_MAX(big) ((big) ? 0x7fffffffu : 2047u)
#define END_POS(big) ((big) ? 0xffffffffu : (1u << SMALL_POS_BITS) - 1)

static bool needs_big(size_t count)
{
	return count + 2 >= END_POS(false);
}

static uint32_t listing_hash(const struct ovl_dirent *ents, size_t count)
{
	uint64_t h = OVL_HASH_SEED;

	for (size_t i = 0; i < count; i++) {
		/* The terminating NUL separates the name from its type. */
		h = ovl_hash_fnv(h, ents[i].name, strlen(ents[i].name) + 1);
		h = ovl_hash_fnv(h, &ents[i].type, 1);
	}
	h = ovl_hash_u64(h);
	return (uint32_t)(h ^ (h >> 32)) % GEN_MAX(needs_big(count)) + 1;
}

static void decode(off_t off, bool *big, uint32_t *gen, size_t *pos)
{
	uint64_t o = (uint64_t)off;

	*big = o >= (1ull << 31);
	*gen = (uint32_t)(*big ? o >> 32 : o >> SMALL_POS_BITS);
	*pos = (size_t)(*big ? o & 0xffffffffu : o & ((1u << SMALL_POS_BITS) - 1));
}

static off_t encode(const struct ovl_listing *l, size_t pos)
{
	if (l->big)
		return (off_t)((uint64_t)l->gen << 32 | pos);
	return (off_t)((uint64_t)l->gen << SMALL_POS_BITS | pos);
}

void ovl_listing_put(struct ovl_listing *l)
{
	while (l && atomic_fetch_sub(&l->refs, 1) == 1) {
		struct ovl_listing *older = l->older;
		ovl_dirents_free(l->ents, l->count);
		free(l);
		l = older;
	}
}

/* The offset that resumes at position next of l; the end has its mark. */
static off_t listing_off(size_t next, const void *arg)
{
	const struct ovl_listing *l = arg;

	return encode(l, next == l->count + 2 ? END_POS(l->big) : next);
}

/* The node's listing with this gen, referenced, or NULL. */
static struct ovl_listing *find_listing(struct ovl_fs *fs, struct ovl_node *node, bool big,
					uint32_t gen)
{
	struct ovl_listing *found = NULL;

	pthread_mutex_lock(&fs->listing_lock);
	for (struct ovl_listing *l = node->listing; l && !found; l = l->older)
		if (l->big == big && l->gen == gen)
			found = l;
	if (found)
		atomic_fetch_add(&found->refs, 1);
	pthread_mutex_unlock(&fs->listing_lock);
	return found;
}

/* Merges the directory and makes the result the node's newest listing (or takes the one
 * it already has with the same names). Returns it referenced. */
static int merge_listing(struct ovl_fs *fs, struct ovl_node *node, struct ovl_listing **out)
{
	struct ovl_listing *l = calloc(1, sizeof(*l));
	int err;

	if (!l)
		return -ENOMEM;
	pthread_rwlock_rdlock(&fs->rename_lock);
	err = ovl_merge_dir(fs, node, &l->ents, &l->count, NULL);
	pthread_rwlock_unlock(&fs->rename_lock);
	if (err) {
		free(l);
		return err;
	}
	l->big = needs_big(l->count);
	l->gen = listing_hash(l->ents, l->count);
	atomic_init(&l->refs, 2); /* the node's, the caller's */

	pthread_mutex_lock(&fs->listing_lock);
	struct ovl_listing *cur = node->listing;
	if (cur && cur->big == l->big && cur->gen == l->gen) {
		atomic_fetch_add(&cur->refs, 1);
		pthread_mutex_unlock(&fs->listing_lock);
		ovl_dirents_free(l->ents, l->count);
		free(l);
		*out = cur;
		return 0;
	}
	struct ovl_listing *dropped = NULL;
	if (cur) { /* keep one older listing: a reader may be half-way through it */
		dropped = cur->older;
		cur->older = NULL;
	}
	l->older = cur; /* the node's reference on cur moves to l */
	node->listing = l;
	pthread_mutex_unlock(&fs->listing_lock);
	ovl_listing_put(dropped);
	*out = l;
	return 0;
}

/* A reader got to the end: the node need not keep the listing any more. */
static void retire_listing(struct ovl_fs *fs, struct ovl_node *node, struct ovl_listing *l)
{
	bool held = false;

	pthread_mutex_lock(&fs->listing_lock);
	for (struct ovl_listing **p = &node->listing; *p; p = &(*p)->older)
		if (*p == l) {
			*p = l->older;
			l->older = NULL;
			held = true;
			break;
		}
	pthread_mutex_unlock(&fs->listing_lock);
	if (held)
		ovl_listing_put(l);
}

int ovl_readdir_node(struct ovl_fs *fs, struct ovl_node *node, off_t off, ovl_dirent_fn fn,
		     void *ctx)
{
	struct ovl_listing *l = NULL;
	uint32_t gen;
	size_t pos;
	bool big;
	int err = 0;

	if (atomic_load(&node->type) != S_IFDIR)
		return -ENOTDIR;
	if (off < 0)
		return -EINVAL;
	decode(off, &big, &gen, &pos);
	if (off != 0)
		l = find_listing(fs, node, big, gen);
	bool end_mark = off != 0 && pos == END_POS(big); /* nothing to merge for */
	if (!l && !end_mark && (err = merge_listing(fs, node, &l)))
		return err;
	if (!l)
		return 0;
	if (end_mark || pos >= l->count + 2)
		retire_listing(fs, node, l);
	else
		ovl_emit_dirents(fs, node, l->ents, l->count, pos, listing_off, l, fn, ctx);
	ovl_listing_put(l);
	return 0;
}
