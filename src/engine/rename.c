/*
 * rename and renameat2 (RENAME_NOREPLACE, RENAME_EXCHANGE). Non-directories are copied up
 * and renamed on upper. Directories always rename. With redirect_dir=on (the front end's
 * default), as the kernel's: a merged or lower directory is copied up alone, given an
 * overlay.redirect naming where its lower layers hold it, and renamed; it stays merged.
 * Otherwise (redirect_dir=off, a redirect too long), as in gVisor: it is
 * copied up with all its descendants, made opaque and renamed. A directory already
 * entirely in upper is just renamed. A whiteout is left where the source name exists
 * below. Runs with the rename lock held for writing: nothing else moves meanwhile.
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Copies up a directory and everything visible below it. */
static int copy_up_tree(struct ovl_fs *fs, struct ovl_node *node)
{
	struct ovl_dirent *ents = NULL;
	size_t count = 0;
	int err = ovl_copy_up_locked(fs, node, false);

	if (err || node->type != S_IFDIR)
		return err;
	err = ovl_merge_dir(fs, node, &ents, &count, NULL);
	for (size_t i = 0; !err && i < count; i++) {
		struct ovl_node *child = NULL;
		struct stat st;
		err = ovl_lookup_locked(fs, node, ents[i].name, &child, &st);
		if (err)
			break;
		/* A hard link's node may keep another of its names: this one goes up too. */
		bool other_name = child->type != S_IFDIR &&
				  (child->parent != node || strcmp(child->name, ents[i].name) != 0);
		err = other_name ? ovl_index_prepare_locked(fs, node, ents[i].name)
				 : copy_up_tree(fs, child);
		ovl_forget(fs, child, 1);
	}
	ovl_dirents_free(ents, count);
	return err;
}

/* A directory that lives in upper alone needs no copy-up: the fast path. */
static bool pure_upper(struct ovl_fs *fs, struct ovl_node *node)
{
	pthread_spin_lock(&node->lock);
	bool pure = fs->has_upper && node->top == 0 && node->ndirlayers == 1;
	pthread_spin_unlock(&node->lock);
	return pure;
}

static bool is_merged(struct ovl_node *dir)
{
	pthread_spin_lock(&dir->lock);
	bool merged = dir->ndirlayers > 1;
	pthread_spin_unlock(&dir->lock);
	return merged;
}

static bool is_ancestor(struct ovl_node *anc, struct ovl_node *node)
{
	for (; node; node = node->parent)
		if (node == anc)
			return true;
	return false;
}

struct subtree {
	struct ovl_fs *fs;
	struct ovl_node *dir;
};

static void node_now_upper_only(struct ovl_hlink *link, void *arg)
{
	struct ovl_node *n = ovl_entry_of(link, struct ovl_node, hlink);
	struct subtree *t = arg;

	if (!is_ancestor(t->dir, n))
		return;
	char *paths[OVL_MAX_LAYERS]; /* the dropped layers' redirected paths, freed after */
	int npaths = 0;
	pthread_spin_lock(&n->lock);
	n->top = 0;
	bool was_merged = n->type == S_IFDIR && n->ndirlayers > 1;
	if (n->type == S_IFDIR && n->ndirlayers > 0) {
		for (int i = 0; i < n->ndirlayers && npaths < OVL_MAX_LAYERS; i++)
			if (n->dirlayers[i].path)
				paths[npaths++] = n->dirlayers[i].path;
		n->ndirlayers = 1;
		n->dirlayers[0].layer = 0;
		n->dirlayers[0].path = NULL;
		n->dirlayers[0].xwhiteouts = false;
		n->dirlayers[0].no_wh_files = false;
	}
	pthread_spin_unlock(&n->lock);
	if (n->type == S_IFDIR) /* its copy in upper replaces what it had there */
		ovl_dircache_invalidate(t->fs);
	for (int i = 0; i < npaths; i++)
		free(paths[i]);
	/* No longer merged: its link count is the real one now. */
	if (was_merged && t->fs->attr_changed)
		t->fs->attr_changed(t->fs->attr_changed_ctx, n);
}

/* After a directory moved, it and everything known below it live in upper only. */
static void make_subtree_upper(struct ovl_fs *fs, struct ovl_node *dir)
{
	struct subtree t = {fs, dir};

	pthread_mutex_lock(&fs->table_lock);
	ovl_htab_each(&fs->table, node_now_upper_only, &t);
	pthread_mutex_unlock(&fs->table_lock);
}

/* Removes the whiteouts of an upper directory tree that no longer merges anything: below an
 * opaque directory they hide nothing. */
static int purge_tree_whiteouts(const struct ovl_fs *fs, int fd0)
{
	DIR *d = fdopendir(fd0);
	struct dirent *de;
	struct stat dst;
	bool removed = false;
	int err = 0;

	if (!d) {
		close(fd0);
		return -errno;
	}
	if (fstat(fd0, &dst) < 0)
		err = -errno;
	while (!err && (de = readdir(d))) {
		struct stat st;
		if (de->d_type == DT_DIR && strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			int fd = openat(dirfd(d), de->d_name,
					O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			err = fd < 0 ? -errno : purge_tree_whiteouts(fs, fd);
		} else if (ovl_oci_name(fs, de->d_name) && !ovl_is_wh_meta_name(de->d_name) &&
			   de->d_type != DT_DIR) {
			/* An OCI whiteout (.wh..wh..opq and the like mark the directory). */
			if (unlinkat(dirfd(d), de->d_name, 0) < 0)
				err = -errno;
			removed = true;
		} else if (de->d_type == DT_CHR &&
			   fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			   ovl_is_whiteout_stat(&st)) {
			if (unlinkat(dirfd(d), de->d_name, 0) < 0)
				err = -errno;
			removed = true;
		}
	}
	/* The directory's times are the user's: the purge is ours. */
	if (removed) {
		struct timespec ts[2] = {dst.st_atim, dst.st_mtim};
		if (futimens(dirfd(d), ts) < 0 && !err)
			err = -errno;
	}
	closedir(d);
	return err;
}

/* Prepares a directory to move: everything in upper; opaque where lower layers could show
 * through at its new place. */
static int prepare_dir(struct ovl_fs *fs, struct ovl_node *dir, struct ovl_node *newparent)
{
	const char *name;
	int err = 0, pdfd;
	bool opaque;

	if (pure_upper(fs, dir)) {
		opaque = is_merged(newparent);
	} else {
		err = copy_up_tree(fs, dir);
		opaque = true;
	}
	if (err || !opaque)
		return err;
	pdfd = ovl_open_parent(fs, dir, 0, &name);
	if (pdfd < 0)
		return pdfd;
	err = ovl_set_opaque(fs, pdfd, name);
	if (!err && !pure_upper(fs, dir)) {
		int fd = openat(pdfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		err = fd < 0 ? -errno : purge_tree_whiteouts(fs, fd);
	}
	close(pdfd);
	return err;
}

/* Removes the whiteouts inside an empty upper directory about to be replaced. */
static int purge_whiteouts(struct ovl_fs *fs, struct ovl_node *parent, const char *name)
{
	int fd = ovl_open_child_in_layer(fs, parent, name, 0, O_RDONLY | O_DIRECTORY);
	int err;

	if (fd < 0)
		return fd;
	err = ovl_remove_tree_at(fd, ".");
	close(fd);
	return err;
}

/* Whether a lower layer holds the name, so that moving it away needs a whiteout. */
static bool lower_has_name(struct ovl_fs *fs, const struct ovl_found *f)
{
	return f->below || !fs->layers[f->top].is_upper;
}

struct side {
	struct ovl_node *parent;
	const char *name;
	struct ovl_found f;
	struct ovl_node *node; /* looked up for the rename, forgotten after */
	bool below;	       /* the name exists below: moving it away leaves a whiteout */
	/* redirect_dir=on: this directory moves with a redirect (plan_redirect). */
	bool redirect;
	char *redirect_value; /* to write; NULL: the one it has stays valid */
	struct old_path {
		int layer;
		char *path; /* its path there before the move; after it, what it replaced */
	} * old;
	int nold;
	bool was_pure_upper; /* a directory entirely in upper: its subtree needs no update */
};

/* The kernel's may_delete and may_create rules: no immutable or append-only object moves
 * or is replaced, none leaves such a directory, none enters an immutable one, and only a
 * new name enters an append-only one. Preconditions: the rename lock written. */
static int rename_allowed(struct ovl_fs *fs, struct side *src, struct side *dst)
{
	int prot = ovl_node_prot(fs, src->parent);

	if (!prot)
		prot = ovl_found_prot(fs, src->parent, src->name, &src->f);
	if (!prot) {
		prot = ovl_node_prot(fs, dst->parent);
		if (prot > 0 && dst->f.top < 0)
			prot &= OVL_PROT_IMMUTABLE;
	}
	if (!prot)
		prot = ovl_found_prot(fs, dst->parent, dst->name, &dst->f);
	return prot > 0 ? -EPERM : prot;
}

/* One rename, both sides of it, through its phases: find, look up, check, apply. */
struct rename_ctx {
	struct ovl_fs *fs;
	struct side src, dst;
	unsigned flags;
	struct ovl_orphan *keep; /* the replaced object, for its open files */
	bool *both_names_kept;
};

/* What can be refused before anything is looked at. */
static int check_request(struct ovl_fs *fs, const char *newname, unsigned flags)
{
	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE))
		return -EINVAL;
	if (fs->readonly)
		return -EROFS;
	if (strlen(newname) > (size_t)fs->namemax)
		return -ENAMETOOLONG;
	if (ovl_oci_name(fs, newname))
		return -EINVAL;
	return 0;
}

/* Both names as the layers have them: the source must exist. */
static int find_sides(struct rename_ctx *r)
{
	int err = ovl_find(r->fs, r->src.parent, r->src.name, OVL_FIND_BELOW, &r->src.f);

	if (!err && r->src.f.top < 0)
		err = -ENOENT;
	if (!err)
		err = ovl_find(r->fs, r->dst.parent, r->dst.name, OVL_FIND_BELOW, &r->dst.f);
	return err;
}

static bool same_name(const struct rename_ctx *r)
{
	return r->src.parent == r->dst.parent && strcmp(r->src.name, r->dst.name) == 0;
}

static bool same_object(const struct rename_ctx *r)
{
	return r->dst.f.top == r->src.f.top && r->dst.f.st.st_dev == r->src.f.st.st_dev &&
	       r->dst.f.st.st_ino == r->src.f.st.st_ino;
}

/* The nodes of both names (the target's if it exists). */
static int lookup_sides(struct rename_ctx *r)
{
	struct stat st;
	int err = ovl_lookup_locked(r->fs, r->src.parent, r->src.name, &r->src.node, &st);

	if (!err && r->dst.f.top >= 0)
		err = ovl_lookup_locked(r->fs, r->dst.parent, r->dst.name, &r->dst.node, &st);
	return err;
}

/* An exchange in the node table: dst goes aside under a name no one can look up, then the
 * two swap. */
static void exchange_nodes(struct rename_ctx *r)
{
	struct side *s = &r->src, *d = &r->dst;

	if (s->node == d->node) /* two names of one node: the same names remain */
		return;
	ovl_name_moved(r->fs, d->node, d->parent, d->name, s->parent, "/exchange");
	ovl_name_moved(r->fs, s->node, s->parent, s->name, d->parent, d->name);
	ovl_name_moved(r->fs, d->node, s->parent, "/exchange", s->parent, s->name);
}

/* Two names of one file: POSIX says do nothing on disk. The kernel sees two inodes: it
 * swaps their dentries on an exchange, which swapping the nodes follows; a plain rename
 * the caller undoes (both_names_kept). */
static int rename_links_of_one_file(struct rename_ctx *r)
{
	int err = 0;

	if (r->flags & RENAME_EXCHANGE) {
		err = lookup_sides(r);
		if (!err)
			exchange_nodes(r);
	} else if (r->both_names_kept) {
		*r->both_names_kept = true;
	}
	return err;
}

static int check_target(struct rename_ctx *r)
{
	struct side *src = &r->src, *dst = &r->dst;
	bool sdir = S_ISDIR(src->f.st.st_mode), ddir = S_ISDIR(dst->f.st.st_mode);

	if (dst->f.top < 0)
		return r->flags & RENAME_EXCHANGE ? -ENOENT : 0;
	if (r->flags & RENAME_NOREPLACE)
		return -EEXIST;
	if (r->flags & RENAME_EXCHANGE)
		return 0;
	if (sdir && !ddir)
		return -ENOTDIR;
	if (!sdir && ddir)
		return -EISDIR;
	if (ddir)
		return ovl_check_empty(r->fs, dst->node);
	return 0;
}

/* Whether the rename may go ahead, before anything changes on disk; keeps the replaced
 * object for its open files. */
static int check_rename(struct rename_ctx *r)
{
	struct side *src = &r->src, *dst = &r->dst;
	int err;

	if (is_ancestor(src->node, dst->parent) ||
	    (dst->node && is_ancestor(dst->node, src->parent)))
		return dst->node && is_ancestor(dst->node, src->parent) &&
			       !(r->flags & RENAME_EXCHANGE)
			   ? -ENOTEMPTY
			   : -EINVAL;
	src->was_pure_upper = !S_ISDIR(src->f.st.st_mode) || pure_upper(r->fs, src->node);
	dst->was_pure_upper =
	    !dst->node || !S_ISDIR(dst->f.st.st_mode) || pure_upper(r->fs, dst->node);
	err = check_target(r);
	if (!err)
		err = rename_allowed(r->fs, src, dst);
	if (!err && dst->node && !(r->flags & RENAME_EXCHANGE))
		err = ovl_keep_orphan(r->fs, dst->parent, dst->name, &r->keep);
	return err;
}

/* The overlay.redirect a moved directory needs, as the kernel computes it: kept if it has
 * one that stays valid (absolute, or relative and the directory stays in its parent);
 * else its old name within one parent, its absolute path below ("/a/b") into another.
 * Also notes the directory's path in each lower layer, which the node takes after the
 * move. No plan (s->redirect false) where the kernel would copy the directory up whole:
 * an absolute redirect longer than OVL_REDIRECT_MAX. Preconditions: the rename lock
 * written. */
static int plan_redirect(struct rename_ctx *r, struct side *s)
{
	struct ovl_fs *fs = r->fs;
	struct ovl_node *node = s->node;
	bool samedir = r->src.parent == r->dst.parent, upper;
	char buf[PATH_MAX + 1];
	int layers[OVL_MAX_LAYERS], nl = 0, n = 0, err = 0;

	/* OCI layers (whiteout=file) are for tools that know no redirect, and the kernel
	 * refuses redirects with userxattr (a mount of such layers would answer EPERM for
	 * the moved directory): both rename by copying, as with redirect_dir=off. */
	if (!fs->redirect_write || fs->file_whiteouts || fs->userxattr || !node ||
	    !S_ISDIR(s->f.st.st_mode) || s->was_pure_upper)
		return 0;
	pthread_spin_lock(&node->lock);
	upper = fs->layers[node->top].is_upper;
	for (int i = 0; i < node->ndirlayers && nl < OVL_MAX_LAYERS; i++)
		if (!fs->layers[node->dirlayers[i].layer].is_upper)
			layers[nl++] = node->dirlayers[i].layer;
	pthread_spin_unlock(&node->lock);
	if (nl == 0)
		return 0;
	if (upper) {
		int pfd = ovl_open_in_layer(fs, s->parent, 0, O_PATH | O_DIRECTORY);
		n = pfd < 0 ? pfd : ovl_get_redirect_raw(fs, pfd, s->name, buf, sizeof(buf));
		if (pfd >= 0)
			close(pfd);
		if (n < 0 && n != -ERANGE && n != -EINVAL)
			return n;
		n = n < 0 ? 0 : n; /* one ovlfs cannot read is replaced */
	}
	if (n > 0 && (samedir || buf[0] == '/')) {
		s->redirect_value = NULL;
	} else if (samedir) {
		s->redirect_value = strdup(s->name);
		if (!s->redirect_value)
			return -ENOMEM;
	} else {
		buf[0] = '/';
		err = ovl_node_layer_path(fs, node, layers[0], buf + 1, sizeof(buf) - 1);
		if (err == -ENAMETOOLONG || (!err && strlen(buf) > OVL_REDIRECT_MAX))
			return 0;
		if (err)
			return err;
		s->redirect_value = strdup(buf);
		if (!s->redirect_value)
			return -ENOMEM;
	}
	s->old = calloc((size_t)nl, sizeof(*s->old));
	err = s->old ? 0 : -ENOMEM;
	for (int i = 0; i < nl && !err; i++) {
		err = ovl_node_layer_path(fs, node, layers[i], buf, sizeof(buf));
		s->old[i].layer = layers[i];
		s->old[i].path = err ? NULL : strdup(buf);
		if (!err && !s->old[i].path)
			err = -ENOMEM;
		s->nold = i + 1;
	}
	if (err == -ENAMETOOLONG)
		err = 0; /* copied instead */
	else if (!err)
		s->redirect = true;
	return err;
}

/* A directory alone goes up, and its redirect on it; where that cannot be written, as the
 * kernel falls back on EXDEV, it is copied up whole instead. */
static int prepare_redirected(struct ovl_fs *fs, struct side *s, struct ovl_node *newparent)
{
	int err = ovl_copy_up_locked(fs, s->node, false);

	if (!err && s->redirect_value) {
		int pfd = ovl_open_in_layer(fs, s->parent, 0, O_PATH | O_DIRECTORY);
		int w = pfd < 0 ? pfd : ovl_write_redirect(fs, pfd, s->name, s->redirect_value);
		if (pfd >= 0)
			close(pfd);
		if (w) {
			ovl_warn(fs, "cannot set the redirect of %s (%s): copying it up whole",
				 s->name, strerror(-w));
			s->redirect = false;
			err = prepare_dir(fs, s->node, newparent);
		}
	}
	return err;
}

/* Whether the side's name is its node's own (not another name of a hard-linked file, which
 * is upper, or linked up by ovl_index_prepare_locked). */
static bool own_name(const struct side *s)
{
	return s->node->parent == s->parent && strcmp(s->node->name, s->name) == 0;
}

/* Everything the rename moves goes to upper first: the parents, the source (a directory
 * with all it holds), and on an exchange the target. */
static int copy_up_sides(struct rename_ctx *r)
{
	struct ovl_fs *fs = r->fs;
	struct side *src = &r->src, *dst = &r->dst;
	bool sdir = S_ISDIR(src->f.st.st_mode), same = src->parent == dst->parent;
	int err;

	err = ovl_copy_up_locked(fs, src->parent, false);
	if (!err)
		err = ovl_copy_up_locked(fs, dst->parent, false);
	if (!err && src->redirect)
		err = prepare_redirected(fs, src, dst->parent);
	else if (!err && sdir)
		err = prepare_dir(fs, src->node, dst->parent);
	else if (!err) /* this name, which may be a lower one of a hard-link group */
		err = ovl_index_prepare_locked(fs, src->parent, src->name);
	if (!err && !sdir && !src->redirect && own_name(src))
		err = ovl_copy_up_for_move_locked(fs, src->node, src->name, same);
	/* A non-directory replaced or exchanged: its group counts names on upper. */
	if (!err && dst->f.top >= 0 && !S_ISDIR(dst->f.st.st_mode))
		err = ovl_index_prepare_locked(fs, dst->parent, dst->name);
	if (!err && (r->flags & RENAME_EXCHANGE) && dst->redirect)
		err = prepare_redirected(fs, dst, src->parent);
	else if (!err && (r->flags & RENAME_EXCHANGE) && S_ISDIR(dst->f.st.st_mode))
		err = prepare_dir(fs, dst->node, src->parent);
	else if (!err && (r->flags & RENAME_EXCHANGE) && own_name(dst))
		err = ovl_copy_up_for_move_locked(fs, dst->node, dst->name, same);
	if (!err && !(r->flags & RENAME_EXCHANGE) && dst->f.top == 0 && S_ISDIR(dst->f.st.st_mode))
		err = purge_whiteouts(fs, dst->parent, dst->name);
	return err;
}

/* The rename itself, on upper, with the whiteout the source name needs. */
static int rename_on_upper(struct rename_ctx *r)
{
	struct ovl_fs *fs = r->fs;
	struct side *src = &r->src, *dst = &r->dst;
	int err = 0, spfd, dpfd;

	spfd = ovl_open_in_layer(fs, src->parent, 0, O_PATH | O_DIRECTORY);
	dpfd = ovl_open_in_layer(fs, dst->parent, 0, O_PATH | O_DIRECTORY);
	if (spfd < 0 || dpfd < 0) {
		err = spfd < 0 ? spfd : dpfd;
	} else if (r->flags & RENAME_EXCHANGE) {
		if (renameat2(spfd, src->name, dpfd, dst->name, RENAME_EXCHANGE) < 0)
			err = -errno;
	} else if (dst->f.whiteout_in_upper) {
		/* Swap with the whiteout: it ends up at the source, where it belongs if the
		 * name exists below, and nothing hidden shows in between. */
		if (renameat2(spfd, src->name, dpfd, dst->name, RENAME_EXCHANGE) < 0)
			err = -errno;
		else if (!src->below && unlinkat(spfd, src->name, 0) < 0)
			err = -errno;
	} else {
		unsigned rflags = src->below ? RENAME_WHITEOUT : 0;
		/* A .wh. file can be made first: until the source goes, its name wins. */
		if (rflags && fs->file_whiteouts) {
			err = ovl_make_whiteout(fs, spfd, src->name, false);
			rflags = 0;
		}
		if (!err && renameat2(spfd, src->name, dpfd, dst->name, rflags) < 0)
			err = -errno;
		if (!err && dst->f.whfile_in_upper)
			ovl_drop_wh_file(dpfd, dst->name);
	}
	if (!err)
		err = ovl_mark_impure_for(fs, dpfd, dst->name);
	if (!err && (r->flags & RENAME_EXCHANGE))
		err = ovl_mark_impure_for(fs, spfd, src->name);
	if (spfd >= 0)
		close(spfd);
	if (dpfd >= 0)
		close(dpfd);
	return err;
}

/* A redirected directory finds its lower layers at its old paths there (its descendants
 * by way of it); the paths it had go to s->old, freed with it. Preconditions: the rename
 * lock written. */
static void keep_lower_paths(struct ovl_fs *fs, struct side *s)
{
	struct ovl_node *n = s->node;

	if (!s->redirect)
		return;
	ovl_redirects_seen(fs); /* before any walk goes by the paths */
	pthread_spin_lock(&n->lock);
	for (int i = 0; i < n->ndirlayers; i++) {
		for (int j = 0; j < s->nold; j++) {
			if (n->dirlayers[i].layer != s->old[j].layer)
				continue;
			char *p = n->dirlayers[i].path;
			n->dirlayers[i].path = s->old[j].path;
			s->old[j].path = p;
		}
	}
	pthread_spin_unlock(&n->lock);
}

static void side_free(struct side *s)
{
	free(s->redirect_value);
	for (int i = 0; i < s->nold; i++)
		free(s->old[i].path);
	free(s->old);
}

/* The node table follows what happened on disk. */
static void update_nodes(struct rename_ctx *r)
{
	keep_lower_paths(r->fs, &r->src);
	keep_lower_paths(r->fs, &r->dst);
	if (r->flags & RENAME_EXCHANGE) {
		exchange_nodes(r);
	} else {
		if (r->dst.node) {
			/* Open files of the replaced object keep its last attributes. */
			ovl_name_removed(r->fs, r->dst.node, r->dst.parent, r->dst.name, r->keep,
					 &r->dst.f.st, true);
			r->keep = NULL;
		}
		ovl_name_moved(r->fs, r->src.node, r->src.parent, r->src.name, r->dst.parent,
			       r->dst.name);
	}
	if (!r->src.was_pure_upper && !r->src.redirect)
		make_subtree_upper(r->fs, r->src.node);
	if ((r->flags & RENAME_EXCHANGE) && !r->dst.was_pure_upper && !r->dst.redirect)
		make_subtree_upper(r->fs, r->dst.node);
}

/* Whether the rename replaces an upper name of an indexed hard-link group (hex). */
static bool replaces_indexed(struct rename_ctx *r, char hex[OVL_INDEX_NAME_MAX])
{
	if (r->fs->index_layer < 0 || r->dst.f.top < 0 || S_ISDIR(r->dst.f.st.st_mode))
		return false;
	int dfd = ovl_open_in_layer(r->fs, r->dst.parent, 0, O_PATH | O_DIRECTORY);
	if (dfd < 0)
		return false;
	bool indexed = ovl_index_entry_of(r->fs, dfd, r->dst.name, hex);
	close(dfd);
	return indexed;
}

static int apply_rename(struct rename_ctx *r)
{
	struct side *src = &r->src;
	int err = 0;

	src->below = lower_has_name(r->fs, &src->f);
	err = ovl_name_below(r->fs, src->parent, src->name, &src->f, &src->below);
	if (!err)
		err = plan_redirect(r, src);
	if (!err && (r->flags & RENAME_EXCHANGE))
		err = plan_redirect(r, &r->dst);
	if (!err)
		err = copy_up_sides(r);
	char hex[OVL_INDEX_NAME_MAX];
	bool indexed = !err && !(r->flags & RENAME_EXCHANGE) && replaces_indexed(r, hex);
	if (!err)
		err = rename_on_upper(r);
	if (!err && indexed)
		ovl_index_name_removed(r->fs, hex);
	if (!err)
		update_nodes(r);
	return err;
}

static void rename_finish(struct rename_ctx *r)
{
	ovl_orphan_free(r->keep);
	side_free(&r->src);
	side_free(&r->dst);
	if (r->src.node)
		ovl_forget(r->fs, r->src.node, 1);
	if (r->dst.node)
		ovl_forget(r->fs, r->dst.node, 1);
	ovl_found_free(&r->src.f);
	ovl_found_free(&r->dst.f);
}

int ovl_rename(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
	       struct ovl_node *newparent, const char *newname, unsigned flags)
{
	return ovl_rename2(fs, parent, name, newparent, newname, flags, NULL);
}

int ovl_rename2(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		struct ovl_node *newparent, const char *newname, unsigned flags,
		bool *both_names_kept)
{
	struct rename_ctx r = {.fs = fs,
			       .src = {.parent = parent, .name = name},
			       .dst = {.parent = newparent, .name = newname},
			       .flags = flags,
			       .both_names_kept = both_names_kept};
	int err = check_request(fs, newname, flags);

	if (err)
		return err;
	pthread_rwlock_wrlock(&fs->rename_lock);
	/* Paths of directories move (and redirects and whole copied-up trees change what
	 * they name): no walk runs meanwhile, none starts from an fd cached before. */
	ovl_dircache_invalidate(fs);
	err = find_sides(&r);
	if (!err && !same_name(&r)) {
		if (same_object(&r)) {
			err = rename_links_of_one_file(&r);
		} else {
			err = lookup_sides(&r);
			if (!err)
				err = check_rename(&r);
			if (!err)
				err = apply_rename(&r);
		}
	}
	rename_finish(&r);
	ovl_dircache_invalidate(fs); /* and none opened during the rename is used after it */
	pthread_rwlock_unlock(&fs->rename_lock);
	return err;
}
