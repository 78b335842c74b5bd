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
static uint64_t node_hash(const struct ovl_hlink *link)
{
	const struct ovl_node *n = ovl_entry_of(link, struct ovl_node, hlink);
	return ovl_hash_child(n->parent, n->name);
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
	struct ovl_hlink *link =
	    ovl_htab_find(&fs->table, ovl_hash_child(parent, name), node_is, &key);
	return link ? ovl_entry_of(link, struct ovl_node, hlink) : NULL;
}

static void node_free(struct ovl_fs *fs, struct ovl_node *node)
{
	if (node->type == S_IFDIR) /* its address may come back for another directory */
		ovl_dircache_invalidate(fs);
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
	if (atomic_load(&node->type) == S_IFDIR) /* its cached fds name a removed directory */
		ovl_dircache_invalidate(fs);
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
	ovl_dircache_invalidate(fs); /* paths below a moved directory change */
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

/* Lookup results into the table. */
/* Whether a directory's layers differ from what a find found: its paths may name other
 * objects now. Preconditions: the node's spinlock. */
static bool dirlayers_changed(const struct ovl_node *node, const struct ovl_found *f)
{
	if (node->type != S_IFDIR)
		return false; /* nothing was cached for it (dircache.c) */
	if ((f->st.st_mode & S_IFMT) != S_IFDIR || f->ndirlayers != node->ndirlayers)
		return true;
	for (int i = 0; i < f->ndirlayers; i++) {
		const struct ovl_dirlayer *a = &node->dirlayers[i], *b = &f->dirlayers[i];
		if (a->layer != b->layer || !a->path != !b->path ||
		    (a->path && strcmp(a->path, b->path)))
			return true;
	}
	return false;
}

/* Sets what the node is from a find result (which it takes over).
 * Preconditions: fs->table_lock held; the node's spinlock not held. */
static void node_set_found(struct ovl_fs *fs, struct ovl_node *node, struct ovl_found *f)
{
	pthread_spin_lock(&node->lock);
	if (dirlayers_changed(node, f))
		ovl_dircache_invalidate(fs);
	atomic_store(&node->no_xattrs, f->no_xattrs); /* what is found may be another object */
	atomic_store(&node->lower_unprotected, false);
	node->top = f->top;
	node->type = f->st.st_mode & S_IFMT;
	struct ovl_dirlayer *old = node->dirlayers;
	int nold = node->ndirlayers;
	node->dirlayers = f->dirlayers;
	node->ndirlayers = f->ndirlayers;
	f->dirlayers = NULL;
	f->ndirlayers = 0;
	pthread_spin_unlock(&node->lock);
	ovl_dirlayers_free(old, nold);
}

/* Whether what was found may be one of several names of one node: an upper file (not a
 * directory) found by name, with several links, or with one left while hard-linked objects
 * are known (the node of its removed name may still be held).
 * Preconditions: fs->table_lock held. */
static bool may_be_alias_table_locked(struct ovl_fs *fs, const struct ovl_found *f, unsigned how)
{
	if ((how & OVL_INSTALL_FRESH) || S_ISDIR(f->st.st_mode))
		return false;
	/* With the index, lower hard links are one file too (by the lower object), and the
	 * index entry's object is its upper names' (the kernel's inodes hashed by origin). */
	if (fs->index_layer >= 0 && (f->top == fs->index_layer || f->st.st_nlink > 1))
		return true;
	return fs->layers[f->top].is_upper && (f->st.st_nlink > 1 || fs->objects.count);
}

/* parent/name is another name of node's object: node gets the lookup, and the name too if
 * node's own is gone (the rename lock is written then).
 * Preconditions: fs->table_lock held, released here; the rename lock. */
static int install_alias(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
			 struct ovl_found *f, struct ovl_node *node, struct stat *st)
{
	int err = 0;

	if (node->unlinked) {
		ovl_alias_drop_name_table_locked(fs, parent, name);
		node->refs++;
		pthread_mutex_unlock(&fs->table_lock);
		err = ovl_node_relink(fs, node, parent, name); /* takes the lookup */
		ovl_node_unref(fs, node, 0, 1);
	} else {
		if (node->nlookup++ == 0)
			node->refs++;
		pthread_mutex_unlock(&fs->table_lock);
	}
	*st = f->st;
	ovl_found_free(f);
	if (!err)
		ovl_fill_stat(fs, node, st);
	return err;
}

void ovl_node_refound(struct ovl_fs *fs, struct ovl_node *node, struct ovl_found *f)
{
	pthread_mutex_lock(&fs->table_lock);
	atomic_store(&node->indexed, f->indexed);
	node_set_found(fs, node, f);
	pthread_mutex_unlock(&fs->table_lock);
}

/* Records what was found at parent/name in the node table and takes a lookup reference.
 * A fresh object (just created) always gets its own inode number. */
int ovl_node_install(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		     struct ovl_found *f, unsigned how, struct ovl_node **out, struct stat *st)
{
	bool fresh = how & OVL_INSTALL_FRESH;
	uint64_t ino = f->ino;
	struct ovl_node *node;

	/* Readdir finds an upper object's number through the origin map too. */
	if (ino && (fs->layers[f->top].is_upper || f->top == fs->index_layer))
		ovl_record_origin(fs, f->st.st_dev, f->st.st_ino, ino);
	else
		ino = ovl_map_ino(fs, f->top, f->st.st_dev, f->st.st_ino);

	pthread_mutex_lock(&fs->table_lock);
	node = ovl_node_get_child(fs, parent, name);
	bool alias = may_be_alias_table_locked(fs, f, how);
	if (alias) {
		struct ovl_node *one = ovl_alias_resolve_table_locked(
		    fs, parent, name, node, &f->st, how & OVL_INSTALL_EXCLUSIVE,
		    how & OVL_INSTALL_MAY_RETRY);
		if (one == OVL_ALIAS_RETRY) {
			pthread_mutex_unlock(&fs->table_lock);
			ovl_found_free(f);
			return -EAGAIN;
		}
		if (one && one != node) {
			*out = one;
			return install_alias(fs, parent, name, f, one, st);
		}
	}
	if (!node) {
		node = ovl_node_new(fs, parent, name);
		if (!node) {
			pthread_mutex_unlock(&fs->table_lock);
			ovl_found_free(f);
			return -ENOMEM;
		}
		node->ino = ino;
		if (alias && f->st.st_nlink > 1)
			ovl_alias_record_new_table_locked(fs, node, &f->st);
	} else if (fresh || node->type != (f->st.st_mode & S_IFMT)) {
		ovl_alias_del_table_locked(fs, node); /* recorded as another object */
		node->ino = ino;		      /* replaced behind our back */
	}
	if (node->nlookup++ == 0)
		node->refs++;
	atomic_store(&node->indexed, f->indexed);
	node_set_found(fs, node, f);
	pthread_mutex_unlock(&fs->table_lock);
	/* What is found decides, metacopy or not (a stub copied up since, say). */
	ovl_metacopy_set(fs, node, f->data_layer, f->data_path);
	f->data_path = NULL;

	*st = f->st;
	ovl_fill_stat(fs, node, st);
	*out = node;
	return 0;
}
