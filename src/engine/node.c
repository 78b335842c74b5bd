/* The node table: one node per object the kernel knows, keyed by (parent, name) of one of
 * its names (a hard-linked file's other names: alias.c), with lookup counts and forget. Nodes hold
 * no file descriptors, so a huge tree costs memory only. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Memory per cached node (README "Small nodes"): this keeps it from growing unnoticed. */
_Static_assert(sizeof(void *) != 8 || sizeof(struct ovl_node) <= 152, "ovl_node grew");

/* The node table: the shared hash table keyed by (parent, name). */
static uint64_t hash_name(const struct ovl_node *parent, const char *name)
{
	return ovl_hash_str(ovl_hash_u64((uint64_t)(uintptr_t)parent), name);
}

static uint64_t node_hash(const struct ovl_hlink *link)
{
	const struct ovl_node *n = ovl_entry_of(link, struct ovl_node, hlink);
	return hash_name(n->parent, n->name);
}

struct child_key {
	const struct ovl_node *parent;
	const char *name;
};

static bool node_is(const struct ovl_hlink *link, const void *key)
{
	const struct ovl_node *n = ovl_entry_of(link, struct ovl_node, hlink);
	const struct child_key *k = key;
	return n->parent == k->parent && strcmp(n->name, k->name) == 0;
}

int ovl_node_init_table(struct ovl_fs *fs)
{
	return ovl_htab_init(&fs->table, node_hash, 1024);
}

static void table_insert(struct ovl_fs *fs, struct ovl_node *node)
{
	/* Cannot fail: the table has its buckets from ovl_node_init_table on. */
	(void)ovl_htab_insert(&fs->table, &node->hlink);
	node->in_table = true;
	node->parent->refs++;
}

/* Returns the parent, whose reference the caller must drop. */
static struct ovl_node *table_remove(struct ovl_fs *fs, struct ovl_node *node)
{
	ovl_htab_remove(&fs->table, &node->hlink);
	node->in_table = false;
	return node->parent;
}

/* Caller holds table_lock. */
struct ovl_node *ovl_node_get_child(struct ovl_fs *fs, struct ovl_node *parent, const char *name)
{
	struct child_key key = {parent, name};
	struct ovl_hlink *link = ovl_htab_find(&fs->table, hash_name(parent, name), node_is, &key);
	return link ? ovl_entry_of(link, struct ovl_node, hlink) : NULL;
}

static void node_free(struct ovl_fs *fs, struct ovl_node *node)
{
	ovl_alias_del_table_locked(fs, node);
	ovl_metacopy_set(fs, node, -1, NULL);
	ovl_orphan_free(node->orphan);
	ovl_listing_put(node->listing);
	pthread_spin_destroy(&node->lock);
	pthread_mutex_destroy(&node->op_lock);
	ovl_dirlayers_free(node->dirlayers, node->ndirlayers);
	free(node->name);
	free(node);
}

void ovl_dirlayers_free(struct ovl_dirlayer *dl, int n)
{
	for (int i = 0; dl && i < n; i++)
		free(dl[i].path);
	free(dl);
}

/* Caller holds table_lock. A new node with no references, inserted under parent (NULL for
 * the root, which is not in the table). */
struct ovl_node *ovl_node_new(struct ovl_fs *fs, struct ovl_node *parent, const char *name)
{
	struct ovl_node *node = calloc(1, sizeof(*node));

	if (!node)
		return NULL;
	node->name = strdup(name);
	if (!node->name) {
		free(node);
		return NULL;
	}
	pthread_spin_init(&node->lock, PTHREAD_PROCESS_PRIVATE);
	pthread_mutex_init(&node->op_lock, NULL);
	node->kernel_mtime.tv_nsec = UTIME_OMIT;
	node->parent = parent;
	node->top = -1;
	if (parent)
		table_insert(fs, node);
	return node;
}

/* Takes node off fs->orphans. Caller holds table_lock. */
static void orphans_remove(struct ovl_fs *fs, struct ovl_node *node)
{
	struct ovl_orphan *o = node->orphan;

	if (o->prev)
		o->prev->orphan->next = o->next;
	else
		fs->orphans = o->next;
	if (o->next)
		o->next->orphan->prev = o->prev;
}

void ovl_node_drop_refs_table_locked(struct ovl_fs *fs, struct ovl_node *node, uint64_t refs)
{
	while (node) {
		struct ovl_node *parent = node->parent;

		node->refs -= refs;
		if (node->refs > 0 || node == fs->root)
			return;
		if (node->in_table)
			table_remove(fs, node);
		if (node->orphan)
			orphans_remove(fs, node);
		node_free(fs, node);
		node = parent;
		refs = 1;
	}
}

size_t ovl_node_count(struct ovl_fs *fs)
{
	pthread_mutex_lock(&fs->table_lock);
	size_t n = fs->table.count;
	pthread_mutex_unlock(&fs->table_lock);
	return n;
}

void ovl_node_ref(struct ovl_fs *fs, struct ovl_node *node, uint64_t nlookup, uint64_t refs)
{
	pthread_mutex_lock(&fs->table_lock);
	if (nlookup && node->nlookup == 0)
		refs++;
	node->nlookup += nlookup;
	node->refs += refs;
	pthread_mutex_unlock(&fs->table_lock);
}

void ovl_node_unref(struct ovl_fs *fs, struct ovl_node *node, uint64_t nlookup, uint64_t refs)
{
	pthread_mutex_lock(&fs->table_lock);
	if (nlookup) {
		if (nlookup > node->nlookup)
			nlookup = node->nlookup;
		node->nlookup -= nlookup;
		if (nlookup && node->nlookup == 0)
			refs++;
	}
	if (refs)
		ovl_node_drop_refs_table_locked(fs, node, refs);
	pthread_mutex_unlock(&fs->table_lock);
}

/* The name is gone: the node lives on only while the kernel or an open file holds it. It
 * keeps its parent (and the reference on it) so that a concurrent walk of its path stays
 * safe; the unlinked mark makes every path use of it fail. */
void ovl_node_detach(struct ovl_fs *fs, struct ovl_node *node, struct ovl_orphan *orphan,
		     const struct stat *st)
{
	pthread_mutex_lock(&fs->table_lock);
	if (node->in_table)
		table_remove(fs, node);
	struct ovl_orphan *o = node->orphan;
	if (!o) {
		o = orphan;
		orphan = NULL;
		o->prev = NULL;
		o->next = fs->orphans;
		if (fs->orphans)
			fs->orphans->orphan->prev = node;
		fs->orphans = node;
		node->orphan = o;
	} else if (o->fd < 0) {
		o->fd = orphan->fd;
		orphan->fd = -1;
	}
	o->last_st = *st;
	o->last_st.st_ino = node->ino;
	/* Without a kept fd the object may go and its number come back for another. */
	if (o->fd < 0)
		ovl_alias_del_table_locked(fs, node);
	node->unlinked = true; /* after the record, which readers of the mark then see */
	pthread_mutex_unlock(&fs->table_lock);
	ovl_orphan_free(orphan);
}

int ovl_node_relink(struct ovl_fs *fs, struct ovl_node *node, struct ovl_node *parent,
		    const char *name)
{
	char *copy = strdup(name);

	if (!copy)
		return -ENOMEM;
	pthread_mutex_lock(&fs->table_lock);
	if (ovl_node_get_child(fs, parent, name)) {
		pthread_mutex_unlock(&fs->table_lock);
		free(copy);
		return -EEXIST;
	}
	struct ovl_orphan *o = node->orphan;
	if (o)
		orphans_remove(fs, node);
	node->orphan = NULL;
	struct ovl_node *old = node->parent;
	free(node->name);
	node->name = copy;
	node->parent = parent;
	table_insert(fs, node);
	node->unlinked = false;
	if (node->nlookup++ == 0) /* the kernel gets it once more, in the link reply */
		node->refs++;
	ovl_node_drop_refs_table_locked(fs, old,
					1); /* the reference the node held on its old parent */
	pthread_mutex_unlock(&fs->table_lock);
	ovl_orphan_free(o);
	return 0;
}

void ovl_node_move(struct ovl_fs *fs, struct ovl_node *node, struct ovl_node *newparent,
		   const char *newname)
{
	(void)ovl_node_move_to(fs, node, newparent, newname);
}

int ovl_node_move_to(struct ovl_fs *fs, struct ovl_node *node, struct ovl_node *newparent,
		     const char *newname)
{
	char *name = strdup(newname);
	struct ovl_node *old;

	pthread_mutex_lock(&fs->table_lock);
	struct ovl_node *there = name ? ovl_node_get_child(fs, newparent, newname) : NULL;
	if (!name || !node->in_table || (there && there != node)) {
		free(name);
		pthread_mutex_unlock(&fs->table_lock);
		return !name ? -ENOMEM : there ? -EEXIST : -ENOENT;
	}
	node->refs++;
	old = table_remove(fs, node);
	free(node->name);
	node->name = name;
	node->parent = newparent;
	table_insert(fs, node);
	ovl_node_drop_refs_table_locked(fs, old, 1);
	ovl_node_drop_refs_table_locked(fs, node, 1);
	pthread_mutex_unlock(&fs->table_lock);
	return 0;
}

static void free_table_node(struct ovl_hlink *link, void *fs)
{
	node_free(fs, ovl_entry_of(link, struct ovl_node, hlink));
}

void ovl_node_free_all(struct ovl_fs *fs)
{
	ovl_alias_free_all(fs);
	ovl_htab_free(&fs->table, free_table_node, fs);
	while (fs->orphans) {
		struct ovl_node *next = fs->orphans->orphan->next;
		node_free(fs, fs->orphans);
		fs->orphans = next;
	}
	if (fs->root)
		node_free(fs, fs->root);
	fs->root = NULL;
}

mode_t ovl_node_type(struct ovl_node *node)
{
	return node->type;
}

bool ovl_node_is_unlinked(struct ovl_node *node)
{
	return atomic_load(&node->unlinked);
}

int ovl_node_top(struct ovl_node *node)
{
	pthread_spin_lock(&node->lock);
	int top = node->top;
	pthread_spin_unlock(&node->lock);
	return top;
}

bool ovl_node_is_upper(struct ovl_fs *fs, struct ovl_node *node)
{
	return fs->has_upper && ovl_node_top(node) == 0;
}

int ovl_node_dirlayers(struct ovl_node *node, struct ovl_dirlayer **out)
{
	/* No malloc under the spinlock: size, allocate, then copy if the size still holds. */
	for (;;) {
		pthread_spin_lock(&node->lock);
		int n = node->ndirlayers;
		pthread_spin_unlock(&node->lock);
		*out = malloc(sizeof(**out) * (size_t)(n ? n : 1));
		if (!*out)
			return -ENOMEM;
		pthread_spin_lock(&node->lock);
		bool same = node->ndirlayers == n;
		if (same)
			memcpy(*out, node->dirlayers, sizeof(**out) * (size_t)n);
		pthread_spin_unlock(&node->lock);
		for (int i = 0; same && i < n; i++)
			(*out)[i].path =
			    NULL; /* the node's to free: read it with the node's lock */
		if (same)
			return n;
		free(*out);
	}
}

/* Opens (O_PATH) the object of the child `name` if it has open files; -1 otherwise. Called
 * before the name is removed, under the parent's op lock or the rename lock. Directories
 * are opened without telling us (op_opendir), so one the kernel knows may be open. */
int ovl_keep_orphan(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		    struct ovl_orphan **out)
{
	struct ovl_orphan *orphan = calloc(1, sizeof(*orphan));
	if (!orphan)
		return -ENOMEM;
	orphan->fd = -1;
	*out = orphan;
	pthread_mutex_lock(&fs->table_lock);
	struct ovl_node *child = ovl_node_get_child(fs, parent, name);
	/* And a hard-linked file's: its node stands for the names that remain. */
	bool open = child && (atomic_load(&child->nopen) > 0 || atomic_load(&child->aliased) ||
			      (atomic_load(&child->type) == S_IFDIR && child->nlookup > 0));
	if (open)
		child->refs++; /* a concurrent forget must not free it under us */
	pthread_mutex_unlock(&fs->table_lock);
	if (!open)
		return 0;
	int fd = ovl_open_in_layer(fs, child, ovl_node_top(child), O_PATH);
	ovl_node_unref(fs, child, 0, 1);
	orphan->fd = fd < 0 ? -1 : fd; /* without it, open files see the last attributes */
	return 0;
}

void ovl_orphan_free(struct ovl_orphan *orphan)
{
	if (!orphan)
		return;
	if (orphan->fd >= 0)
		close(orphan->fd);
	free(orphan);
}

int ovl_orphan_fd(struct ovl_node *node)
{
	return node->orphan ? node->orphan->fd : -1;
}

/* An fd for the node's object in layer: through the path, or for an unlinked node, a
 * duplicate of the object it kept. -errno on failure. */
int ovl_node_object_fd(struct ovl_fs *fs, struct ovl_node *node, int layer)
{
	if (node->unlinked) {
		if (ovl_orphan_fd(node) < 0)
			return -ENOENT;
		int fd = fcntl(ovl_orphan_fd(node), F_DUPFD_CLOEXEC, 0);
		return fd < 0 ? -errno : fd;
	}
	return ovl_open_in_layer(fs, node, layer, O_PATH);
}
