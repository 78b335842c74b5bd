/* Attributes of a node as the mount shows them: the layer object's stat with the node's
 * inode number, a merged directory's link count, the owners as mapped; and its creation
 * time (statx). */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void ovl_fill_stat(struct ovl_fs *fs, struct ovl_node *node, struct stat *st)
{
	st->st_ino = node->ino;
	pthread_spin_lock(&node->lock);
	/* As the kernel: a merged directory has no meaningful link count. */
	if (S_ISDIR(st->st_mode) && node->ndirlayers > 1)
		st->st_nlink = 1;
	pthread_spin_unlock(&node->lock);
	ovl_owner_show(fs, node, st);
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
		} else if (atomic_load(&node->indexed)) {
			/* the group's other names still count, as the overlay counts them */
			st->st_nlink = ovl_index_nlink(fs, ovl_orphan_fd(node), NULL, st);
		}
		ovl_fill_stat(fs, node, st);
		return 0;
	}
	struct ovl_dircache_entry *lent;
	dfd = ovl_parent_borrow(fs, node, top, &name, &lent);
	if (dfd < 0)
		return dfd == -ENOENT || dfd == -ENOTDIR ? -ESTALE : dfd; /* gone meanwhile */
	if (fstatat(dfd, name, st, AT_SYMLINK_NOFOLLOW) < 0)
		err = errno == ENOENT ? -ESTALE : -errno;
	else if ((st->st_mode & S_IFMT) != node->type)
		err = node->unlinked ? -ENOENT : -ESTALE; /* removed or replaced meanwhile */
	else if (atomic_load(&node->indexed))
		st->st_nlink = ovl_index_nlink(fs, dfd, name, st);
	ovl_dir_return(fs, dfd, lent);
	if (!err && node->type == S_IFREG)
		ovl_metacopy_blocks(fs, node, st);
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
	int r = file && !atomic_load(&node->indexed) ? ovl_file_upper_fstat(file, st) : 0;
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
		struct ovl_dircache_entry *lent;
		dfd = ovl_parent_borrow(fs, node, ovl_node_top(node), &name, &lent);
		if (dfd < 0)
			return dfd == -ENOENT || dfd == -ENOTDIR ? -ESTALE
								 : dfd; /* gone meanwhile */
		if (statx(dfd, name, AT_SYMLINK_NOFOLLOW, STATX_BTIME, &sx) < 0)
			err = errno == ENOENT ? -ESTALE : -errno;
		ovl_dir_return(fs, dfd, lent);
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
