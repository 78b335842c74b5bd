/*
 * rename and renameat2 (RENAME_NOREPLACE, RENAME_EXCHANGE). Non-directories are copied up
 * and renamed on upper. Directories always rename, as in gVisor: a merged or lower
 * directory is copied up with all its descendants, made opaque and renamed; a directory
 * already entirely in upper is just renamed. A whiteout is left where the source name
 * exists below. Runs with the rename lock held for writing: nothing else moves meanwhile.
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
		struct ovl_node *child;
		struct stat st;
		err = ovl_lookup_locked(fs, node, ents[i].name, &child, &st);
		if (!err) {
			err = copy_up_tree(fs, child);
			ovl_forget(fs, child, 1);
		}
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

/* After a directory moved, it and everything known below it live in upper only. */
static void make_subtree_upper(struct ovl_fs *fs, struct ovl_node *dir)
{
	pthread_mutex_lock(&fs->table_lock);
	for (size_t i = 0; i < fs->table_size; i++) {
		for (struct ovl_node *n = fs->table[i]; n; n = n->hnext) {
			if (!is_ancestor(dir, n))
				continue;
			pthread_spin_lock(&n->lock);
			n->top = 0;
			bool was_merged = n->type == S_IFDIR && n->ndirlayers > 1;
			if (n->type == S_IFDIR && n->ndirlayers > 0) {
				n->ndirlayers = 1;
				n->dirlayers[0].layer = 0;
				n->dirlayers[0].xwhiteouts = false;
				n->dirlayers[0].no_wh_files = false;
			}
			pthread_spin_unlock(&n->lock);
			/* No longer merged: its link count is the real one now. */
			if (was_merged && fs->attr_changed)
				fs->attr_changed(fs->attr_changed_ctx, n);
		}
	}
	pthread_mutex_unlock(&fs->table_lock);
}

/* Removes the whiteouts of an upper directory tree that no longer merges anything: below an
 * opaque directory they hide nothing. */
static int purge_tree_whiteouts(int fd0)
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
			err = fd < 0 ? -errno : purge_tree_whiteouts(fd);
		} else if (ovl_is_wh_name(de->d_name) && !ovl_is_wh_meta_name(de->d_name) &&
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
		err = fd < 0 ? -errno : purge_tree_whiteouts(fd);
	}
	close(pdfd);
	return err;
}

/* Removes the whiteouts inside an empty upper directory about to be replaced. */
static int purge_whiteouts(struct ovl_fs *fs, struct ovl_node *parent, const char *name)
{
	char path[OVL_PATH_MAX];
	int err = ovl_node_path(parent, path, sizeof(path));
	size_t len = strlen(path);

	if (err)
		return err;
	if (len + strlen(name) + 2 > sizeof(path))
		return -ENAMETOOLONG;
	path[len] = '/';
	strcpy(path + len + 1, name);
	int fd = ovl_layer_open(fs, 0, path, O_RDONLY | O_DIRECTORY);
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
	bool was_pure_upper;   /* a directory entirely in upper: its subtree needs no update */
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

static int check_target(struct ovl_fs *fs, struct side *src, struct side *dst, unsigned flags)
{
	bool sdir = S_ISDIR(src->f.st.st_mode), ddir = S_ISDIR(dst->f.st.st_mode);

	if (dst->f.top < 0)
		return flags & RENAME_EXCHANGE ? -ENOENT : 0;
	if (flags & RENAME_NOREPLACE)
		return -EEXIST;
	if (flags & RENAME_EXCHANGE)
		return 0;
	if (sdir && !ddir)
		return -ENOTDIR;
	if (!sdir && ddir)
		return -EISDIR;
	if (ddir)
		return ovl_check_empty(fs, dst->node);
	return 0;
}

static int do_rename(struct ovl_fs *fs, struct side *src, struct side *dst, unsigned flags)
{
	bool sdir = S_ISDIR(src->f.st.st_mode);
	int err, spfd = -1, dpfd = -1;

	err = ovl_copy_up_locked(fs, src->parent, false);
	if (!err)
		err = ovl_copy_up_locked(fs, dst->parent, false);
	if (!err)
		err = sdir ? prepare_dir(fs, src->node, dst->parent)
			   : ovl_copy_up_locked(fs, src->node, false);
	if (!err && (flags & RENAME_EXCHANGE))
		err = S_ISDIR(dst->f.st.st_mode) ? prepare_dir(fs, dst->node, src->parent)
						 : ovl_copy_up_locked(fs, dst->node, false);
	if (!err && !(flags & RENAME_EXCHANGE) && dst->f.top == 0 && S_ISDIR(dst->f.st.st_mode))
		err = purge_whiteouts(fs, dst->parent, dst->name);
	if (err)
		return err;
	spfd = ovl_open_in_layer(fs, src->parent, 0, O_PATH | O_DIRECTORY);
	dpfd = ovl_open_in_layer(fs, dst->parent, 0, O_PATH | O_DIRECTORY);
	if (spfd < 0 || dpfd < 0) {
		err = spfd < 0 ? spfd : dpfd;
	} else if (flags & RENAME_EXCHANGE) {
		if (renameat2(spfd, src->name, dpfd, dst->name, RENAME_EXCHANGE) < 0)
			err = -errno;
	} else if (dst->f.whiteout_in_upper) {
		/* Swap with the whiteout: it ends up at the source, where it belongs if the
		 * name exists below, and nothing hidden shows in between. */
		if (renameat2(spfd, src->name, dpfd, dst->name, RENAME_EXCHANGE) < 0)
			err = -errno;
		else if (!lower_has_name(fs, &src->f) && unlinkat(spfd, src->name, 0) < 0)
			err = -errno;
	} else {
		unsigned rflags = lower_has_name(fs, &src->f) ? RENAME_WHITEOUT : 0;
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
	if (spfd >= 0)
		close(spfd);
	if (dpfd >= 0)
		close(dpfd);
	return err;
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
	struct side src = {.parent = parent, .name = name};
	struct side dst = {.parent = newparent, .name = newname};
	struct stat st;
	int err;

	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE))
		return -EINVAL;
	if (fs->readonly)
		return -EROFS;
	if (strlen(newname) > (size_t)fs->namemax)
		return -ENAMETOOLONG;
	if (ovl_is_wh_name(newname))
		return -EINVAL;
	pthread_rwlock_wrlock(&fs->rename_lock);
	err = ovl_find(fs, parent, name, true, &src.f);
	if (!err && src.f.top < 0)
		err = -ENOENT;
	if (!err)
		err = ovl_find(fs, newparent, newname, true, &dst.f);
	if (err)
		goto out;
	if (parent == newparent && strcmp(name, newname) == 0)
		goto out;
	if (dst.f.top == src.f.top && dst.f.st.st_dev == src.f.st.st_dev &&
	    dst.f.st.st_ino == src.f.st.st_ino) {
		/* Two names of one file: POSIX says do nothing on disk. The kernel sees two
		 * inodes: it swaps their dentries on an exchange, which swapping the nodes
		 * follows; a plain rename the caller undoes (both_names_kept). */
		if (flags & RENAME_EXCHANGE) {
			err = ovl_lookup_locked(fs, parent, name, &src.node, &st);
			if (!err)
				err = ovl_lookup_locked(fs, newparent, newname, &dst.node, &st);
			if (!err) {
				ovl_node_move(fs, dst.node, parent, "/exchange");
				ovl_node_move(fs, src.node, newparent, newname);
				ovl_node_move(fs, dst.node, parent, name);
			}
		} else if (both_names_kept) {
			*both_names_kept = true;
		}
		goto out;
	}
	err = ovl_lookup_locked(fs, parent, name, &src.node, &st);
	if (!err && dst.f.top >= 0)
		err = ovl_lookup_locked(fs, newparent, newname, &dst.node, &st);
	if (err)
		goto out;
	if (is_ancestor(src.node, newparent) || (dst.node && is_ancestor(dst.node, parent))) {
		err = dst.node && is_ancestor(dst.node, parent) && !(flags & RENAME_EXCHANGE)
			  ? -ENOTEMPTY
			  : -EINVAL;
		goto out;
	}
	src.was_pure_upper = !S_ISDIR(src.f.st.st_mode) || pure_upper(fs, src.node);
	dst.was_pure_upper = !dst.node || !S_ISDIR(dst.f.st.st_mode) || pure_upper(fs, dst.node);
	err = check_target(fs, &src, &dst, flags);
	if (!err)
		err = rename_allowed(fs, &src, &dst);
	struct ovl_orphan *keep = NULL; /* the replaced object, for its open files */
	if (!err && dst.node && !(flags & RENAME_EXCHANGE))
		err = ovl_keep_orphan(fs, newparent, newname, &keep);
	if (!err)
		err = do_rename(fs, &src, &dst, flags);
	if (err) {
		ovl_orphan_free(keep);
		goto out;
	}
	if (flags & RENAME_EXCHANGE) {
		/* Move dst aside under a name no one can look up, then swap. */
		ovl_node_move(fs, dst.node, parent, "/exchange");
		ovl_node_move(fs, src.node, newparent, newname);
		ovl_node_move(fs, dst.node, parent, name);
	} else {
		if (dst.node) {
			/* Open files of the replaced object keep its last attributes. */
			ovl_node_detach(fs, dst.node, keep, &dst.f.st);
			keep = NULL;
		}
		ovl_node_move(fs, src.node, newparent, newname);
	}
	ovl_orphan_free(keep);
	if (!src.was_pure_upper)
		make_subtree_upper(fs, src.node);
	if ((flags & RENAME_EXCHANGE) && !dst.was_pure_upper)
		make_subtree_upper(fs, dst.node);
out:
	if (src.node)
		ovl_forget(fs, src.node, 1);
	if (dst.node)
		ovl_forget(fs, dst.node, 1);
	ovl_found_free(&src.f);
	ovl_found_free(&dst.f);
	pthread_rwlock_unlock(&fs->rename_lock);
	return err;
}
