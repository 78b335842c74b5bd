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
	struct ovl_alias *next;
};

static size_t slot(uint64_t ino, size_t size)
{
	ino *= 0x9E3779B97F4A7C15ULL;
	return (size_t)(ino ^ (ino >> 32)) & (size - 1);
}

static void grow(struct ovl_fs *fs)
{
	size_t nsize = fs->aliases_size ? fs->aliases_size * 2 : 64;
	struct ovl_alias **nt = calloc(nsize, sizeof(*nt));

	if (!nt)
		return; /* longer chains, still correct */
	for (size_t i = 0; i < fs->aliases_size; i++) {
		struct ovl_alias *a, *next;
		for (a = fs->aliases[i]; a; a = next) {
			next = a->next;
			a->next = nt[slot(a->ino, nsize)];
			nt[slot(a->ino, nsize)] = a;
		}
	}
	free(fs->aliases);
	fs->aliases = nt;
	fs->aliases_size = nsize;
}

/* Caller holds table_lock. Without memory the node stays unindexed: its aliases then keep
 * their caches until they expire, as before this index existed. */
void ovl_alias_add_table_locked(struct ovl_fs *fs, struct ovl_node *node)
{
	struct ovl_alias *a;

	if (atomic_load(&node->aliased))
		return;
	if (fs->aliases_count + 1 > fs->aliases_size)
		grow(fs);
	if (!fs->aliases_size || !(a = malloc(sizeof(*a))))
		return;
	a->ino = node->ino;
	a->node = node;
	a->next = fs->aliases[slot(a->ino, fs->aliases_size)];
	fs->aliases[slot(a->ino, fs->aliases_size)] = a;
	fs->aliases_count++;
	atomic_store(&node->aliased, true);
}

/* Caller holds table_lock (or is the only thread left). */
void ovl_alias_del_table_locked(struct ovl_fs *fs, struct ovl_node *node)
{
	if (!atomic_load(&node->aliased) || !fs->aliases_size)
		return;
	for (struct ovl_alias **pp = &fs->aliases[slot(node->ino, fs->aliases_size)]; *pp;
	     pp = &(*pp)->next) {
		if ((*pp)->node == node) {
			struct ovl_alias *a = *pp;
			*pp = a->next;
			free(a);
			fs->aliases_count--;
			break;
		}
	}
	atomic_store(&node->aliased, false);
}

/* Caller holds table_lock. */
static bool indexed_table_locked(struct ovl_fs *fs, uint64_t ino)
{
	if (!fs->aliases_count)
		return false;
	for (struct ovl_alias *a = fs->aliases[slot(ino, fs->aliases_size)]; a; a = a->next)
		if (a->ino == ino)
			return true;
	return false;
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
	if (fs->aliases_size)
		for (struct ovl_alias *a = fs->aliases[slot(node->ino, fs->aliases_size)];
		     a && n < max; a = a->next)
			/* Only nodes the kernel holds have caches to drop. */
			if (a->ino == node->ino && a->node != node && a->node->nlookup > 0)
				out[n++] = a->node;
	pthread_mutex_unlock(&fs->table_lock);
	return n;
}

void ovl_alias_free_all(struct ovl_fs *fs)
{
	for (size_t i = 0; i < fs->aliases_size; i++) {
		struct ovl_alias *a, *next;
		for (a = fs->aliases[i]; a; a = next) {
			next = a->next;
			free(a);
		}
	}
	free(fs->aliases);
	fs->aliases = NULL;
	fs->aliases_size = 0;
	fs->aliases_count = 0;
}
