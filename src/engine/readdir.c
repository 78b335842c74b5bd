/* Merged readdir: the union of the names of a directory's layers, top-down; the first
 * occurrence wins; whiteouts and the names they hide are left out. Each open handle keeps
 * its own snapshot until it is rewound. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ovl_dir {
	struct ovl_node *node;
	pthread_mutex_t lock;
	struct ovl_dirent *ents;
	size_t count;
	bool loaded;
};

/* A set of names seen so far; a slot holds an entry index + 1, or HIDDEN. */
struct name_set {
	size_t size, used;
	struct slot {
		char *name;
		size_t idx;
	} * slots;
};
#define HIDDEN ((size_t)-1)

/* The names of one listing: an open-addressing set, built and dropped in one merge (the
 * chained ovl_htab would cost a node per name), hashed with the daemon's one hash. */
static size_t hash_str(const char *s)
{
	return (size_t)ovl_hash_str(0, s);
}

static struct slot *set_find(struct name_set *set, const char *name)
{
	size_t i = hash_str(name) & (set->size - 1);
	while (set->slots[i].name && strcmp(set->slots[i].name, name) != 0)
		i = (i + 1) & (set->size - 1);
	return &set->slots[i];
}

static int set_grow(struct name_set *set)
{
	struct name_set n = {.size = set->size ? set->size * 2 : 64};

	n.slots = calloc(n.size, sizeof(*n.slots));
	if (!n.slots)
		return -ENOMEM;
	for (size_t i = 0; i < set->size; i++)
		if (set->slots[i].name)
			*set_find(&n, set->slots[i].name) = set->slots[i];
	n.used = set->used;
	free(set->slots);
	*set = n;
	return 0;
}

void ovl_dirents_free(struct ovl_dirent *ents, size_t count)
{
	for (size_t i = 0; i < count; i++)
		free(ents[i].name);
	free(ents);
}

struct merge {
	struct ovl_dirent *ents;
	size_t count, cap;
	struct name_set set;
	bool has_whiteouts;
	/* After the upper layer: its entries are the first n_upper; below[i] is the number of
	 * the first lower directory an upper directory entry i would merge with (BELOW_NONE:
	 * none, BELOW_STOP: a lower non-directory ends the merge first). */
	size_t n_upper;
	uint64_t *below;
};
#define BELOW_NONE 0
#define BELOW_STOP UINT64_MAX

/* A name already taken by an upper directory entry, met again in a lower layer: the first
 * lower directory gives that entry its number if it merges (identity_fixup decides). */
static void note_below(struct ovl_fs *fs, struct merge *m, int layer, int dfd, struct slot *s,
		       struct dirent *de)
{
	if (!m->below || s->idx == HIDDEN || s->idx - 1 >= m->n_upper)
		return;
	size_t i = s->idx - 1;
	if (m->ents[i].type != DT_DIR || m->below[i] != BELOW_NONE)
		return;
	unsigned char type = de->d_type;
	if (type == DT_UNKNOWN) {
		struct stat st;
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return;
		type = (unsigned char)IFTODT(st.st_mode);
	}
	m->below[i] =
	    type == DT_DIR ? ovl_map_ino(fs, layer, fs->layers[layer].dev, de->d_ino) : BELOW_STOP;
}

static int merge_entry(struct ovl_fs *fs, struct merge *m, int layer, int dfd, bool xwh,
		       struct dirent *de)
{
	unsigned char type = de->d_type;
	bool upper = fs->layers[layer].is_upper;
	struct slot *s;
	int err;

	if (ovl_oci_name(fs, de->d_name))
		return 0; /* OCI whiteouts are never shown (merge_layer applies them) */
	if (m->set.used * 2 >= m->set.size && (err = set_grow(&m->set)))
		return err;
	s = set_find(&m->set, de->d_name);
	if (s->name) {
		note_below(fs, m, layer, dfd, s, de);
		return 0; /* an upper layer already decided */
	}
	bool hidden = false;
	if (type == DT_CHR || type == DT_UNKNOWN || (type == DT_REG && xwh && !upper)) {
		struct stat st;
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return errno == ENOENT ? 0 : -errno;
		hidden = ovl_is_whiteout_stat(&st) || (type == DT_REG && xwh && !upper &&
						       ovl_is_xwhiteout(fs, dfd, de->d_name, &st));
		type = (unsigned char)IFTODT(st.st_mode);
	}
	s->name = strdup(de->d_name);
	if (!s->name)
		return -ENOMEM;
	m->set.used++;
	if (hidden) {
		s->idx = HIDDEN;
		m->has_whiteouts = true;
		return 0;
	}
	if (m->count == m->cap) {
		size_t ncap = m->cap ? m->cap * 2 : 32;
		struct ovl_dirent *n = realloc(m->ents, ncap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		m->ents = n;
		m->cap = ncap;
	}
	struct ovl_dirent *e = &m->ents[m->count];
	e->name = strdup(de->d_name);
	if (!e->name)
		return -ENOMEM;
	e->type = type;
	e->ino = ovl_map_ino(fs, layer, fs->layers[layer].dev, de->d_ino);
	s->idx = ++m->count;
	return 0;
}

/* Hides name from the layers below; a name this layer has stays (it is in the set). */
static int hide_name(struct merge *m, const char *name)
{
	struct slot *s;
	int err;

	if (!*name || ovl_is_wh_name(name))
		return 0; /* .wh..wh..opq and the like mark the directory, not a name */
	if (m->set.used * 2 >= m->set.size && (err = set_grow(&m->set)))
		return err;
	s = set_find(&m->set, name);
	if (s->name)
		return 0;
	s->name = strdup(name);
	if (!s->name)
		return -ENOMEM;
	s->idx = HIDDEN;
	m->set.used++;
	m->has_whiteouts = true;
	return 0;
}

/* Remembers that a layer of the directory holds no .wh. name, so that lookups there need
 * not look for one. Not for the upper layer where ovlfs itself writes such files. */
static void note_no_wh_files(struct ovl_fs *fs, struct ovl_node *node, int layer)
{
	if (fs->layers[layer].is_upper && fs->file_whiteouts)
		return;
	pthread_spin_lock(&node->lock);
	for (int i = 0; i < node->ndirlayers; i++)
		if (node->dirlayers[i].layer == layer)
			node->dirlayers[i].no_wh_files = true;
	pthread_spin_unlock(&node->lock);
}

/* Preconditions: the rename lock; fs->table_lock and the node's spinlock not held. */
static int merge_layer(struct ovl_fs *fs, struct ovl_node *node, const struct ovl_dirlayer *dl,
		       struct merge *m)
{
	int fd = ovl_open_in_layer(fs, node, dl->layer, O_RDONLY | O_DIRECTORY);
	char **hide = NULL; /* .wh.<name> targets, applied once this layer's names are in */
	size_t nhide = 0;
	int err = 0;

	if (fd < 0)
		return fd == -ENOENT || fd == -ENOTDIR ? 0 : fd;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	struct dirent *de;
	errno = 0;
	while (!err && (de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (ovl_oci_name(fs, de->d_name)) {
			char **n = realloc(hide, (nhide + 1) * sizeof(*n));
			if (!n || !(n[nhide] = strdup(de->d_name + strlen(OVL_WH_PREFIX))))
				err = -ENOMEM;
			if (n)
				hide = n;
			if (!err)
				nhide++;
		}
		if (!err)
			err = merge_entry(fs, m, dl->layer, dirfd(d), dl->xwhiteouts, de);
		errno = 0;
	}
	if (!err && errno)
		err = -errno;
	closedir(d);
	for (size_t i = 0; i < nhide; i++) {
		if (!err)
			err = hide_name(m, hide[i]);
		free(hide[i]);
	}
	free(hide);
	if (!err && !nhide)
		note_no_wh_files(fs, node, dl->layer);
	return err;
}

/*
 * d_ino as stat shows the entry (namei.c): an upper directory that merges lower ones has
 * its first lower directory's number, and in an impure directory an entry copied up keeps
 * its origin's. The kernel overlayfs looks these up the same way (ovl_cache_update_ino).
 * Preconditions: the rename lock.
 */
static int identity_fixup(struct ovl_fs *fs, struct ovl_node *node, struct merge *m)
{
	bool impure = false;
	int fd = -1;

	/* Any upper directory may carry a redirect (even before one was followed). */
	bool redirects = fs->nlayers > 1;

	for (size_t i = 0; i < m->n_upper; i++) {
		struct ovl_dirent *e = &m->ents[i];
		bool merged_dir = e->type == DT_DIR && m->below && m->below[i] != BELOW_NONE &&
				  m->below[i] != BELOW_STOP;
		if (fd < 0 && (merged_dir || e->type != DT_DIR || redirects)) {
			fd = ovl_open_in_layer(fs, node, 0, O_PATH | O_DIRECTORY);
			if (fd < 0)
				return fd == -ENOENT || fd == -ENOTDIR ? 0 : fd;
			impure = fs->nlayers > 1 && ovl_is_impure(fs, fd);
		}
		char rd[PATH_MAX];
		if (redirects && e->type == DT_DIR &&
		    ovl_get_redirect_raw(fs, fd, e->name, rd, sizeof(rd)) > 0) {
			/* A redirected directory merges what is elsewhere below, not the same
			 * name: its number is the one its lookup finds there. */
			struct ovl_found f = {0};
			if (ovl_find(fs, node, e->name, OVL_FIND_IDENTITY, &f) == 0 && f.top >= 0 &&
			    f.ino)
				e->ino = f.ino;
			ovl_found_free(&f);
		} else if (merged_dir) {
			if (ovl_dir_opaque(fs, fd, e->name, true) != OVL_OPAQUE_YES)
				e->ino = m->below[i];
		} else if (impure && e->type != DT_DIR) {
			bool indexed;
			uint64_t ino = ovl_origin_ino(fs, fd, e->name, DTTOIF(e->type), &indexed);
			if (ino)
				e->ino = ino;
		}
	}
	if (fd >= 0)
		close(fd);
	return 0;
}

/* Preconditions: the rename lock. */
int ovl_merge_dir(struct ovl_fs *fs, struct ovl_node *node, struct ovl_dirent **out, size_t *count,
		  bool *has_whiteouts)
{
	struct merge m = {0};
	struct ovl_dirlayer *dl;
	int n = ovl_node_dirlayers(node, &dl);
	int err = n < 0 ? n : 0;

	for (int i = 0; !err && i < n; i++) {
		err = merge_layer(fs, node, &dl[i], &m);
		if (!err && i == 0 && fs->layers[dl[0].layer].is_upper) {
			m.n_upper = m.count;
			if (n > 1 && !(m.below = calloc(m.count ? m.count : 1, sizeof(*m.below))))
				err = -ENOMEM;
		}
	}
	if (!err && n > 0 && fs->layers[dl[0].layer].is_upper)
		err = identity_fixup(fs, node, &m);
	free(m.below);
	if (n >= 0)
		free(dl);
	for (size_t i = 0; i < m.set.size; i++)
		free(m.set.slots[i].name);
	free(m.set.slots);
	if (err) {
		ovl_dirents_free(m.ents, m.count);
		return err;
	}
	*out = m.ents;
	*count = m.count;
	if (has_whiteouts)
		*has_whiteouts = m.has_whiteouts;
	return 0;
}

void ovl_emit_dirents(struct ovl_fs *fs, struct ovl_node *dir, const struct ovl_dirent *ents,
		      size_t count, size_t pos, off_t (*next_off)(size_t next, const void *arg),
		      const void *arg, ovl_dirent_fn fn, void *ctx)
{
	for (size_t i = pos; i < count + 2; i++) {
		off_t next = next_off(i + 1, arg);
		int stop;
		if (i == 0) {
			stop = fn(ctx, ".", dir->ino, DT_DIR, next);
		} else if (i == 1) {
			pthread_rwlock_rdlock(&fs->rename_lock);
			struct ovl_node *p = dir->parent ? dir->parent : dir;
			uint64_t pino = p->ino;
			pthread_rwlock_unlock(&fs->rename_lock);
			stop = fn(ctx, "..", pino, DT_DIR, next);
		} else {
			const struct ovl_dirent *e = &ents[i - 2];
			stop = fn(ctx, e->name, e->ino, e->type, next);
		}
		if (stop)
			break;
	}
}

/* A handle's offsets are plain positions. */
static off_t position_off(size_t next, const void *arg)
{
	(void)arg;
	return (off_t)next;
}

int ovl_opendir(struct ovl_fs *fs, struct ovl_node *node, struct ovl_dir **out)
{
	struct ovl_dir *d;

	if (node->type != S_IFDIR)
		return -ENOTDIR;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->node = node;
	pthread_mutex_init(&d->lock, NULL);
	ovl_node_ref(fs, node, 0, 1);
	/* An open directory keeps its object when removed, as an open file does: fstat of
	 * the fd then shows what the layer shows (an emptied directory: size 0, no links). */
	atomic_fetch_add(&node->nopen, 1);
	*out = d;
	return 0;
}

int ovl_readdir(struct ovl_fs *fs, struct ovl_dir *d, off_t off, ovl_dirent_fn fn, void *ctx)
{
	int err = 0;

	pthread_mutex_lock(&d->lock);
	if (off == 0 || !d->loaded) {
		struct ovl_dirent *ents;
		size_t count;
		pthread_rwlock_rdlock(&fs->rename_lock);
		err = ovl_merge_dir(fs, d->node, &ents, &count, NULL);
		pthread_rwlock_unlock(&fs->rename_lock);
		if (!err) {
			ovl_dirents_free(d->ents, d->count);
			d->ents = ents;
			d->count = count;
			d->loaded = true;
		}
	}
	if (!err)
		ovl_emit_dirents(fs, d->node, d->ents, d->count, (size_t)off, position_off, NULL,
				 fn, ctx);
	pthread_mutex_unlock(&d->lock);
	return err;
}

void ovl_releasedir(struct ovl_fs *fs, struct ovl_dir *d)
{
	ovl_dirents_free(d->ents, d->count);
	pthread_mutex_destroy(&d->lock);
	atomic_fetch_sub(&d->node->nopen, 1);
	ovl_node_unref(fs, d->node, 0, 1);
	free(d);
}
