/* Copy-up: the first change to a lower object copies it to the upper layer, parents first.
 * The copy is built in the work directory and renamed into place, so that at any moment
 * either the lower object or the complete copy is visible, never a partial one. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/xattr.h>
#include <unistd.h>

static int copy_range_rw(int in, int out, off_t off, off_t end)
{
	static const size_t bufsize = 1 << 20;
	char *buf = malloc(bufsize);
	int err = 0;

	if (!buf)
		return -ENOMEM;
	while (off < end) {
		size_t want = (size_t)(end - off) < bufsize ? (size_t)(end - off) : bufsize;
		ssize_t n = pread(in, buf, want, off);
		if (n < 0) {
			err = -errno;
			break;
		}
		if (n == 0)
			break;
		for (ssize_t done = 0; done < n;) {
			ssize_t w = pwrite(out, buf + done, (size_t)(n - done), off + done);
			if (w < 0) {
				err = -errno;
				break;
			}
			done += w;
		}
		if (err)
			break;
		off += n;
	}
	free(buf);
	return err;
}

static int copy_range(int in, int out, off_t off, off_t end)
{
	while (off < end) {
		loff_t ioff = off, ooff = off;
		ssize_t n = copy_file_range(in, &ioff, out, &ooff, (size_t)(end - off), 0);
		if (n < 0) {
			if (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
			    errno == EOPNOTSUPP)
				return copy_range_rw(in, out, off, end);
			return -errno;
		}
		if (n == 0)
			break; /* the source shrank underneath us */
		off += n;
	}
	return 0;
}

/* Data: a reflink where the filesystem has one, else the data extents only, so that
 * holes stay holes. */
int ovl_copy_data(int in, int out, const struct stat *st)
{
	off_t size = st->st_size;
	static atomic_bool no_reflink; /* learnt once: most filesystems here have none */
	off_t off = 0;

	if (size == 0)
		return 0;
	if (!atomic_load(&no_reflink)) {
		if (ioctl(out, FICLONE, in) == 0)
			return 0;
		if (errno == EOPNOTSUPP || errno == ENOTTY || errno == EINVAL)
			atomic_store(&no_reflink, true);
	}
	/* As many blocks as bytes: no holes to keep, no need to look for them. */
	if ((off_t)st->st_blocks * 512 >= size)
		return copy_range(in, out, 0, size);
	while (off < size) {
		off_t data = lseek(in, off, SEEK_DATA);
		if (data < 0) {
			if (errno == ENXIO)
				break;
			return copy_range(in, out, off, size); /* no SEEK_DATA here */
		}
		off_t hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0)
			hole = size;
		int err = copy_range(in, out, data, hole);
		if (err)
			return err;
		off = hole;
	}
	return ftruncate(out, size) < 0 ? -errno : 0;
}

/* Copies every xattr but the overlay's own markers from src (a /proc fd path) to dst (a path
 * whose last component is not followed). */
int ovl_copy_xattrs(struct ovl_fs *fs, const char *src, const char *dst)
{
	ssize_t len = listxattr(src, NULL, 0);
	char *names, *value = NULL;
	int err = 0;

	if (len <= 0)
		return len < 0 && errno != ENOTSUP ? -errno : 0;
	names = malloc((size_t)len);
	if (!names)
		return -ENOMEM;
	len = listxattr(src, names, (size_t)len);
	if (len < 0)
		err = -errno;
	for (char *n = names; !err && n < names + len; n += strlen(n) + 1) {
		if (ovl_is_private_xattr(n, fs->userxattr))
			continue;
		ssize_t vlen = getxattr(src, n, NULL, 0);
		if (vlen < 0) {
			err = errno == ENODATA ? 0 : -errno;
			continue;
		}
		char *nv = realloc(value, (size_t)vlen + 1);
		if (!nv) {
			err = -ENOMEM;
			break;
		}
		value = nv;
		vlen = getxattr(src, n, value, (size_t)vlen);
		if (vlen < 0) {
			/* Removed meanwhile: the source changed under us. */
			err = errno == ENODATA ? 0 : -errno;
			if (err)
				break;
			continue;
		}
		if (lsetxattr(dst, n, value, (size_t)vlen, 0) < 0) {
			/* As the kernel: a name the upper filesystem does not support is
			 * dropped, unless it carries permissions. */
			if (errno == ENOTSUP && strncmp(n, "system.posix_acl", 16) != 0 &&
			    strncmp(n, "security.", 9) != 0)
				continue;
			err = -errno;
		}
	}
	free(value);
	free(names);
	return err;
}

/* A directory's file attributes (the flag ioctls need fds opened for reading). */
static int copy_dir_fileattr(struct ovl_fs *fs, int sdfd, const char *name, const char *tmp)
{
	const int how = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
	int sfd = openat(sdfd, name, how), dfd, err;

	if (sfd < 0)
		return -errno;
	dfd = openat(fs->work_fd, tmp, how);
	err = dfd < 0 ? -errno : ovl_copy_fileattr(fs, sfd, dfd);
	if (dfd >= 0)
		close(dfd);
	close(sfd);
	return err;
}

/* One copy-up in progress: the source, the copy being built in the work directory, and
 * the upper parent it moves into. */
struct copy_up {
	struct ovl_fs *fs;
	struct ovl_node *node;
	bool truncate; /* the data is about to be cut to nothing: not copied */
	/* metacopy=on, a metadata change: a sparse stub marked overlay.metacopy, the data left
	 * below at data_path in layer (NULL: the source's own data path, a metacopy file). */
	bool meta_only;
	/* The node stands in for another name of a hard-link group's node (copy_up_name). */
	bool stand_in;
	char *data_path;
	int layer; /* where the object is now */
	const char *name;
	int src_dirfd; /* the object's parent in layer */
	int src_fd;    /* the object: O_RDONLY for a regular file, else O_PATH */
	struct stat st;
	char tmp[64]; /* the copy's name in the work directory */
	int tmp_fd;   /* the copy of a regular file, for its data */
	int upper_dirfd;
	struct stat parent_st; /* the upper parent's, whose times the move must not change */
	struct stat upper_st;  /* the copy's */
};

static void discard_temp(struct copy_up *c)
{
	if (S_ISDIR(c->st.st_mode))
		(void)ovl_remove_tree_at(c->fs->work_fd, c->tmp);
	else
		(void)unlinkat(c->fs->work_fd, c->tmp, 0);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* The object to copy, as it is now in its layer. */
static int open_source(struct copy_up *c)
{
	int err = ovl_tmpname(c->fs, c->tmp, sizeof(c->tmp));

	if (err)
		return err;
	c->src_dirfd = ovl_open_parent(c->fs, c->node, c->layer, &c->name);
	if (c->src_dirfd < 0)
		return c->src_dirfd;
	if (fstatat(c->src_dirfd, c->name, &c->st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? -ESTALE : -errno;
	/* Replaced by another type under the mount (a directory by a file or a symlink):
	 * copying it would put that object where the kernel knows the old one. ENOENT, not
	 * ESTALE: the kernel must not walk the stale path again through a new symlink. */
	if ((c->st.st_mode & S_IFMT) != c->node->type)
		return -ENOENT;
	return 0;
}

/* The copy's object in the work directory, of the source's type, and the source's fd. */
static int create_temp(struct copy_up *c)
{
	struct ovl_fs *fs = c->fs;
	int sdfd = c->src_dirfd;
	const char *name = c->name;

	switch (c->st.st_mode & S_IFMT) {
	case S_IFREG:
		/* Reading the data leaves the lower file's atime as it was, as in the kernel. */
		c->src_fd = ovl_openat_noatime(fs, sdfd, name,
					       O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (c->src_fd < 0)
			return c->src_fd;
		c->tmp_fd =
		    openat(fs->work_fd, c->tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
		return c->tmp_fd < 0 ? -errno : 0;
	case S_IFDIR:
		if (mkdirat(fs->work_fd, c->tmp, 0700) < 0)
			return -errno;
		c->src_fd = openat(sdfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		break;
	case S_IFLNK: {
		char target[PATH_MAX + 1];
		ssize_t n = readlinkat(sdfd, name, target, PATH_MAX);
		if (n < 0)
			return -errno;
		target[n] = '\0';
		if (symlinkat(target, fs->work_fd, c->tmp) < 0)
			return -errno;
		c->src_fd = openat(sdfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		break;
	}
	default:
		if (mknodat(fs->work_fd, c->tmp, (c->st.st_mode & S_IFMT) | 0600, c->st.st_rdev) <
		    0)
			return -errno;
		c->src_fd = openat(sdfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		break;
	}
	return c->src_fd < 0 ? -errno : 0;
}

static int copy_temp_data(struct copy_up *c)
{
	struct stat dst;

	if (c->tmp_fd < 0 || c->truncate)
		return 0;
	/* A lower metacopy file (a composefs stub): its data is the data file's (a stub's
	 * record needs it only for its digest). */
	int dfd = -ENODATA;
	if (!c->meta_only || c->fs->verity != OVL_VERITY_OFF)
		dfd = ovl_node_data_open(c->fs, c->node, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
	if (dfd < 0 && dfd != -ENODATA)
		return dfd;
	if (c->meta_only) {
		unsigned char rec[OVL_METACOPY_MAX];
		int n = ovl_metacopy_record(c->fs, dfd >= 0 ? dfd : c->src_fd, rec);
		if (n == -ENODATA) {
			/* verity=require, no fs-verity on the data: a full copy, as the kernel. */
			c->meta_only = false;
			free(c->data_path);
			c->data_path = NULL;
		} else {
			/* The kernel's stub: the file's size, no data, the mark (set before the
			 * copy is visible, as everything about it). */
			if (n >= 0 && (ftruncate(c->tmp_fd, c->st.st_size) < 0 ||
				       fsetxattr(c->tmp_fd, ovl_metacopy_xattr(c->fs), rec,
						 (size_t)n, 0) < 0))
				n = -errno;
			if (dfd >= 0)
				close(dfd);
			return n < 0 ? n : 0;
		}
	}
	if (dfd == -ENODATA)
		return ovl_copy_data(c->src_fd, c->tmp_fd, &c->st);
	if (dfd < 0)
		return dfd;
	int err = fstat(dfd, &dst) < 0 ? -errno : 0;
	if (!err) {
		dst.st_size = c->st.st_size; /* the stub's size is the file's */
		err = ovl_copy_data(dfd, c->tmp_fd, &dst);
	}
	close(dfd);
	return err;
}

/* xattrs, owner, mode and times, in that order. */
static int copy_metadata(struct copy_up *c)
{
	struct ovl_fs *fs = c->fs;
	const struct stat *st = &c->st;
	char src[64], dst[PATH_MAX];
	bool in_xattr = false; /* the owner went to an override xattr */
	int err = 0;

	if (ovl_proc_path(c->src_fd, src, sizeof(src)) == 0) {
		snprintf(dst, sizeof(dst), "/proc/self/fd/%d/%s", fs->work_fd, c->tmp);
		err = ovl_copy_xattrs(fs, src, dst);
	}
	if (!err && S_ISREG(st->st_mode))
		err = ovl_copy_fileattr(fs, c->src_fd, c->tmp_fd);
	if (!err && S_ISDIR(st->st_mode))
		err = copy_dir_fileattr(fs, c->src_dirfd, c->name, c->tmp);
	if (!err)
		err =
		    ovl_owner_copy_up(fs, c->layer, c->src_fd, fs->work_fd, c->tmp, st, &in_xattr);
	if (!err && !in_xattr &&
	    fchownat(fs->work_fd, c->tmp, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0)
		err = -errno;
	/* The mode goes on after the data and the owner, which would clear setuid. */
	if (!err && !in_xattr && !S_ISLNK(st->st_mode) &&
	    fchmodat(fs->work_fd, c->tmp, st->st_mode & 07777, 0) < 0)
		err = -errno;
	if (!err) {
		struct timespec ts[2] = {st->st_atim, st->st_mtim};
		if (utimensat(fs->work_fd, c->tmp, ts, AT_SYMLINK_NOFOLLOW) < 0)
			err = -errno;
	}
	return err;
}

/* The copy's data is written out before it is renamed into place, else a crash of the
 * upper filesystem can leave an empty copy hiding the lower file (delayed allocation lets
 * the rename commit before the data). Writing it out gives it its blocks and on-disk size
 * in the running journal transaction, ahead of the rename; unlike the kernel's fsync, it
 * forces no journal commit per copy-up (chown -R of 5000 lower files: 8.4 s with an fsync
 * each). Skipped with fsync=0, as the kernel's. */
static int flush_temp(struct copy_up *c)
{
	/* nothing to write out: no data (a metacopy stub's size is a hole) */
	if (c->tmp_fd < 0 || c->truncate || c->meta_only || c->st.st_size == 0 ||
	    c->fs->no_fsync)
		return 0;
	if (sync_file_range(c->tmp_fd, 0, 0,
			    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
				SYNC_FILE_RANGE_WAIT_AFTER) < 0)
		return -errno;
	return 0;
}

/* The complete copy as work/tmp. Anything recorded about where it came from belongs
 * after the metadata, so that it is part of the copy before the copy is visible. */
/* The copy names the object it was copied from (the kernel's overlay.origin), so that it
 * keeps that object's inode number after a remount and under the kernel. As the kernel, not
 * for a lower hard link (its names may be copied up apart) nor for what was upper already. */
static int record_origin(struct copy_up *c)
{
	/* As the kernel: not for a hard link, unless it goes to the index. */
	if (c->fs->layers[c->layer].is_upper ||
	    (!S_ISDIR(c->st.st_mode) && c->st.st_nlink != 1 &&
	     !(ovl_index_wanted(c->fs, c->layer, &c->st) && !c->meta_only)))
		return 0;
	return ovl_origin_record(c->fs, c->layer, c->src_dirfd, c->name, c->tmp);
}

static int build_temp(struct copy_up *c)
{
	int err = create_temp(c);

	if (!err)
		err = copy_temp_data(c);
	if (!err)
		err = copy_metadata(c);
	if (!err)
		err = record_origin(c);
	if (!err)
		err = flush_temp(c);
	return err;
}

void ovl_restore_times(int dfd, const struct stat *st)
{
	char proc[64];
	struct timespec ts[2] = {st->st_atim, st->st_mtim};

	if (ovl_proc_path(dfd, proc, sizeof(proc)) == 0)
		(void)utimensat(AT_FDCWD, proc, ts, 0); /* cosmetic: the copy is already done */
}

/* Marks the node as living in upper; a directory keeps merging its lower layers. */
static int node_now_upper(struct ovl_node *node)
{
	struct ovl_dirlayer *n = NULL, *old = NULL;
	for (;;) {
		int count = 0;
		if (node->type == S_IFDIR) {
			pthread_spin_lock(&node->lock);
			count = node->ndirlayers;
			pthread_spin_unlock(&node->lock);
			/* Allocated outside the spinlock; used only if the count still holds. */
			n = malloc(sizeof(*n) * (size_t)(count + 1));
			if (!n)
				return -ENOMEM;
		}
		pthread_spin_lock(&node->lock);
		if (n && node->ndirlayers != count) {
			pthread_spin_unlock(&node->lock);
			free(n);
			n = NULL;
			continue;
		}
		if (n) {
			n[0].layer = 0;
			n[0].path = NULL;
			n[0].xwhiteouts = false;
			n[0].no_wh_files = false;
			memcpy(n + 1, node->dirlayers, sizeof(*n) * (size_t)count);
			old = node->dirlayers;
			node->dirlayers = n;
			node->ndirlayers++;
		}
		node->top = 0;
		pthread_spin_unlock(&node->lock);
		free(old);
		return 0;
	}
}

void ovl_node_linked_up(struct ovl_node *node)
{
	pthread_spin_lock(&node->lock);
	struct ovl_dirlayer *old = node->dirlayers;
	int nold = node->ndirlayers;
	node->dirlayers = NULL;
	node->ndirlayers = 0;
	node->top = 0;
	pthread_spin_unlock(&node->lock);
	ovl_dirlayers_free(old, nold);
	atomic_store(&node->indexed, true);
}

/* The node's name in upper becomes a link of the index entry hex (the kernel's link-up):
 * a lower name of a hard-link group the index holds. Preconditions: the rename lock; the
 * node's op lock. */
static int link_up(struct ovl_fs *fs, struct ovl_node *node, const char *hex)
{
	struct stat pst;
	int err = 0, dfd = ovl_open_in_layer(fs, node->parent, 0, O_PATH | O_DIRECTORY);

	if (dfd < 0)
		return dfd;
	if (fstat(dfd, &pst) < 0)
		err = -errno;
	pthread_mutex_lock(&node->parent->op_lock);
	if (!err)
		err = node->unlinked ? -ENOENT : ovl_index_link(fs, hex, dfd, node->name);
	if (!err) {
		err = ovl_set_impure(fs, dfd);
		ovl_restore_times(dfd, &pst);
		ovl_node_linked_up(node);
	}
	pthread_mutex_unlock(&node->parent->op_lock);
	close(dfd);
	return err;
}

/* The index entry's name a node found in the index keeps as its path there. */
static int index_name_of_node(struct ovl_node *node, char hex[OVL_INDEX_NAME_MAX])
{
	int err = -ESTALE;

	pthread_spin_lock(&node->lock);
	if (node->ndirlayers == 1 && node->dirlayers[0].path &&
	    strlen(node->dirlayers[0].path) < OVL_INDEX_NAME_MAX) {
		strcpy(hex, node->dirlayers[0].path);
		err = 0;
	}
	pthread_spin_unlock(&node->lock);
	return err;
}

/* A copy of a lower hard link goes into the index, and the node's name links to it; the
 * node, one for the group, is found by its upper object from now on. */
static int copy_up_indexed(struct copy_up *c, const char *hex)
{
	struct ovl_fs *fs = c->fs;
	struct stat ust;
	int err = ovl_index_store(fs, c->tmp, hex, c->st.st_nlink);

	if (err == -EEXIST)
		discard_temp(c); /* indexed through another node meanwhile: link to it */
	else if (err)
		return err;
	err = link_up(fs, c->node, hex);
	if (!err && !c->stand_in &&
	    fstatat(fs->layers[fs->index_layer].root_fd, hex, &ust, AT_SYMLINK_NOFOLLOW) == 0) {
		ovl_record_origin(fs, ust.st_dev, ust.st_ino, c->node->ino);
		ovl_alias_rekey(fs, c->node, &ust);
	}
	return err;
}

/* The inode number the node keeps: its own, now found on upper through the origin map.
 * As the kernel without an index: a copied-up hard link gets its own number. */
static void keep_ino(struct copy_up *c)
{
	if (S_ISDIR(c->st.st_mode) || c->st.st_nlink == 1)
		ovl_record_origin(c->fs, c->upper_st.st_dev, c->upper_st.st_ino, c->node->ino);
	else
		c->node->ino = ovl_map_ino(c->fs, 0, c->upper_st.st_dev, c->upper_st.st_ino);
}

/* Renames the copy over the name in the upper parent, unless the name appeared there or
 * the node went away meanwhile; from then on the node lives in upper. */
static int move_into_place(struct copy_up *c)
{
	struct ovl_fs *fs = c->fs;
	struct ovl_node *node = c->node;
	int err = 0;

	c->upper_dirfd = ovl_open_in_layer(fs, node->parent, 0, O_PATH | O_DIRECTORY);
	if (c->upper_dirfd < 0)
		return c->upper_dirfd;
	if (fstat(c->upper_dirfd, &c->parent_st) < 0 ||
	    fstatat(fs->work_fd, c->tmp, &c->upper_st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	pthread_mutex_lock(&node->parent->op_lock);
	if (node->unlinked)
		err = -ENOENT;
	else if (renameat2(fs->work_fd, c->tmp, c->upper_dirfd, c->name, RENAME_NOREPLACE) < 0)
		err = errno == EEXIST ? -ESTALE : -errno;
	if (!err) {
		/* The parent now holds an entry whose number readers must look up (impure). */
		err = ovl_set_impure(fs, c->upper_dirfd);
		ovl_restore_times(c->upper_dirfd, &c->parent_st);
		/* Where the data is, before the node shows the stub: the source's path, or for a
		 * metacopy source the data it names (left as it is). A full copy holds the data:
		 * the mark goes once the node shows it. */
		if (c->data_path)
			ovl_metacopy_set(fs, node, c->layer, c->data_path);
		c->data_path = NULL;
		if (!err)
			err = node_now_upper(node);
		if (node->type == S_IFDIR) /* a layer more: walks find the new upper directory */
			ovl_dircache_invalidate(fs);
		if (!c->meta_only)
			ovl_metacopy_set(fs, node, -1, NULL);
		keep_ino(c);
	}
	pthread_mutex_unlock(&node->parent->op_lock);
	return err;
}

static int do_copy_up_as(struct ovl_fs *fs, struct ovl_node *node, bool truncate, bool meta_only,
			 bool stand_in)
{
	struct copy_up c = {.fs = fs,
			    .node = node,
			    .stand_in = stand_in,
			    .truncate = truncate,
			    .meta_only = meta_only,
			    .layer = ovl_node_top(node),
			    .src_dirfd = -1,
			    .src_fd = -1,
			    .tmp_fd = -1,
			    .upper_dirfd = -1};
	char hex[OVL_INDEX_NAME_MAX];

	if (c.layer == fs->index_layer && fs->index_layer >= 0) {
		int err = index_name_of_node(node, hex);
		return err ? err : link_up(fs, node, hex);
	}
	int err = open_source(&c);

	/* A lower hard link goes to the index whole: its group is then one object at once
	 * (the kernel indexes a stub; either way every name shows the same file). */
	if (!err && meta_only && ovl_index_wanted(fs, c.layer, &c.st))
		meta_only = c.meta_only = false;
	if (!err && meta_only && !ovl_node_metacopy(node)) {
		char path[PATH_MAX];
		err = ovl_node_layer_path(fs, node, c.layer, path, sizeof(path));
		c.data_path = err ? NULL : strdup(path);
		if (!err && !c.data_path)
			err = -ENOMEM;
	}
	if (err) {
		close_fd(&c.src_dirfd);
		return err;
	}
	err = build_temp(&c);
	bool indexed = !err && !meta_only && ovl_index_wanted(fs, c.layer, &c.st) &&
		       ovl_index_name_at(fs, c.layer, c.src_dirfd, c.name, hex) == 0;
	close_fd(&c.src_fd);
	close_fd(&c.tmp_fd);
	close_fd(&c.src_dirfd);
	if (!err && indexed)
		err = copy_up_indexed(&c, hex);
	else if (!err)
		err = move_into_place(&c);
	close_fd(&c.upper_dirfd);
	free(c.data_path); /* not taken over: the copy failed */
	if (err) {
		discard_temp(&c);
		return err;
	}
	/* The node shows another object now: a new creation time (statx), and a directory,
	 * now merged, or a lower hard link, now separate, another link count (and number). */
	unsigned char shown = OVL_BTIME_SHOWN;
	bool btime_shown = atomic_compare_exchange_strong(&node->btime, &shown, OVL_BTIME_STALE);
	/* (only then: a notification per copy-up is a write to /dev/fuse the kernel handles) */
	if ((btime_shown || S_ISDIR(c.st.st_mode) || c.st.st_nlink > 1) && fs->attr_changed &&
	    !stand_in)
		fs->attr_changed(fs->attr_changed_ctx, node);
	return 0;
}

static int do_copy_up(struct ovl_fs *fs, struct ovl_node *node, bool truncate, bool meta_only)
{
	return do_copy_up_as(fs, node, truncate, meta_only, false);
}

/* The group's node, whose own name is still lower, now shows the index entry hex. */
static void adopt_index(struct ovl_fs *fs, struct ovl_node *node, const char *hex)
{
	struct stat ust;

	if (fstatat(fs->layers[fs->index_layer].root_fd, hex, &ust, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	struct ovl_dirlayer *dl = ovl_index_dirlayer(fs, hex);
	if (!dl)
		return;
	pthread_spin_lock(&node->lock);
	struct ovl_dirlayer *old = node->dirlayers;
	int nold = node->ndirlayers;
	node->dirlayers = dl;
	node->ndirlayers = 1;
	node->top = (int16_t)fs->index_layer;
	pthread_spin_unlock(&node->lock);
	ovl_dirlayers_free(old, nold);
	atomic_store(&node->indexed, true);
	ovl_record_origin(fs, ust.st_dev, ust.st_ino, node->ino);
	ovl_alias_rekey(fs, node, &ust);
	if (fs->attr_changed)
		fs->attr_changed(fs->attr_changed_ctx, node); /* one name less, say */
}

int ovl_copy_up_name_locked(struct ovl_fs *fs, struct ovl_node *group, struct ovl_node *parent,
			    const char *name, int layer)
{
	struct ovl_node tmp = {.parent = parent, .name = (char *)name, .top = (int16_t)layer};
	char hex[OVL_INDEX_NAME_MAX];
	int err, dfd;

	atomic_init(&tmp.type, group->type);
	tmp.ino = atomic_load(&group->ino);
	pthread_spin_init(&tmp.lock, PTHREAD_PROCESS_PRIVATE);
	pthread_mutex_init(&tmp.op_lock, NULL);
	pthread_mutex_lock(&group->op_lock);
	dfd = ovl_open_in_layer(fs, parent, layer, O_PATH | O_DIRECTORY);
	err = dfd < 0 ? dfd : ovl_index_name_at(fs, layer, dfd, name, hex);
	if (dfd >= 0)
		close(dfd);
	if (!err)
		err = do_copy_up_as(fs, &tmp, false, false, true);
	if (!err && ovl_node_top(group) != 0)
		adopt_index(fs, group, hex);
	pthread_mutex_unlock(&group->op_lock);
	ovl_dirlayers_free(tmp.dirlayers, tmp.ndirlayers);
	pthread_mutex_destroy(&tmp.op_lock);
	pthread_spin_destroy(&tmp.lock);
	return err;
}

/* Preconditions: the rename lock; no op lock, fs->table_lock not held. */
int ovl_copy_up_locked(struct ovl_fs *fs, struct ovl_node *node, bool truncate)
{
	int err = 0;

	if (!fs->has_upper || fs->readonly)
		return -EROFS;
	/* An upper metacopy file gets its data: every caller is about to change the file (a
	 * rename or link of a stub goes by ovl_copy_up_for_move_locked instead). */
	if (ovl_node_is_upper(fs, node))
		return node->type == S_IFREG ? ovl_copy_up_data_locked(fs, node) : 0;
	if (node->unlinked)
		return -ESTALE;
	if (node->parent) {
		err = ovl_copy_up_locked(fs, node->parent, false);
		if (err)
			return err;
	}
	pthread_mutex_lock(&node->op_lock);
	if (!ovl_node_is_upper(fs, node))
		err = do_copy_up(fs, node, truncate, false);
	pthread_mutex_unlock(&node->op_lock);
	return err;
}

/* With metacopy=on, as the kernel: a change of metadata only (owner, mode, times, xattrs,
 * flags) copies a lower regular file up without its data. */
int ovl_copy_up_meta_locked(struct ovl_fs *fs, struct ovl_node *node)
{
	int err;

	/* Not with userxattr: the kernel has no metacopy there. */
	if (!fs->metacopy_up || fs->userxattr || node->type != S_IFREG || !fs->has_upper ||
	    fs->readonly || node->unlinked || !node->parent)
		return ovl_copy_up_locked(fs, node, false);
	if (ovl_node_is_upper(fs, node))
		return 0; /* the stub takes the change; the data can stay below */
	err = ovl_copy_up_locked(fs, node->parent, false);
	if (err)
		return err;
	pthread_mutex_lock(&node->op_lock);
	if (!ovl_node_is_upper(fs, node))
		err = do_copy_up(fs, node, false, true);
	pthread_mutex_unlock(&node->op_lock);
	return err;
}

bool ovl_copy_up_is_long(struct ovl_fs *fs, struct ovl_node *node, off_t big)
{
	struct stat st;

	if (node->type != S_IFREG || ovl_node_is_upper(fs, node))
		return false;
	return ovl_getattr(fs, node, &st) == 0 && st.st_size > big;
}

int ovl_copy_up(struct ovl_fs *fs, struct ovl_node *node)
{
	pthread_rwlock_rdlock(&fs->rename_lock);
	int err = ovl_copy_up_locked(fs, node, false);
	pthread_rwlock_unlock(&fs->rename_lock);
	return err;
}
