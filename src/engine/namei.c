/* Lookup: a name resolves top-down through the layers its parent directory merges. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

void ovl_found_free(struct ovl_found *f)
{
	free(f->dirlayers);
	f->dirlayers = NULL;
}

static int add_dirlayer(struct ovl_found *f, int layer, bool xwh)
{
	struct ovl_dirlayer *n = realloc(f->dirlayers, sizeof(*n) * (size_t)(f->ndirlayers + 1));

	if (!n)
		return -ENOMEM;
	n[f->ndirlayers].layer = layer;
	n[f->ndirlayers].xwhiteouts = xwh;
	n[f->ndirlayers].no_wh_files = false;
	f->dirlayers = n;
	f->ndirlayers++;
	return 0;
}

static bool gone(int err)
{
	return err == -ENOENT || err == -ENOTDIR;
}

/* Layers that lacked the name since the last layer that had it: a .wh.<name> file in one
 * of them hides the name below. Checked only once a layer below has the name, so that a
 * name found nowhere costs nothing more; their directory fds are kept meanwhile. */
#define MISSED_MAX 16
struct missed {
	int n;
	int idx[MISSED_MAX]; /* index into the parent's layer list */
	int fd[MISSED_MAX];
	bool own[MISSED_MAX]; /* opened here, not lent by the caller */
};

static void put_dfd(int fd, bool own)
{
	if (own)
		close(fd);
}

static void missed_clear(struct missed *m)
{
	for (int i = 0; i < m->n; i++)
		put_dfd(m->fd[i], m->own[i]);
	m->n = 0;
}

static bool upper_first(struct ovl_fs *fs, const struct ovl_dirlayer *pl)
{
	return fs->layers[pl[0].layer].is_upper;
}

/* The index of the first missed layer with a .wh.<name>, -1 if none, or -errno. */
static int missed_whiteout(struct missed *m, const char *name)
{
	int r = -1;

	for (int i = 0; i < m->n && r == -1; i++) {
		int w = ovl_has_wh_file(m->fd[i], name);
		r = w < 0 ? w : w ? m->idx[i] : -1;
	}
	missed_clear(m);
	return r;
}

/*
 * Finds what `name` in `parent` is: the top layer holding it, and for a directory the
 * layers it merges. With want_below, also learns whether any layer under the top one
 * holds the name (a whiteout is then needed to remove it).
 */
int ovl_find(struct ovl_fs *fs, struct ovl_node *parent, const char *name, bool want_below,
	     struct ovl_found *f)
{
	return ovl_find_in(fs, parent, name, want_below, NULL, f);
}

int ovl_find_in(struct ovl_fs *fs, struct ovl_node *parent, const char *name, bool want_below,
		const int *dirfds, struct ovl_found *f)
{
	struct ovl_dirlayer *pl;
	struct missed missed = {0};
	bool merging = false;
	int n, err = 0;

	memset(f, 0, sizeof(*f));
	f->top = -1;
	if (strlen(name) > (size_t)fs->namemax)
		return -ENAMETOOLONG;
	if (parent->type != S_IFDIR)
		return -ENOTDIR;
	if (ovl_is_wh_name(name))
		return 0; /* OCI whiteout names are never shown */
	n = ovl_node_dirlayers(parent, &pl);
	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		int layer = pl[i].layer;
		bool upper = fs->layers[layer].is_upper;
		struct stat st;
		bool own = !dirfds || dirfds[layer] < 0;
		int dfd = own ? ovl_open_in_layer(fs, parent, layer, O_PATH | O_DIRECTORY)
			      : dirfds[layer];

		if (dfd < 0) {
			if (gone(dfd))
				continue; /* changed underneath: treat as absent */
			err = dfd;
			break;
		}
		if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			err = -errno;
			if (!gone(err)) {
				put_dfd(dfd, own);
				break;
			}
			err = 0;
			/* Only a layer with some below and maybe some .wh. file may hide it. */
			if (i == n - 1 || pl[i].no_wh_files) {
				put_dfd(dfd, own);
			} else if (missed.n < MISSED_MAX) {
				missed.idx[missed.n] = i;
				missed.own[missed.n] = own;
				missed.fd[missed.n++] = dfd;
			} else {
				int w = ovl_has_wh_file(dfd, name);
				put_dfd(dfd, own);
				if (w) {
					/* A layer above may hold one too: the upper, say. */
					int m = missed_whiteout(&missed, name);
					err = w < 0 ? w : m < -1 ? m : 0;
					if (!err && f->top < 0)
						f->whfile_in_upper =
						    m >= 0 ? !m && upper_first(fs, pl) : upper;
					break;
				}
			}
			continue;
		}
		int w = missed.n ? missed_whiteout(&missed, name) : -1;
		if (w != -1) {
			put_dfd(dfd, own);
			if (w < -1)
				err = w;
			else if (f->top < 0)
				f->whfile_in_upper = !w && upper_first(fs, pl);
			break; /* whited out above this layer */
		}
		bool wh = ovl_is_whiteout_stat(&st) ||
			  (!upper && pl[i].xwhiteouts && ovl_is_xwhiteout(fs, dfd, name, &st));
		if (f->top < 0) {
			if (wh) {
				f->whiteout_in_upper = upper;
				put_dfd(dfd, own);
				break;
			}
			f->top = layer;
			f->st = st;
			if (S_ISDIR(st.st_mode)) {
				int op = ovl_dir_opaque(fs, dfd, name, i < n - 1);
				err = add_dirlayer(f, layer, op == OVL_OPAQUE_XWHITEOUTS && !upper);
				merging = op != OVL_OPAQUE_YES;
				f->opaque = op == OVL_OPAQUE_YES;
			}
		} else if (merging) {
			if (!wh && S_ISDIR(st.st_mode)) {
				int op = ovl_dir_opaque(fs, dfd, name, i < n - 1);
				err = add_dirlayer(f, layer, op == OVL_OPAQUE_XWHITEOUTS && !upper);
				merging = op != OVL_OPAQUE_YES;
			} else {
				merging = false;
			}
			if (!wh)
				f->below = true;
		} else if (!wh) {
			f->below = true;
		}
		put_dfd(dfd, own);
		if (err)
			break;
		if (!merging && (!want_below || f->below || wh))
			break;
	}
	missed_clear(&missed);
	free(pl);
	if (err)
		ovl_found_free(f);
	return err;
}

void ovl_fill_stat(struct ovl_fs *fs, struct ovl_node *node, struct stat *st)
{
	st->st_ino = node->ino;
	pthread_spin_lock(&node->lock);
	int top = node->top;
	/* As the kernel: a merged directory has no meaningful link count. */
	if (S_ISDIR(st->st_mode) && node->ndirlayers > 1)
		st->st_nlink = 1;
	pthread_spin_unlock(&node->lock);
	ovl_alias_note(fs, node, st, top);
	ovl_owner_show(fs, node, st);
}

/* Sets what the node is from a find result (which it takes over).
 * Preconditions: fs->table_lock held; the node's spinlock not held. */
static void node_set_found(struct ovl_node *node, struct ovl_found *f)
{
	pthread_spin_lock(&node->lock);
	atomic_store(&node->no_xattrs, false); /* what is found may be another object */
	node->top = f->top;
	node->type = f->st.st_mode & S_IFMT;
	struct ovl_dirlayer *old = node->dirlayers;
	node->dirlayers = f->dirlayers;
	node->ndirlayers = f->ndirlayers;
	f->dirlayers = NULL;
	pthread_spin_unlock(&node->lock);
	free(old);
}

/* Records what was found at parent/name in the node table and takes a lookup reference.
 * A fresh object (just created) always gets its own inode number. */
int ovl_node_install(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		     struct ovl_found *f, bool fresh, struct ovl_node **out, struct stat *st)
{
	uint64_t ino = ovl_map_ino(fs, f->top, f->st.st_dev, f->st.st_ino);
	struct ovl_node *node;

	pthread_mutex_lock(&fs->table_lock);
	node = ovl_node_get_child(fs, parent, name);
	if (!node) {
		node = ovl_node_new(fs, parent, name);
		if (!node) {
			pthread_mutex_unlock(&fs->table_lock);
			ovl_found_free(f);
			return -ENOMEM;
		}
		node->ino = ino;
	} else if (fresh || node->type != (f->st.st_mode & S_IFMT)) {
		ovl_alias_del_table_locked(fs, node); /* indexed by its old number */
		node->ino = ino;		      /* replaced behind our back */
	}
	if (node->nlookup++ == 0)
		node->refs++;
	node_set_found(node, f);
	pthread_mutex_unlock(&fs->table_lock);

	*st = f->st;
	ovl_fill_stat(fs, node, st);
	*out = node;
	return 0;
}

struct ovl_dirfds {
	int n;
	int fd[]; /* by layer index, fs->nlayers of them; -1: not open */
};

struct ovl_dirfds *ovl_dirfds_open(struct ovl_fs *fs, struct ovl_node *dir)
{
	struct ovl_dirlayer *dl;
	struct ovl_dirfds *d = malloc(sizeof(*d) + sizeof(int) * (size_t)fs->nlayers);
	if (!d)
		return NULL;
	d->n = fs->nlayers;
	for (int i = 0; i < fs->nlayers; i++)
		d->fd[i] = -1;
	if (dir->type != S_IFDIR || dir->unlinked)
		return d;
	pthread_rwlock_rdlock(&fs->rename_lock);
	int n = ovl_node_dirlayers(dir, &dl);
	for (int i = 0; i < n; i++) {
		int fd = ovl_open_in_layer(fs, dir, dl[i].layer, O_PATH | O_DIRECTORY);
		d->fd[dl[i].layer] = fd < 0 ? -1 : fd;
	}
	pthread_rwlock_unlock(&fs->rename_lock);
	if (n >= 0)
		free(dl); /* allocated even for no layers */
	return d;
}

void ovl_dirfds_close(struct ovl_dirfds *d)
{
	if (!d)
		return;
	for (int i = 0; i < d->n; i++)
		if (d->fd[i] >= 0)
			close(d->fd[i]);
	free(d);
}

/* Preconditions: the rename lock; fs->table_lock not held. */
static int lookup_in(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		     const int *dirfds, struct ovl_node **out, struct stat *st)
{
	struct ovl_found f;
	int err;

	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return -EINVAL;
	err = ovl_find_in(fs, parent, name, false, dirfds, &f);
	if (err)
		return err;
	if (f.top < 0)
		return -ENOENT;
	return ovl_node_install(fs, parent, name, &f, false, out, st);
}

/* Preconditions: the rename lock, read or written; fs->table_lock not held. */
int ovl_lookup_locked(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		      struct ovl_node **out, struct stat *st)
{
	return lookup_in(fs, parent, name, NULL, out, st);
}

/* The lent fds stay right across renames: each is the directory object itself, which a
 * rename moves along; a layer added by a later copy-up is walked to as usual. */
int ovl_lookup_in(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		  struct ovl_dirfds *d, struct ovl_node **out, struct stat *st)
{
	pthread_rwlock_rdlock(&fs->rename_lock);
	int err = lookup_in(fs, parent, name, d && !parent->unlinked ? d->fd : NULL, out, st);
	pthread_rwlock_unlock(&fs->rename_lock);
	return err;
}

int ovl_lookup(struct ovl_fs *fs, struct ovl_node *parent, const char *name, struct ovl_node **out,
	       struct stat *st)
{
	pthread_rwlock_rdlock(&fs->rename_lock);
	int err = ovl_lookup_locked(fs, parent, name, out, st);
	pthread_rwlock_unlock(&fs->rename_lock);
	return err;
}

void ovl_forget(struct ovl_fs *fs, struct ovl_node *node, uint64_t nlookup)
{
	ovl_node_unref(fs, node, nlookup, 0);
}

/* Preconditions: the rename lock; fs->table_lock not held. */
int ovl_stat_node(struct ovl_fs *fs, struct ovl_node *node, struct stat *st)
{
	const char *name;
	int top = ovl_node_top(node);
	int dfd, err = 0;

	if (node->unlinked) {
		/* The object itself if open files kept it, else its last known attributes. */
		if (ovl_orphan_fd(node) < 0 || fstat(ovl_orphan_fd(node), st) < 0) {
			if (!node->orphan)
				return -ENOENT;
			*st = node->orphan->last_st;
			st->st_nlink = 0;
		}
		ovl_fill_stat(fs, node, st);
		return 0;
	}
	dfd = ovl_open_parent(fs, node, top, &name);
	if (dfd < 0)
		return gone(dfd) ? -ESTALE : dfd;
	if (fstatat(dfd, name, st, AT_SYMLINK_NOFOLLOW) < 0)
		err = errno == ENOENT ? -ESTALE : -errno;
	else if ((st->st_mode & S_IFMT) != node->type)
		err = node->unlinked ? -ENOENT : -ESTALE; /* removed or replaced meanwhile */
	close(dfd);
	if (!err)
		ovl_fill_stat(fs, node, st);
	return err;
}

int ovl_getattr(struct ovl_fs *fs, struct ovl_node *node, struct stat *st)
{
	pthread_rwlock_rdlock(&fs->rename_lock);
	int err = ovl_stat_node(fs, node, st);
	pthread_rwlock_unlock(&fs->rename_lock);
	return err;
}

int ovl_getattr_file(struct ovl_fs *fs, struct ovl_node *node, struct ovl_file *file,
		     struct stat *st)
{
	/* An fd on the upper object is the object itself, whatever its name is now. */
	int r = file ? ovl_file_upper_fstat(file, st) : 0;
	if (r == 0)
		return ovl_getattr(fs, node, st);
	if (r > 0)
		ovl_fill_stat(fs, node, st);
	return r < 0 ? r : 0;
}

/* Preconditions: the rename lock. */
static int btime_of(struct ovl_fs *fs, struct ovl_node *node, struct timespec *btime)
{
	struct statx sx;
	const char *name;
	int dfd, err = 0;

	if (node->unlinked) {
		dfd = ovl_orphan_fd(node);
		if (dfd < 0)
			return -ENODATA; /* no object left to ask */
		if (statx(dfd, "", AT_EMPTY_PATH, STATX_BTIME, &sx) < 0)
			return -errno;
	} else {
		dfd = ovl_open_parent(fs, node, ovl_node_top(node), &name);
		if (dfd < 0)
			return gone(dfd) ? -ESTALE : dfd;
		if (statx(dfd, name, AT_SYMLINK_NOFOLLOW, STATX_BTIME, &sx) < 0)
			err = errno == ENOENT ? -ESTALE : -errno;
		close(dfd);
		if (err)
			return err;
	}
	if (!(sx.stx_mask & STATX_BTIME))
		return -ENODATA;
	btime->tv_sec = sx.stx_btime.tv_sec;
	btime->tv_nsec = sx.stx_btime.tv_nsec;
	return 0;
}

int ovl_btime(struct ovl_fs *fs, struct ovl_node *node, struct timespec *btime)
{
	/* Before the look: a copy-up meanwhile marks it stale again. */
	atomic_store(&node->btime, OVL_BTIME_SHOWN);
	pthread_rwlock_rdlock(&fs->rename_lock);
	int err = btime_of(fs, node, btime);
	pthread_rwlock_unlock(&fs->rename_lock);
	return err;
}

bool ovl_node_btime_stale(struct ovl_node *node)
{
	return atomic_load(&node->btime) == OVL_BTIME_STALE;
}
