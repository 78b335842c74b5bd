/* Hard links: all names of an upper file are one node, so the kernel sees one inode per
 * object (as on a native filesystem) and shares its page cache, attributes, locks and
 * mappings among the names. The node keeps one name as its path (its parent and name in the
 * node table); the other names the kernel looked up are recorded here, found by (parent,
 * name) for the namespace operations and by object for the removal of the node's own name,
 * which then moves the node to another of its names. Only upper files seen with several
 * links are recorded: everything else pays one flag test. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A name of an object other than its node's own. */
struct ovl_altname {
	struct ovl_node *parent; /* holds a reference, as a child in the table does */
	char *name;
	struct ovl_object *obj;
	struct ovl_altname *next; /* obj->names */
	struct ovl_hlink by_name; /* fs->altnames */
};

/* An upper object with several links, and the one node that stands for it. */
struct ovl_object {
	dev_t dev;
	ino_t ino;
	struct ovl_node *node;
	struct ovl_altname *names;
	struct ovl_hlink by_id;	  /* fs->objects, by (dev, ino) */
	struct ovl_hlink by_node; /* fs->object_nodes, by node */
};

struct object_id {
	dev_t dev;
	ino_t ino;
};

struct name_key {
	const struct ovl_node *parent;
	const char *name;
};

static uint64_t object_id_hash(const struct ovl_hlink *link)
{
	const struct ovl_object *o = ovl_entry_of(link, struct ovl_object, by_id);
	return ovl_hash_dev_ino(o->dev, o->ino);
}

static uint64_t object_node_hash(const struct ovl_hlink *link)
{
	const struct ovl_object *o = ovl_entry_of(link, struct ovl_object, by_node);
	return ovl_hash_u64((uint64_t)(uintptr_t)o->node);
}

static uint64_t altname_hash(const struct ovl_hlink *link)
{
	const struct ovl_altname *a = ovl_entry_of(link, struct ovl_altname, by_name);
	return ovl_hash_child(a->parent, a->name);
}

static bool object_is_id(const struct ovl_hlink *link, const void *key)
{
	const struct ovl_object *o = ovl_entry_of(link, struct ovl_object, by_id);
	const struct object_id *id = key;
	return o->dev == id->dev && o->ino == id->ino;
}

static bool object_is_node(const struct ovl_hlink *link, const void *node)
{
	return ovl_entry_of(link, struct ovl_object, by_node)->node == node;
}

static bool altname_is(const struct ovl_hlink *link, const void *key)
{
	const struct ovl_altname *a = ovl_entry_of(link, struct ovl_altname, by_name);
	const struct name_key *k = key;
	return a->parent == k->parent && strcmp(a->name, k->name) == 0;
}

static void tables_ready(struct ovl_fs *fs)
{
	/* The tables start empty: buckets come with the first hard link. */
	fs->objects.hash = object_id_hash;
	fs->object_nodes.hash = object_node_hash;
	fs->altnames.hash = altname_hash;
}

/* Preconditions: fs->table_lock held. */
static struct ovl_object *object_of_node(struct ovl_fs *fs, const struct ovl_node *node)
{
	if (!atomic_load(&node->aliased))
		return NULL;
	struct ovl_hlink *link = ovl_htab_find(
	    &fs->object_nodes, ovl_hash_u64((uint64_t)(uintptr_t)node), object_is_node, node);
	return link ? ovl_entry_of(link, struct ovl_object, by_node) : NULL;
}

/* Preconditions: fs->table_lock held. */
static struct ovl_object *object_of_id(struct ovl_fs *fs, dev_t dev, ino_t ino)
{
	struct object_id id = {dev, ino};

	if (!fs->objects.count)
		return NULL;
	struct ovl_hlink *link =
	    ovl_htab_find(&fs->objects, ovl_hash_dev_ino(dev, ino), object_is_id, &id);
	return link ? ovl_entry_of(link, struct ovl_object, by_id) : NULL;
}

/* Preconditions: fs->table_lock held. */
static struct ovl_altname *altname_find(struct ovl_fs *fs, const struct ovl_node *parent,
					const char *name)
{
	struct name_key key = {parent, name};

	if (!fs->altnames.count)
		return NULL;
	struct ovl_hlink *link =
	    ovl_htab_find(&fs->altnames, ovl_hash_child(parent, name), altname_is, &key);
	return link ? ovl_entry_of(link, struct ovl_altname, by_name) : NULL;
}

/* Unlinks a from its object's list and the name table; the caller drops a->parent's
 * reference and frees it. Preconditions: fs->table_lock held. */
static void altname_unhook(struct ovl_fs *fs, struct ovl_altname *a)
{
	for (struct ovl_altname **p = &a->obj->names; *p; p = &(*p)->next) {
		if (*p == a) {
			*p = a->next;
			break;
		}
	}
	ovl_htab_remove(&fs->altnames, &a->by_name);
}

/* Preconditions: fs->table_lock held. */
static void altname_free(struct ovl_fs *fs, struct ovl_altname *a)
{
	struct ovl_node *parent = a->parent;

	altname_unhook(fs, a);
	free(a->name);
	free(a);
	ovl_node_drop_refs_table_locked(fs, parent, 1);
}

/* Records the object of node; NULL without memory (the node then stands for this name only,
 * as before hard links were joined). Preconditions: fs->table_lock held. */
static struct ovl_object *object_add(struct ovl_fs *fs, struct ovl_node *node, dev_t dev, ino_t ino)
{
	struct ovl_object *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	tables_ready(fs);
	o->dev = dev;
	o->ino = ino;
	o->node = node;
	if (ovl_htab_insert(&fs->objects, &o->by_id) < 0) {
		free(o);
		return NULL;
	}
	if (ovl_htab_insert(&fs->object_nodes, &o->by_node) < 0) {
		ovl_htab_remove(&fs->objects, &o->by_id);
		free(o);
		return NULL;
	}
	atomic_store(&node->aliased, true);
	return o;
}

/* Adds parent/name as a name of o (once). Preconditions: fs->table_lock held. */
static int altname_add(struct ovl_fs *fs, struct ovl_object *o, struct ovl_node *parent,
		       const char *name)
{
	struct ovl_altname *a = altname_find(fs, parent, name);

	if (a)
		return a->obj == o ? 0 : -EEXIST;
	if (!(a = calloc(1, sizeof(*a))) || !(a->name = strdup(name))) {
		free(a);
		return -ENOMEM;
	}
	a->parent = parent;
	a->obj = o;
	if (ovl_htab_insert(&fs->altnames, &a->by_name) < 0) {
		free(a->name);
		free(a);
		return -ENOMEM;
	}
	a->next = o->names;
	o->names = a;
	parent->refs++;
	return 0;
}

void ovl_alias_del_table_locked(struct ovl_fs *fs, struct ovl_node *node)
{
	struct ovl_object *o = object_of_node(fs, node);

	atomic_store(&node->aliased, false);
	if (!o)
		return;
	while (o->names)
		altname_free(fs, o->names);
	ovl_htab_remove(&fs->objects, &o->by_id);
	ovl_htab_remove(&fs->object_nodes, &o->by_node);
	free(o);
}

struct ovl_node *ovl_alias_resolve_table_locked(struct ovl_fs *fs, struct ovl_node *parent,
						const char *name, struct ovl_node *node,
						const struct stat *st, bool exclusive,
						bool may_retry)
{
	struct ovl_object *o = object_of_id(fs, st->st_dev, st->st_ino);

	if (node) {
		/* The name's own node: it stands for the object unless another one does
		 * already (a link made behind our back): then the two stay apart. */
		if (!o && st->st_nlink > 1 && !object_of_node(fs, node))
			object_add(fs, node, st->st_dev, st->st_ino);
		return node;
	}
	if (!o)
		return NULL; /* a new node for the name, recorded by ovl_alias_record_new */
	if (o->node->unlinked) {
		/* Its own name is gone, the object is kept by the node's orphan fd: the node
		 * takes this name, which needs the rename lock written. Where the caller cannot
		 * take it, the name gets a node of its own. */
		if (ovl_orphan_fd(o->node) < 0 || (!exclusive && !may_retry))
			return NULL;
		return exclusive ? o->node : OVL_ALIAS_RETRY;
	}
	if (altname_add(fs, o, parent, name) < 0)
		return NULL;
	return o->node;
}

void ovl_alias_record_new_table_locked(struct ovl_fs *fs, struct ovl_node *node,
				       const struct stat *st)
{
	if (!object_of_id(fs, st->st_dev, st->st_ino) && !object_of_node(fs, node))
		object_add(fs, node, st->st_dev, st->st_ino);
}

int ovl_alias_link_table_locked(struct ovl_fs *fs, struct ovl_node *node, struct ovl_node *parent,
				const char *name, const struct stat *st)
{
	struct ovl_object *o = object_of_node(fs, node);

	if (!o) {
		if (object_of_id(fs, st->st_dev, st->st_ino))
			return -EEXIST; /* another node stands for it */
		o = object_add(fs, node, st->st_dev, st->st_ino);
		if (!o)
			return -ENOMEM;
	} else if (o->dev != st->st_dev || o->ino != st->st_ino) {
		return -ESTALE;
	}
	return altname_add(fs, o, parent, name);
}

bool ovl_alias_drop_name_table_locked(struct ovl_fs *fs, struct ovl_node *parent, const char *name)
{
	struct ovl_altname *a = altname_find(fs, parent, name);

	if (!a)
		return false;
	altname_free(fs, a);
	return true;
}

int ovl_alias_move_name_table_locked(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
				     struct ovl_node *newparent, const char *newname)
{
	struct ovl_altname *a = altname_find(fs, parent, name);
	char *copy;

	if (!a)
		return 0;
	if (!(copy = strdup(newname)))
		return -ENOMEM;
	ovl_htab_remove(&fs->altnames, &a->by_name);
	free(a->name);
	a->name = copy;
	a->parent = newparent;
	newparent->refs++;
	/* Cannot fail: the table had room for it a moment ago. */
	(void)ovl_htab_insert(&fs->altnames, &a->by_name);
	ovl_node_drop_refs_table_locked(fs, parent, 1);
	return 1;
}

bool ovl_alias_child_has_names_table_locked(struct ovl_fs *fs, struct ovl_node *parent,
					    const char *name)
{
	struct ovl_node *child = ovl_node_get_child(fs, parent, name);
	struct ovl_object *o = child ? object_of_node(fs, child) : NULL;

	return o && o->names;
}

/* Whether parent/name still names the object (dev, ino), as found into f: an upper name, or
 * with the index a lower one (a stale record, say after a change in the layer behind our
 * back, is passed over). Preconditions: the rename lock written. */
static bool names_object(struct ovl_fs *fs, struct ovl_node *parent, const char *name, dev_t dev,
			 ino_t ino, struct ovl_found *f)
{
	/* (with its identity: whether it is the index's object, whose count is the group's) */
	if (ovl_find(fs, parent, name, OVL_FIND_IDENTITY, f) == 0 && f->top >= 0 &&
	    f->st.st_dev == dev && f->st.st_ino == ino)
		return true;
	ovl_found_free(f);
	return false;
}

bool ovl_alias_promote(struct ovl_fs *fs, struct ovl_node *node)
{
	for (;;) {
		pthread_mutex_lock(&fs->table_lock);
		struct ovl_object *o = object_of_node(fs, node);
		struct ovl_altname *a = o ? o->names : NULL;
		if (!a) {
			pthread_mutex_unlock(&fs->table_lock);
			return false;
		}
		/* The record's reference on the parent becomes ours until the move. */
		struct ovl_node *parent = a->parent;
		char *name = a->name;
		dev_t dev = o->dev;
		ino_t ino = o->ino;
		altname_unhook(fs, a);
		free(a);
		pthread_mutex_unlock(&fs->table_lock);
		struct ovl_found f = {0};
		bool usable = names_object(fs, parent, name, dev, ino, &f);
		if (usable)
			usable = ovl_node_move_to(fs, node, parent, name) == 0;
		if (usable)
			ovl_node_refound(fs, node, &f); /* where this name is, lower or upper */
		ovl_found_free(&f);
		free(name);
		ovl_node_unref(fs, parent, 0, 1);
		if (usable)
			return true;
	}
}

static void free_object(struct ovl_hlink *link, void *fs)
{
	struct ovl_object *o = ovl_entry_of(link, struct ovl_object, by_id);

	(void)fs;
	while (o->names) {
		struct ovl_altname *a = o->names;
		o->names = a->next;
		free(a->name);
		free(a);
	}
	atomic_store(&o->node->aliased, false);
	free(o);
}

void ovl_alias_free_all(struct ovl_fs *fs)
{
	/* At teardown: the nodes go with the node table, whatever references remain. */
	ovl_htab_free(&fs->altnames, NULL, NULL);
	ovl_htab_free(&fs->object_nodes, NULL, NULL);
	ovl_htab_free(&fs->objects, free_object, fs);
}

void ovl_name_removed(struct ovl_fs *fs, struct ovl_node *node, struct ovl_node *parent,
		      const char *name, struct ovl_orphan *orphan, const struct stat *st,
		      bool exclusive)
{
	pthread_mutex_lock(&fs->table_lock);
	bool other_name = ovl_alias_drop_name_table_locked(fs, parent, name);
	pthread_mutex_unlock(&fs->table_lock);
	if (other_name || (exclusive && ovl_alias_promote(fs, node))) {
		ovl_orphan_free(orphan);
		return;
	}
	ovl_node_detach(fs, node, orphan, st);
}

void ovl_name_moved(struct ovl_fs *fs, struct ovl_node *node, struct ovl_node *parent,
		    const char *name, struct ovl_node *newparent, const char *newname)
{
	pthread_mutex_lock(&fs->table_lock);
	int moved = ovl_alias_move_name_table_locked(fs, parent, name, newparent, newname);
	if (moved < 0) /* no memory for the new name: forget it rather than keep a wrong one */
		ovl_alias_drop_name_table_locked(fs, parent, name);
	pthread_mutex_unlock(&fs->table_lock);
	if (!moved)
		ovl_node_move(fs, node, newparent, newname);
}

void ovl_alias_rekey(struct ovl_fs *fs, struct ovl_node *node, const struct stat *st)
{
	pthread_mutex_lock(&fs->table_lock);
	struct ovl_object *o = object_of_node(fs, node);
	if (o && (o->dev != st->st_dev || o->ino != st->st_ino)) {
		ovl_htab_remove(&fs->objects, &o->by_id);
		o->dev = st->st_dev;
		o->ino = st->st_ino;
		/* Cannot fail: the table had room for it a moment ago. */
		(void)ovl_htab_insert(&fs->objects, &o->by_id);
	} else if (!o && !object_of_id(fs, st->st_dev, st->st_ino)) {
		object_add(fs, node, st->st_dev, st->st_ino);
	}
	pthread_mutex_unlock(&fs->table_lock);
}
