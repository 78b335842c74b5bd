/* Attributes: readlink, statfs, access and setattr (which copies up first). */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

int ovl_readlink(struct ovl_fs *fs, struct ovl_node *node, char *buf, size_t size)
{
	const char *name;
	ssize_t n;
	int dfd;

	pthread_rwlock_rdlock(&fs->rename_lock);
	struct ovl_dircache_entry *lent;
	dfd = ovl_parent_borrow(fs, node, ovl_node_top(node), &name, &lent);
	if (dfd < 0) {
		pthread_rwlock_unlock(&fs->rename_lock);
		return dfd;
	}
	n = readlinkat(dfd, name, buf, size);
	int err = n < 0 ? -errno : (int)n;
	ovl_dir_return(fs, dfd, lent);
	pthread_rwlock_unlock(&fs->rename_lock);
	return err;
}

int ovl_statfs(struct ovl_fs *fs, struct statvfs *st)
{
	if (fstatvfs(fs->layers[0].root_fd, st) < 0)
		return -errno;
	st->f_namemax = (unsigned long)fs->namemax;
	return 0;
}

int ovl_access(struct ovl_fs *fs, struct ovl_node *node, int mask)
{
	struct stat st;
	int err = ovl_getattr(fs, node, &st);

	if (err)
		return err;
	if ((mask & W_OK) && fs->readonly)
		return -EROFS;
	return 0;
}

/* Applies attribute changes to the node's upper object, which an O_PATH fd holds. */
static int apply_attrs(int fd, int to_set, const struct stat *attr)
{
	char proc[64];

	if (ovl_proc_path(fd, proc, sizeof(proc)) < 0)
		return -ENAMETOOLONG;
	if (to_set & (OVL_SET_UID | OVL_SET_GID)) {
		uid_t uid = to_set & OVL_SET_UID ? attr->st_uid : (uid_t)-1;
		gid_t gid = to_set & OVL_SET_GID ? attr->st_gid : (gid_t)-1;
		if (fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	}
	if ((to_set & OVL_SET_MODE) && chmod(proc, attr->st_mode & 07777) < 0)
		return -errno;
	if (to_set & (OVL_SET_ATIME | OVL_SET_MTIME | OVL_SET_ATIME_NOW | OVL_SET_MTIME_NOW)) {
		struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_nsec = UTIME_OMIT}};
		if (to_set & OVL_SET_ATIME)
			ts[0] = attr->st_atim;
		if (to_set & OVL_SET_MTIME)
			ts[1] = attr->st_mtim;
		if (to_set & OVL_SET_ATIME_NOW)
			ts[0].tv_nsec = UTIME_NOW;
		if (to_set & OVL_SET_MTIME_NOW)
			ts[1].tv_nsec = UTIME_NOW;
		if (utimensat(AT_FDCWD, proc, ts, 0) < 0)
			return -errno;
	}
	return 0;
}

/* The kernel's write-back of its times for a lower file whose mtime it did not change (a
 * ctime-only change: link, unlink or rename of a name): nothing to change, and no reason
 * to copy the file up (the kernel overlayfs does not; copying up one name of a lower hard
 * link would break the link). */
static bool kernel_times_unchanged(struct ovl_fs *fs, struct ovl_node *node, int to_set,
				   const struct stat *attr, struct stat *out)
{
	if ((to_set & ~(OVL_SET_CTIME | OVL_SET_MTIME | OVL_SET_ATIME)) ||
	    ovl_node_is_upper(fs, node) || ovl_getattr(fs, node, out) != 0)
		return false;
	if ((to_set & OVL_SET_MTIME) && (out->st_mtim.tv_sec != attr->st_mtim.tv_sec ||
					 out->st_mtim.tv_nsec != attr->st_mtim.tv_nsec))
		return false;
	if ((to_set & OVL_SET_ATIME) && (out->st_atim.tv_sec != attr->st_atim.tv_sec ||
					 out->st_atim.tv_nsec != attr->st_atim.tv_nsec))
		return false;
	return true;
}

/* The kernel's rules (notify_change, vfs_truncate, do_sys_ftruncate) for immutable and
 * append-only files: neither takes a new mode, owner, size or given times; an immutable one
 * not even the current time. ftruncate (with a file) of an immutable file opened for
 * writing before the flag was set is allowed, as on the kernel: only append-only stops it.
 * Preconditions: the rename lock. */
static int setattr_allowed(struct ovl_fs *fs, struct ovl_node *node, bool with_file, int to_set)
{
	const int fixed = OVL_SET_MODE | OVL_SET_UID | OVL_SET_GID | OVL_SET_ATIME | OVL_SET_MTIME;
	int prot = to_set ? ovl_node_prot(fs, node) : 0;

	if (prot <= 0)
		return prot;
	if ((to_set & OVL_SET_SIZE) && (!with_file || (prot & OVL_PROT_APPEND)))
		return -EPERM;
	if ((to_set & ~OVL_SET_SIZE) && (prot & OVL_PROT_IMMUTABLE))
		return -EPERM;
	if (to_set & fixed)
		return -EPERM;
	return 0;
}

int ovl_setattr(struct ovl_fs *fs, struct ovl_node *node, struct ovl_file *file, int to_set,
		const struct stat *attr, struct stat *out)
{
	struct stat disk_attr; /* attr with the owner as stored */
	int err = 0, fd = -1;
	bool via_file = false; /* fd is the caller's open file */

	if (fs->readonly)
		return -EROFS;
	if ((to_set & OVL_SET_SIZE) && node->type == S_IFDIR)
		return -EISDIR;
	/* Nothing to set: chown(f, -1, -1). The kernel overlayfs copies up and its upper
	 * filesystem moves ctime (chown always asks for ATTR_CTIME); do the same. */
	bool touch_ctime = to_set == 0;
	if ((to_set & OVL_SET_CTIME) && kernel_times_unchanged(fs, node, to_set, attr, out))
		return 0;
	to_set &= ~OVL_SET_CTIME; /* no syscall sets it */
	if ((err = ovl_owner_map_attr(fs, &to_set, attr, &disk_attr)))
		return err;
	/* The caller's open file on the upper object, if any, is the object to change: taken
	 * before the rename lock (the file's lock is the outer one) and spares two walks. */
	int file_fd = file && (to_set & ~OVL_SET_SIZE) ? ovl_file_upper_dup(file) : -1;
	pthread_rwlock_rdlock(&fs->rename_lock);
	err = setattr_allowed(fs, node, file != NULL, to_set);
	if (!err && !node->unlinked) {
		bool trunc0 = (to_set & OVL_SET_SIZE) && attr->st_size == 0;
		err = (to_set & OVL_SET_SIZE) ? ovl_copy_up_locked(fs, node, trunc0)
					      : ovl_copy_up_meta_locked(fs, node);
	}
	if (!err && (to_set & OVL_SET_SIZE)) {
		if (file && file->on_upper) {
			if (ftruncate(file->fd, attr->st_size) < 0)
				err = -errno;
		} else {
			int wfd = ovl_open_in_layer(fs, node, 0, O_WRONLY | O_NONBLOCK);
			if (wfd < 0)
				err = wfd;
			else if (ftruncate(wfd, attr->st_size) < 0)
				err = -errno;
			if (wfd >= 0)
				close(wfd);
		}
	}
	if (!err && ((to_set & ~OVL_SET_SIZE) || touch_ctime)) {
		/* An unlinked node is reached through the caller's open file or the object it
		 * kept; with neither, the name went away under the request (-ENOENT). */
		if (file_fd >= 0) {
			fd = file_fd;
			file_fd = -1;
			via_file = true;
		} else if (node->unlinked && file) {
			fd = dup(file->fd);
			if (fd < 0)
				fd = -errno;
		} else {
			fd = ovl_node_object_fd(fs, node, 0);
		}
		if (fd < 0)
			err = fd;
		else if (!(err = ovl_owner_setattr(fs, fd, &to_set, &disk_attr)))
			err = apply_attrs(fd, to_set, &disk_attr);
		if (!err && touch_ctime &&
		    fchownat(fd, "", (uid_t)-1, (gid_t)-1, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
			err = -errno;
	}
	if (!err && (to_set & OVL_SET_MTIME) && node->type == S_IFREG) {
		pthread_spin_lock(&node->lock);
		node->kernel_mtime = attr->st_mtim;
		pthread_spin_unlock(&node->lock);
	}
	/* The attributes of the object just changed, from its fd: no second walk. A name
	 * replaced by another kind of object meanwhile is stale, as ovl_stat_node says. */
	if (!err) {
		if (fd >= 0 && fstat(fd, out) == 0) {
			if (node->unlinked && node->orphan)
				node->orphan->last_st = *out; /* as on disk: shown anew each time */
			if (!node->unlinked && !via_file && (out->st_mode & S_IFMT) != node->type) {
				err = -ESTALE;
			} else {
				if (node->type == S_IFREG)
					ovl_metacopy_blocks(fs, node,
							    out); /* a stub shows its data's */
				if (atomic_load(&node->indexed))
					out->st_nlink = ovl_index_nlink(fs, fd, NULL, out);
				ovl_fill_stat(fs, node, out);
			}
		} else {
			err = ovl_stat_node(fs, node, out);
		}
	}
	if (fd >= 0)
		close(fd);
	if (file_fd >= 0)
		close(file_fd);
	pthread_rwlock_unlock(&fs->rename_lock);
	return err;
}

static bool cred_in_group(const struct ovl_cred *cred, gid_t gid)
{
	return cred->gid == gid || (cred->in_group && cred->in_group(cred->ctx, gid));
}

/* Clears the bits of drop_if (a function of the shown attributes) in the node's mode. */
static int drop_mode_bits(struct ovl_fs *fs, struct ovl_node *node, struct ovl_file *file,
			  const struct ovl_cred *cred,
			  mode_t (*drop_if)(const struct stat *, const struct ovl_cred *))
{
	struct stat st, out;
	int err;

	if (cred->uid == 0 || fs->readonly)
		return 0;
	if ((err = ovl_getattr_file(fs, node, file, &st)))
		return err;
	mode_t drop = drop_if(&st, cred);
	if (!drop)
		return 0;
	st.st_mode &= ~drop;
	err = ovl_setattr(fs, node, file, OVL_SET_MODE, &st, &out);
	return err ? err : 1;
}

/* The kernel's setattr_should_drop_suidgid, for a caller without CAP_FSETID. */
static mode_t setid_after_write(const struct stat *st, const struct ovl_cred *cred)
{
	mode_t drop = 0;

	if (!S_ISREG(st->st_mode))
		return 0;
	if (st->st_mode & S_ISUID)
		drop |= S_ISUID;
	if ((st->st_mode & S_ISGID) &&
	    ((st->st_mode & S_IXGRP) || !cred_in_group(cred, st->st_gid)))
		drop |= S_ISGID;
	return drop;
}

/* The kernel's posix_acl_update_mode: setgid goes when the caller is outside the group. */
static mode_t setgid_after_acl(const struct stat *st, const struct ovl_cred *cred)
{
	return (st->st_mode & S_ISGID) && !cred_in_group(cred, st->st_gid) ? S_ISGID : 0;
}

int ovl_drop_setid_on_write(struct ovl_fs *fs, struct ovl_node *node, struct ovl_file *file,
			    const struct ovl_cred *cred)
{
	return drop_mode_bits(fs, node, file, cred, setid_after_write);
}

int ovl_drop_setgid_on_acl(struct ovl_fs *fs, struct ovl_node *node, const struct ovl_cred *cred)
{
	return drop_mode_bits(fs, node, NULL, cred, setgid_after_acl);
}

int ovl_setattr_kill_suidgid(struct ovl_fs *fs, struct ovl_node *node, struct ovl_file *file,
			     int *to_set, struct stat *attr)
{
	struct stat st;
	int err;

	if (*to_set & OVL_SET_MODE)
		return 0;
	if ((err = ovl_getattr_file(fs, node, file, &st)))
		return err;
	mode_t drop = st.st_mode & S_ISUID;
	if ((st.st_mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
		drop |= S_ISGID;
	if (!drop || S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode))
		return 0;
	attr->st_mode = st.st_mode & ~drop;
	*to_set |= OVL_SET_MODE;
	return 0;
}
