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
	ovl_dirlayers_free(f->dirlayers, f->ndirlayers);
	f->dirlayers = NULL;
	f->ndirlayers = 0;
	free(f->data_path);
	f->data_path = NULL;
}

/* Takes path over (NULL: the parent's path in that layer and the name). */
static int add_dirlayer(struct ovl_found *f, int layer, bool xwh, char *path)
{
	struct ovl_dirlayer *n = realloc(f->dirlayers, sizeof(*n) * (size_t)(f->ndirlayers + 1));

	if (!n) {
		free(path);
		return -ENOMEM;
	}
	n[f->ndirlayers].layer = layer;
	n[f->ndirlayers].path = path;
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

#define LENT_MAX 8
/* A lookup in progress: the layers of the parent, top-down, and what was found so far. */
struct lookup {
	struct ovl_fs *fs;
	struct ovl_node *parent;
	const char *name;
	bool want_below;
	bool identity;		 /* OVL_FIND_IDENTITY */
	const char *lname;	 /* the name in the parent's layers: name, or a relative redirect */
	char *rel;		 /* that redirect (owned) */
	char *abs;		 /* an absolute redirect (owned): the layers below go by it */
	int abs_layer;		 /* the layer (fs index) it was found in */
	const int *dirfds;	 /* lent by the caller, by layer index (-1: none); may be NULL */
	struct ovl_dirlayer *pl; /* the parent's layers */
	int n;
	struct missed missed;
	bool merging; /* the directory found so far merges the layers below */
	/* A metacopy file was found: the layers below are searched for its data. */
	enum { MC_NONE, MC_SEARCHING, MC_FOUND } mc;
	bool done; /* no layer below can change the result */
	struct ovl_found *f;
	/* Directory fds lent by the directory fd cache, given back when the lookup ends. */
	struct ovl_dircache_entry *lent[LENT_MAX];
	int nlent;
};

static bool layer_is_upper(const struct lookup *lk, int i)
{
	return lk->fs->layers[lk->pl[i].layer].is_upper;
}

/* The parent's directory in layer i: lent by the caller, or opened here (*own). */
static int parent_dirfd(struct lookup *lk, int i, bool *own)
{
	int layer = lk->pl[i].layer;

	*own = !lk->dirfds || lk->dirfds[layer] < 0;
	if (!*own)
		return lk->dirfds[layer];
	if (lk->nlent == LENT_MAX)
		return ovl_open_in_layer(lk->fs, lk->parent, layer, O_PATH | O_DIRECTORY);
	struct ovl_dircache_entry *lent;
	int fd = ovl_dir_borrow(lk->fs, lk->parent, layer, &lent);
	if (fd >= 0 && lent) {
		lk->lent[lk->nlent++] = lent;
		*own = false;
	}
	return fd;
}

/* A .wh.<name> file in layer i hides the name there and below. */
static void whited_out_by_file(struct lookup *lk, int i)
{
	if (lk->f->top < 0)
		lk->f->whfile_in_upper = layer_is_upper(lk, i);
	lk->done = true;
}

/* The name is not in layer i (dfd). Only a layer with some below and maybe some .wh. file
 * may hide it: its fd waits in missed until a layer below has the name. */
static int name_absent(struct lookup *lk, int i, int dfd, bool own)
{
	if (i == lk->n - 1 || lk->pl[i].no_wh_files || !lk->fs->oci_whiteouts) {
		put_dfd(dfd, own);
		return 0;
	}
	if (lk->missed.n < MISSED_MAX) {
		lk->missed.idx[lk->missed.n] = i;
		lk->missed.own[lk->missed.n] = own;
		lk->missed.fd[lk->missed.n++] = dfd;
		return 0;
	}
	/* No room to wait: asked now. */
	int w = ovl_has_wh_file(dfd, lk->lname);
	put_dfd(dfd, own);
	if (!w)
		return 0;
	/* A layer above may hold one too: the upper, say. */
	int m = missed_whiteout(&lk->missed, lk->lname);
	if (w < 0 || m < -1)
		return w < 0 ? w : m;
	whited_out_by_file(lk, m >= 0 ? m : i);
	return 0;
}

/* A directory at layer i joins the merge; its opaque mark says whether the layers below
 * join too. */
/* The path from layer's root of `name` in the parent's directory there (owned), or NULL
 * with *err. */
static char *path_in_parent(struct lookup *lk, int layer, const char *name, int *err)
{
	char buf[PATH_MAX];

	*err = ovl_node_layer_path(lk->fs, lk->parent, layer, buf, sizeof(buf));
	if (*err)
		return NULL;
	size_t len = strcmp(buf, ".") == 0 ? 0 : strlen(buf);
	if (len + 1 + strlen(name) >= sizeof(buf)) {
		*err = -ENAMETOOLONG;
		return NULL;
	}
	if (len)
		buf[len++] = '/';
	strcpy(buf + len, name);
	char *p = strdup(buf);
	*err = p ? 0 : -ENOMEM;
	return p;
}

/* Where a directory found under a relative redirect is in layer i: the parent's path
 * there and the redirected name. NULL with *err 0 when no redirect applies. */
static char *redirected_path(struct lookup *lk, int i, int *err)
{
	*err = 0;
	return lk->rel ? path_in_parent(lk, lk->pl[i].layer, lk->rel, err) : NULL;
}

/* *dst becomes the first keep bytes of prefix followed by tail (keep 0: tail alone); the
 * old *dst is freed after, so prefix may point into it. */
static int replace_str(char **dst, const char *prefix, size_t keep, const char *tail)
{
	char *n = malloc(keep + strlen(tail) + 1);

	if (!n)
		return -ENOMEM;
	memcpy(n, prefix, keep);
	strcpy(n + keep, tail);
	free(*dst);
	*dst = n;
	return 0;
}

/* A merging directory may carry a redirect: the layers below hold it elsewhere. */
static int note_redirect(struct lookup *lk, int i, int dfd, const char *name)
{
	int layer = lk->pl[i].layer;
	char buf[PATH_MAX];
	int r, err;

	if (layer >= lk->fs->nlayers - 1)
		return 0; /* nothing below to redirect to */
	/* Not following, the kernel looks no further than the parent's layers. */
	if (lk->fs->redirect_nofollow && i >= lk->n - 1)
		return 0;
	r = ovl_read_redirect(lk->fs, dfd, name, buf, sizeof(buf));
	if (r == OVL_REDIRECT_RELATIVE) {
		if ((err = replace_str(&lk->rel, buf, 0, buf)))
			return err;
		lk->lname = lk->rel;
	} else if (r == OVL_REDIRECT_ABSOLUTE) {
		if ((err = replace_str(&lk->abs, buf, 0, buf)))
			return err;
		lk->abs_layer = layer;
		lk->done = true; /* the parent's layers no longer apply: follow_absolute */
	}
	return r < 0 ? r : 0;
}

/* A directory found in layer i joins the merge; an opaque one stops it, a redirect moves
 * it. */
static int merge_dir(struct lookup *lk, int i, int dfd)
{
	int listed;
	int op = ovl_dir_opaque_listed(lk->fs, dfd, lk->lname, i < lk->n - 1, &listed);
	int err;
	char *path = redirected_path(lk, i, &err);

	if (err)
		return err;
	lk->merging = op != OVL_OPAQUE_YES;
	err = add_dirlayer(lk->f, lk->pl[i].layer,
			   op == OVL_OPAQUE_XWHITEOUTS && !layer_is_upper(lk, i), path);
	/* No xattrs at all: no redirect either, and none for later requests to read. */
	if (layer_is_upper(lk, i))
		lk->f->no_xattrs = listed == 0;
	if (!err && lk->merging && listed != 0)
		err = note_redirect(lk, i, dfd, lk->lname);
	return err;
}

/* A directory reached by an absolute redirect may redirect again (a middle layer's). */
static int follow_nested(struct lookup *lk, int layer, int fd)
{
	char buf[PATH_MAX];
	int r =
	    layer < lk->fs->nlayers - 1 ? ovl_read_redirect(lk->fs, fd, ".", buf, sizeof(buf)) : 0;

	if (r == OVL_REDIRECT_RELATIVE) {
		const char *slash = strrchr(lk->abs, '/');
		return replace_str(&lk->abs, lk->abs, slash ? (size_t)(slash - lk->abs) + 1 : 0,
				   buf);
	}
	if (r == OVL_REDIRECT_ABSOLUTE)
		return replace_str(&lk->abs, buf, 0, buf);
	return r < 0 ? r : 0;
}

/* After an absolute redirect, the layers below the one that held it, at that path from
 * their root (not the parent's layers): the kernel's walk from the root's layer stack. */
static int follow_absolute(struct lookup *lk)
{
	struct ovl_fs *fs = lk->fs;
	int err = 0;

	for (int l = lk->abs_layer + 1; l < fs->nregular && lk->merging && !err; l++) {
		struct stat st;
		/* The kernel walks the path component by component: its parents' marks count. */
		int walk = ovl_redirect_parents(fs, l, lk->abs);
		if (walk < 0)
			return walk;
		if (walk == OVL_WALK_STOP)
			break;
		if (walk == OVL_WALK_LAST)
			lk->merging = false; /* after this layer */
		int fd = ovl_layer_open(fs, l, lk->abs, O_PATH);
		if (fd < 0) {
			if (gone(fd))
				continue;
			return fd;
		}
		if (fstat(fd, &st) < 0) {
			err = -errno;
		} else if (!S_ISDIR(st.st_mode)) {
			lk->merging = false; /* a whiteout or a non-directory ends it */
		} else {
			int op = ovl_dir_opaque(fs, fd, ".", l < fs->nlayers - 1);
			char *path = strdup(lk->abs);
			if (lk->f->ndirlayers == 1 && fs->layers[lk->f->top].is_upper)
				lk->f->ino = ovl_map_ino(fs, l, st.st_dev, st.st_ino);
			err = path ? add_dirlayer(lk->f, l, op == OVL_OPAQUE_XWHITEOUTS, path)
				   : -ENOMEM;
			lk->f->below = true;
			lk->merging = lk->merging && op != OVL_OPAQUE_YES;
			if (!err && lk->merging)
				err = follow_nested(lk, l, fd);
		}
		close(fd);
	}
	return err;
}

/* A metacopy file names its data file elsewhere: its redirect (read from dfd/name) moves
 * the search, as a directory's moves the merge. */
static int metacopy_redirect(struct lookup *lk, int layer, int dfd, const char *name)
{
	char buf[PATH_MAX];
	int r = ovl_read_redirect(lk->fs, dfd, name, buf, sizeof(buf));

	if (r == OVL_REDIRECT_RELATIVE && lk->abs) {
		char *slash = strrchr(lk->abs, '/');
		size_t dir = slash ? (size_t)(slash - lk->abs) + 1 : 0;
		char *abs = malloc(dir + strlen(buf) + 1);
		if (!abs)
			return -ENOMEM;
		memcpy(abs, lk->abs, dir);
		strcpy(abs + dir, buf);
		free(lk->abs);
		lk->abs = abs;
	} else if (r == OVL_REDIRECT_RELATIVE) {
		char *rel = strdup(buf);
		if (!rel)
			return -ENOMEM;
		free(lk->rel);
		lk->rel = rel;
		lk->lname = rel;
	} else if (r == OVL_REDIRECT_ABSOLUTE) {
		char *abs = strdup(buf);
		if (!abs)
			return -ENOMEM;
		free(lk->abs);
		lk->abs = abs;
		lk->abs_layer = layer;
		lk->done = true; /* the parent's layers no longer apply: data_by_redirect */
	}
	return r < 0 ? r : 0;
}

/* The path of the file found at layer (fs index) from its root: the absolute redirect
 * followed, or the parent's path there and the name. */
static char *data_path(struct lookup *lk, int layer, int *err)
{
	if (lk->abs) {
		char *p = strdup(lk->abs);
		*err = p ? 0 : -ENOMEM;
		return p;
	}
	return path_in_parent(lk, layer, lk->lname, err);
}

/* Under a metacopy file, the name in layer (dfd/name, as st): another metacopy file (the
 * search goes on), the data file, or anything else, which ends the search empty. */
static int metacopy_below(struct lookup *lk, int layer, int dfd, const char *name,
			  const struct stat *st, bool wh)
{
	struct ovl_fs *fs = lk->fs;
	int err;

	if (wh || !S_ISREG(st->st_mode)) {
		lk->done = true;
		return 0;
	}
	if (!fs->metacopy) {
		ovl_warn(fs, "refusing the metacopy file %s (mount with -o metacopy=on)", lk->name);
		return -EPERM;
	}
	int mc = ovl_is_metacopy(fs, dfd, name, st);
	if (mc < 0)
		return mc;
	if (mc)
		return metacopy_redirect(lk, layer, dfd, name);
	lk->f->data_path = data_path(lk, layer, &err);
	if (err)
		return err;
	lk->f->data_layer = layer;
	lk->f->st.st_blocks = st->st_blocks; /* the kernel shows the data's */
	lk->mc = MC_FOUND;
	lk->done = true;
	return 0;
}

/* A metacopy file redirected by an absolute path: its data at that path in the layers
 * below the one holding the redirect, the data-only ones included. */
static int data_by_redirect(struct lookup *lk)
{
	struct ovl_fs *fs = lk->fs;
	int err = 0;

	lk->done = false;
	for (int l = lk->abs_layer + 1; l < fs->nlayers && lk->mc == MC_SEARCHING && !lk->done;
	     l++) {
		struct stat st;
		char *slash = strrchr(lk->abs, '/');
		char name[NAME_MAX + 1];
		int dfd;

		if (strlen(slash ? slash + 1 : lk->abs) > NAME_MAX)
			return -ENAMETOOLONG;
		strcpy(name, slash ? slash + 1 : lk->abs);
		if (slash)
			*slash = '\0';
		dfd = ovl_layer_open(fs, l, slash ? lk->abs : ".", O_PATH | O_DIRECTORY);
		if (slash)
			*slash = '/';
		if (dfd < 0) {
			if (gone(dfd))
				continue;
			return dfd;
		}
		if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			err = -errno;
			close(dfd);
			if (gone(err)) {
				err = 0;
				continue;
			}
			return err;
		}
		err = metacopy_below(lk, l, dfd, name, &st, ovl_is_whiteout_stat(&st));
		close(dfd);
		if (err)
			return err;
	}
	return err;
}

/* A file found at the top is a metacopy file: its data is searched below. Only where some
 * layer is below it (the kernel refuses one without data: EIO below). */
static int note_metacopy(struct lookup *lk, int i, int dfd, const struct stat *st)
{
	int layer = lk->pl[i].layer;

	if (layer >= lk->fs->nlayers - 1 || !S_ISREG(st->st_mode))
		return 0;
	int mc = ovl_is_metacopy(lk->fs, dfd, lk->lname, st);
	if (mc <= 0)
		return mc;
	lk->mc = MC_SEARCHING; /* without metacopy=on: refused once a lower file is found */
	return metacopy_redirect(lk, layer, dfd, lk->lname);
}

/* The topmost object of the name: what the name is (where an upper entry would have its
 * origin record read). A non-directory stops the merge. */
static int take_top(struct lookup *lk, int i, int dfd, const struct stat *st)
{
	int err = 0;

	lk->f->top = lk->pl[i].layer;
	lk->f->st = *st;
	if (S_ISDIR(st->st_mode)) {
		err = merge_dir(lk, i, dfd);
		lk->f->opaque = !lk->merging;
	} else {
		bool upper = layer_is_upper(lk, i);
		/* Where a record would be read: one listing instead (most files have no xattrs,
		 * which later requests are then told without a syscall). */
		int rec = upper && S_ISREG(st->st_mode) && lk->fs->nlayers > 1
			      ? ovl_upper_records(lk->fs, dfd, lk->lname)
			      : -1;
		if (lk->identity && upper && (rec & OVL_REC_ORIGIN)) {
			/* (a copied-up object keeps its origin's number: origin.c) */
			lk->f->ino = ovl_origin_ino(lk->fs, dfd, lk->lname, st->st_mode & S_IFMT,
						    &lk->f->indexed);
			if (lk->f->indexed)
				lk->f->st.st_nlink = ovl_index_nlink(lk->fs, dfd, lk->lname, st);
		}
		if (rec & OVL_REC_METACOPY)
			err = note_metacopy(lk, i, dfd, st);
		lk->f->no_xattrs = rec == 0 && st->st_nlink == 1;
		/* A lower hard link copied up by another name is the index entry's object. */
		if (!err && !upper && lk->mc == MC_NONE)
			err = ovl_index_find_lower(lk->fs, lk->pl[i].layer, dfd, lk->lname, lk->f);
	}
	return err;
}

/* The name in a layer under the top one: a directory below a merging one merges; a
 * whiteout or a non-directory ends the merge. */
static int below_top(struct lookup *lk, int i, int dfd, const struct stat *st, bool wh)
{
	int err = 0;

	if (lk->mc == MC_SEARCHING) {
		lk->f->below = lk->f->below || !wh;
		return metacopy_below(lk, lk->pl[i].layer, dfd, lk->lname, st, wh);
	}
	if (lk->merging) {
		/* A merged directory shows its first lower directory's number (the kernel's). */
		if (!wh && S_ISDIR(st->st_mode) && lk->f->ndirlayers == 1 &&
		    lk->fs->layers[lk->f->top].is_upper)
			lk->f->ino = ovl_map_ino(lk->fs, lk->pl[i].layer, st->st_dev, st->st_ino);
		if (!wh && S_ISDIR(st->st_mode))
			err = merge_dir(lk, i, dfd);
		else
			lk->merging = false;
	}
	if (!wh)
		lk->f->below = true;
	return err;
}

/* The name is in layer i (dfd), as st: what that entry means. */
static int name_present(struct lookup *lk, int i, int dfd, const struct stat *st)
{
	int err;

	if (lk->missed.n) {
		int w = missed_whiteout(&lk->missed, lk->lname);
		if (w < -1)
			return w;
		if (w >= 0) {
			whited_out_by_file(lk, w); /* above this layer */
			return 0;
		}
	}
	bool upper = layer_is_upper(lk, i);
	bool wh = ovl_is_whiteout_stat(st) ||
		  (!upper && lk->pl[i].xwhiteouts && ovl_is_xwhiteout(lk->fs, dfd, lk->lname, st));
	if (lk->f->top >= 0) {
		err = below_top(lk, i, dfd, st, wh);
	} else if (wh) {
		lk->f->whiteout_in_upper = upper;
		lk->done = true;
		return 0;
	} else {
		err = take_top(lk, i, dfd, st);
	}
	if (!lk->merging && lk->mc != MC_SEARCHING && (!lk->want_below || lk->f->below || wh))
		lk->done = true;
	return err;
}

/* One layer of the parent: is the name there, and what is it. */
static int look_in_layer(struct lookup *lk, int i)
{
	struct stat st;
	bool own;
	int err, dfd = parent_dirfd(lk, i, &own);

	if (dfd < 0)
		return gone(dfd) ? 0 : dfd; /* changed underneath: treat as absent */
	if (fstatat(dfd, lk->lname, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		err = -errno;
		if (gone(err))
			return name_absent(lk, i, dfd, own);
		put_dfd(dfd, own);
		return err;
	}
	err = name_present(lk, i, dfd, &st);
	put_dfd(dfd, own);
	return err;
}

/*
 * Finds what `name` in `parent` is: the top layer holding it, and for a directory the
 * layers it merges; how: OVL_FIND_* (internal.h).
 */
int ovl_find(struct ovl_fs *fs, struct ovl_node *parent, const char *name, unsigned how,
	     struct ovl_found *f)
{
	return ovl_find_in(fs, parent, name, how, NULL, f);
}

int ovl_find_in(struct ovl_fs *fs, struct ovl_node *parent, const char *name, unsigned how,
		const int *dirfds, struct ovl_found *f)
{
	struct lookup lk = {.fs = fs,
			    .parent = parent,
			    .name = name,
			    .want_below = how & OVL_FIND_BELOW,
			    .identity = how & OVL_FIND_IDENTITY,
			    .lname = name,
			    .dirfds = dirfds,
			    .f = f};
	int err = 0;

	memset(f, 0, sizeof(*f));
	f->top = -1;
	if (strlen(name) > (size_t)fs->namemax)
		return -ENAMETOOLONG;
	if (parent->type != S_IFDIR)
		return -ENOTDIR;
	if (ovl_oci_name(fs, name))
		return 0; /* OCI whiteout names are never shown */
	lk.n = ovl_node_dirlayers(parent, &lk.pl);
	if (lk.n < 0)
		return lk.n;
	for (int i = 0; i < lk.n && !err && !lk.done; i++)
		err = look_in_layer(&lk, i);
	if (!err && lk.abs && lk.merging)
		err = follow_absolute(&lk);
	if (!err && lk.abs && lk.mc == MC_SEARCHING)
		err = data_by_redirect(&lk);
	if (!err && lk.mc == MC_SEARCHING) {
		/* As the kernel: a metacopy file without its data is an error, not zeros. */
		ovl_warn(fs, "metacopy file %s: no data file found below", name);
		err = -EIO;
	}
	missed_clear(&lk.missed);
	for (int i = 0; i < lk.nlent; i++)
		ovl_dir_return(fs, -1, lk.lent[i]);
	free(lk.pl);
	free(lk.rel);
	free(lk.abs);
	if (err)
		ovl_found_free(f);
	return err;
}

/* Preconditions: the rename lock (written with OVL_INSTALL_EXCLUSIVE); fs->table_lock not
 * held. */
static int lookup_in(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		     const int *dirfds, unsigned how, struct ovl_node **out, struct stat *st)
{
	struct ovl_found f;
	int err;

	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return -EINVAL;
	err = ovl_find_in(fs, parent, name, OVL_FIND_IDENTITY, dirfds, &f);
	if (err)
		return err;
	if (f.top < 0)
		return -ENOENT;
	return ovl_node_install(fs, parent, name, &f, how, out, st);
}

/* Preconditions: the rename lock, read or written; fs->table_lock not held. */
int ovl_lookup_locked(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		      struct ovl_node **out, struct stat *st)
{
	return lookup_in(fs, parent, name, NULL, 0, out, st);
}

/* A lookup that finds a hard-linked file whose node lost its own name gives the node this
 * one, under the rename lock written: the rare case runs again exclusively. */
static int lookup_retrying(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
			   struct ovl_dirfds *d, struct ovl_node **out, struct stat *st)
{
	pthread_rwlock_rdlock(&fs->rename_lock);
	int err = lookup_in(fs, parent, name, d && !parent->unlinked ? d->fd : NULL,
			    OVL_INSTALL_MAY_RETRY, out, st);
	pthread_rwlock_unlock(&fs->rename_lock);
	if (err != -EAGAIN)
		return err;
	pthread_rwlock_wrlock(&fs->rename_lock);
	err = lookup_in(fs, parent, name, NULL, OVL_INSTALL_EXCLUSIVE, out, st);
	pthread_rwlock_unlock(&fs->rename_lock);
	return err;
}

/* The lent fds stay right across renames: each is the directory object itself, which a
 * rename moves along; a layer added by a later copy-up is walked to as usual. */
int ovl_lookup_in(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		  struct ovl_dirfds *d, struct ovl_node **out, struct stat *st)
{
	return lookup_retrying(fs, parent, name, d, out, st);
}

int ovl_lookup(struct ovl_fs *fs, struct ovl_node *parent, const char *name, struct ovl_node **out,
	       struct stat *st)
{
	return lookup_retrying(fs, parent, name, NULL, out, st);
}

void ovl_forget(struct ovl_fs *fs, struct ovl_node *node, uint64_t nlookup)
{
	ovl_node_unref(fs, node, nlookup, 0);
}
