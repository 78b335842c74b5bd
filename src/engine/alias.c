/* Hard links: each name of an upper file is a node of its own (the node table is keyed by
 * name), so the kernel sees one inode per name, each with its own caches. This index finds
 * the other names' nodes of an object, so that a change made through one name can drop the
 * attributes the kernel cached for the others (their files use direct I/O, so no page cache
 * goes stale). Only upper files seen with several links are indexed: everything else pays
 * one flag test. */
#include "internal.h"

#include <stdlib.h>

struct ovl_alias {
	uint64_t ino;
	struct ovl_node *node;
	struct ovl_hlink link;
};

static uint64_t alias_hash(const struct ovl_hlink *link)
{
	return ovl_hash_u64(ovl_entry_of(link, struct ovl_alias, link)->ino);
}

static bool alias_of_node(const struct ovl_hlink *link, const void *node)
{
	return ovl_entry_of(link, struct ovl_alias, link)->node == node;
}

static bool alias_of_ino(const struct ovl_hlink *link, const void *ino)
{
	return ovl_entry_of(link, struct ovl_alias, link)->ino == *(const uint64_t *)ino;
}

/* Caller holds table_lock. Without memory the node stays unindexed: its aliases then keep
 * their caches until they expire, as before this index existed. */
void ovl_alias_add_table_locked(struct ovl_fs *fs, struct ovl_node *node)
{
	struct ovl_alias *a;

	if (atomic_load(&node->aliased))
		return;
	if (!fs->aliases.hash) /* the index starts empty: buckets come with the first */
		fs->aliases.hash = alias_hash;
	if (!(a = malloc(sizeof(*a))))
		return;
	a->ino = node->ino;
	a->node = node;
	if (ovl_htab_insert(&fs->aliases, &a->link) < 0) {
		free(a);
		return;
	}
	atomic_store(&fs->aliases_count, fs->aliases.count);
	atomic_store(&node->aliased, true);
}

/* Caller holds table_lock (or is the only thread left). */
void ovl_alias_del_table_locked(struct ovl_fs *fs, struct ovl_node *node)
{
	if (!atomic_load(&node->aliased))
		return;
	struct ovl_hlink *link =
	    ovl_htab_find(&fs->aliases, ovl_hash_u64(node->ino), alias_of_node, node);
	if (link) {
		ovl_htab_remove(&fs->aliases, link);
		free(ovl_entry_of(link, struct ovl_alias, link));
		atomic_store(&fs->aliases_count, fs->aliases.count);
	}
	atomic_store(&node->aliased, false);
}

/* Caller holds table_lock. */
static bool indexed_table_locked(struct ovl_fs *fs, uint64_t ino)
{
	if (!fs->aliases_count)
		return false;
	return ovl_htab_find(&fs->aliases, ovl_hash_u64(ino), alias_of_ino, &ino) != NULL;
}

/* Called with the attributes just read for node: indexes an upper file with several links,
 * or with one left while another name of it, removed but still open, is indexed (a change
 * through that name's fd must reach this one's cache too). */
void ovl_alias_note(struct ovl_fs *fs, struct ovl_node *node, const struct stat *st, int top)
{
	if (S_ISDIR(st->st_mode) || !fs->has_upper || top != 0 || atomic_load(&node->aliased) ||
	    (st->st_nlink < 2 && !atomic_load(&fs->aliases_count)))
		return;
	pthread_mutex_lock(&fs->table_lock);
	if (st->st_nlink >= 2 || indexed_table_locked(fs, node->ino))
		ovl_alias_add_table_locked(fs, node);
	pthread_mutex_unlock(&fs->table_lock);
}

bool ovl_node_hard_linked(struct ovl_node *node)
{
	return atomic_load(&node->aliased);
}

size_t ovl_node_aliases(struct ovl_fs *fs, struct ovl_node *node, struct ovl_node **out, size_t max)
{
	size_t n = 0;

	if (!atomic_load(&node->aliased))
		return 0;
	pthread_mutex_lock(&fs->table_lock);
	uint64_t ino = node->ino;
	for (struct ovl_hlink *link =
		 ovl_htab_find(&fs->aliases, ovl_hash_u64(ino), alias_of_ino, &ino);
	     link && n < max; link = ovl_htab_find_next(link, alias_of_ino, &ino)) {
		struct ovl_alias *a = ovl_entry_of(link, struct ovl_alias, link);
		/* Only nodes the kernel holds have caches to drop. */
		if (a->node != node && a->node->nlookup > 0)
			out[n++] = a->node;
	}
	pthread_mutex_unlock(&fs->table_lock);
	return n;
}

static void free_alias(struct ovl_hlink *link, void *arg)
{
	(void)arg;
	free(ovl_entry_of(link, struct ovl_alias, link));
}

void ovl_alias_free_all(struct ovl_fs *fs)
{
	ovl_htab_free(&fs->aliases, free_alias, NULL);
	fs->aliases_count = 0;
}
