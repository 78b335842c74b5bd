/* Extended attributes, as the kernel 6.7+ overlayfs: the overlay's own markers are never
 * shown; a caller's trusted.overlay.X is stored escaped as trusted.overlay.overlay.X. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

/* A /proc path naming the node's object in layer (or its top layer if layer < 0).
 * Preconditions: the rename lock. */
static int object_path(struct ovl_fs *fs, struct ovl_node *node, int layer, int *fd, char *proc,
		       size_t size)
{
	*fd = ovl_open_in_layer(fs, node, layer < 0 ? ovl_node_top(node) : layer, O_PATH);
	if (*fd < 0)
		return *fd;
	return ovl_proc_path(*fd, proc, size);
}

ssize_t ovl_getxattr(struct ovl_fs *fs, struct ovl_node *node, const char *name, void *buf,
		     size_t size)
{
	char rname[XATTR_NAME_MAX + 32], proc[64];
	int fd, err = ovl_xattr_escape(name, fs->userxattr, rname, sizeof(rname));
	ssize_t n;

	if (err)
		return err == -EOPNOTSUPP ? -ENODATA : err;
	if (atomic_load(&node->no_xattrs) || ovl_owner_hidden_xattr(fs, name))
		return -ENODATA;
	pthread_rwlock_rdlock(&fs->rename_lock);
	err = object_path(fs, node, -1, &fd, proc, sizeof(proc));
	pthread_rwlock_unlock(&fs->rename_lock);
	if (fd < 0)
		return fd;
	n = err ? err : getxattr(proc, rname, buf, size);
	if (n < 0 && !err) {
		n = -errno;
		/* Not for hard links: xattrs set through another name would not clear it. */
		struct stat st;
		if (n == -ENODATA && listxattr(proc, NULL, 0) == 0 && fstat(fd, &st) == 0 &&
		    (S_ISDIR(st.st_mode) || st.st_nlink == 1))
			atomic_store(&node->no_xattrs, true);
	}
	close(fd);
	return n;
}

/* Rewrites a layer's name list in place into what the overlay shows. */
static size_t filter_names(struct ovl_fs *fs, char *list, size_t len, bool privileged)
{
	size_t out = 0;

	for (size_t i = 0; i < len;) {
		char *n = list + i;
		size_t nlen = strlen(n) + 1;
		i += nlen;
		/* As any local filesystem: trusted.* is listed to privileged callers only. */
		if (!privileged && strncmp(n, "trusted.", 8) == 0)
			continue;
		if (ovl_is_private_xattr(n, fs->userxattr))
			continue; /* the overlay's own marker, or fuse-overlayfs's */
		out += ovl_xattr_unescape(n, fs->userxattr, list + out); /* PREFIX.X, as shown */
	}
	return out;
}

ssize_t ovl_listxattr(struct ovl_fs *fs, struct ovl_node *node, char *buf, size_t size,
		      bool privileged)
{
	char proc[64], small[1024], *list = NULL;
	int fd, err;
	ssize_t len;

	/* Known to have none (cp -a asks every file): no walk, no syscall. */
	if (atomic_load(&node->no_xattrs))
		return 0;
	pthread_rwlock_rdlock(&fs->rename_lock);
	err = object_path(fs, node, -1, &fd, proc, sizeof(proc));
	pthread_rwlock_unlock(&fs->rename_lock);
	if (fd < 0)
		return fd;
	if (err)
		goto out;
	/* Most lists are short: one call into a stack buffer, else size and fetch. */
	len = listxattr(proc, small, sizeof(small));
	if (len >= 0) {
		list = malloc((size_t)len + 1);
		if (!list) {
			err = -ENOMEM;
			goto out;
		}
		memcpy(list, small, (size_t)len);
	}
	/* Filtering needs the whole list, whatever size the caller offers. */
	while (!list) {
		len = listxattr(proc, NULL, 0);
		if (len < 0) {
			err = -errno;
			goto out;
		}
		free(list);
		list = malloc((size_t)len + 1);
		if (!list) {
			err = -ENOMEM;
			goto out;
		}
		len = listxattr(proc, list, (size_t)len);
		if (len >= 0)
			break;
		if (errno != ERANGE) {
			err = -errno;
			goto out;
		}
		free(list);
		list = NULL;
	}
	len = (ssize_t)filter_names(fs, list, (size_t)len, privileged);
	len = (ssize_t)ovl_owner_filter_xattrs(fs, list, (size_t)len);
	if (size == 0)
		err = (int)len;
	else if ((size_t)len > size)
		err = -ERANGE;
	else {
		memcpy(buf, list, (size_t)len);
		err = (int)len;
	}
out:
	free(list);
	close(fd);
	return err;
}

static int change_xattr(struct ovl_fs *fs, struct ovl_node *node, const char *name,
			const void *value, size_t size, int flags, bool remove)
{
	char rname[XATTR_NAME_MAX + 32], proc[64];
	int fd = -1, err = ovl_xattr_escape(name, fs->userxattr, rname, sizeof(rname));

	if (err)
		return err == -EOPNOTSUPP && remove ? -ENODATA : err;
	if (fs->readonly)
		return -EROFS;
	if (ovl_owner_hidden_xattr(fs, name))
		return -EPERM; /* owners are changed by chown, not by hand */
	pthread_rwlock_rdlock(&fs->rename_lock);
	/* As the kernel's xattr_permission: not on an immutable or append-only object. */
	err = ovl_node_prot(fs, node);
	if (err > 0)
		err = -EPERM;
	atomic_store(&node->no_xattrs, false);
	if (!err && remove) {
		/* As the kernel: removing an absent name does not copy up. */
		err = object_path(fs, node, -1, &fd, proc, sizeof(proc));
		if (!err && getxattr(proc, rname, NULL, 0) < 0)
			err = -errno;
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	if (!err)
		err = ovl_copy_up_meta_locked(fs, node);
	if (!err)
		err = object_path(fs, node, 0, &fd, proc, sizeof(proc));
	if (!err) {
		/* Not onto a whiteout that replaced the object meanwhile. */
		struct stat st;
		if (fstat(fd, &st) < 0)
			err = -errno;
		else if ((st.st_mode & S_IFMT) != node->type)
			err = -ESTALE;
	}
	pthread_rwlock_unlock(&fs->rename_lock);
	if (!err) {
		int r =
		    remove ? removexattr(proc, rname) : setxattr(proc, rname, value, size, flags);
		err = r < 0 ? -errno : 0;
	}
	if (fd >= 0)
		close(fd);
	return err;
}

int ovl_setxattr(struct ovl_fs *fs, struct ovl_node *node, const char *name, const void *value,
		 size_t size, int flags)
{
	return change_xattr(fs, node, name, value, size, flags, false);
}

int ovl_removexattr(struct ovl_fs *fs, struct ovl_node *node, const char *name)
{
	return change_xattr(fs, node, name, NULL, 0, 0, true);
}
