/*
 * File attributes (chattr/lsattr: FS_IOC_GETFLAGS/SETFLAGS and FS_IOC_FSGETXATTR/FSSETXATTR),
 * as the kernel overlayfs keeps them (fs/overlayfs/inode.c ovl_fileattr_get/set, util.c
 * ovl_set_protattr/ovl_check_protattr, copy_up.c ovl_copy_fileattr):
 * - read from the object where it lives; a change copies up and goes to the upper object;
 * - immutable and append-only never go on an upper inode, where they would stop the overlay
 *   itself from renaming, linking or marking it: they are kept in overlay.protattr ("a"
 *   and/or "i", in that order) and enforced here (ovl_node_prot and its callers);
 * - copy-up carries sync and noatime over, and immutable/append-only into protattr.
 */
#include "internal.h"
#include "format.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/xattr.h>
#include <unistd.h>

#define PROT_FL (FS_APPEND_FL | FS_IMMUTABLE_FL)
#define PROT_XFLAG (FS_XFLAG_APPEND | FS_XFLAG_IMMUTABLE)
#define COPY_FL (FS_SYNC_FL | FS_NOATIME_FL)
#define PROTATTR_MAX 32 /* the kernel's OVL_PROTATTR_MAX */

static void protattr_name(struct ovl_fs *fs, char *buf, size_t size)
{
	snprintf(buf, size, "%s%s", fs->userxattr ? OVL_UXATTR_PREFIX : OVL_XATTR_PREFIX,
		 OVL_X_PROTATTR);
}

/* A protattr value -> OVL_PROT_* bits. As the kernel: a value with anything but 'a' and
 * 'i' is ignored whole. */
static int parse_protattr(const char *buf, int len)
{
	int prot = 0;

	for (int i = 0; i < len; i++) {
		if (buf[i] == 'a')
			prot |= OVL_PROT_APPEND;
		else if (buf[i] == 'i')
			prot |= OVL_PROT_IMMUTABLE;
		else
			return 0;
	}
	return prot;
}

static int prot_of_flags(unsigned flags)
{
	return ((flags & FS_APPEND_FL) ? OVL_PROT_APPEND : 0) |
	       ((flags & FS_IMMUTABLE_FL) ? OVL_PROT_IMMUTABLE : 0);
}

/* Writes prot as overlay.protattr on fd (removes it when prot is 0 and had is not). */
static int write_protattr(struct ovl_fs *fs, int fd, int prot, int had)
{
	char xname[64], buf[2];
	int len = 0;

	protattr_name(fs, xname, sizeof(xname));
	if (prot & OVL_PROT_APPEND)
		buf[len++] = 'a';
	if (prot & OVL_PROT_IMMUTABLE)
		buf[len++] = 'i';
	if (len) {
		/* As the kernel: without xattrs on upper the flags cannot be kept at all. */
		if (fsetxattr(fd, xname, buf, (size_t)len, 0) < 0)
			return errno == ENOTSUP ? -EPERM : -errno;
	} else if (had && fremovexattr(fd, xname) < 0 && errno != ENODATA && errno != ENOTSUP) {
		return -errno;
	}
	return 0;
}

static int read_protattr_fd(struct ovl_fs *fs, int fd)
{
	char xname[64], buf[PROTATTR_MAX];
	ssize_t n;

	protattr_name(fs, xname, sizeof(xname));
	n = fgetxattr(fd, xname, buf, sizeof(buf));
	if (n < 0)
		return errno == ENODATA || errno == ENOTSUP || errno == ERANGE ? 0 : -errno;
	return parse_protattr(buf, (int)n);
}

/* Whether ioctl's errno means "this filesystem keeps no such flags". */
static bool no_fileattr(int e)
{
	return e == ENOTTY || e == EINVAL || e == EOPNOTSUPP;
}

int ovl_prot_at(struct ovl_fs *fs, int layer, int dirfd, const char *name, mode_t mode)
{
	if (!S_ISREG(mode) && !S_ISDIR(mode))
		return 0;
	if (fs->has_upper && layer == 0) {
		char xname[64], buf[PROTATTR_MAX];
		protattr_name(fs, xname, sizeof(xname));
		int n = ovl_getxattr_at(dirfd, name, xname, buf, sizeof(buf));
		if (n < 0)
			return n == -ENODATA || n == -ENOTSUP || n == -ERANGE ? 0 : n;
		return parse_protattr(buf, n);
	}
	/* A lower object: its own flags, as the kernel's inode takes them from it. */
	int fd = openat(dirfd, name,
			O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC |
			    (S_ISDIR(mode) ? O_DIRECTORY : 0));
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	unsigned flags = 0;
	int err = ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0 ? -errno : 0;
	close(fd);
	if (err)
		return no_fileattr(-err) ? 0 : err;
	return prot_of_flags(flags);
}

int ovl_node_prot(struct ovl_fs *fs, struct ovl_node *node)
{
	mode_t type = node->type;
	const char *name;

	if (type != S_IFREG && type != S_IFDIR)
		return 0;
	int top = ovl_node_top(node);
	/* Our own protattr writes clear no_xattrs first. */
	if (fs->has_upper && top == 0 && atomic_load(&node->no_xattrs))
		return 0;
	/* (an index entry's object is an upper one) */
	bool lower = !fs->layers[top].is_upper && top != fs->index_layer;
	if (lower && atomic_load(&node->lower_unprotected))
		return 0;
	struct ovl_dircache_entry *lent;
	int pdfd = ovl_parent_borrow(fs, node, top, &name, &lent);
	if (pdfd < 0)
		return pdfd == -ENOENT ? 0 : pdfd; /* unlinked: nothing left to protect */
	int prot = ovl_prot_at(fs, lower ? top : 0, pdfd, name, type);
	ovl_dir_return(fs, pdfd, lent);
	if (lower && prot == 0)
		atomic_store(&node->lower_unprotected, true);
	return prot;
}

int ovl_found_prot(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		   const struct ovl_found *f)
{
	if (f->top < 0 || (!S_ISREG(f->st.st_mode) && !S_ISDIR(f->st.st_mode)))
		return 0;
	/* An index entry's object is an upper one: its marks are in overlay.protattr. */
	bool indexed = f->top == fs->index_layer && f->ndirlayers == 1;
	struct ovl_dircache_entry *lent = NULL;
	int pdfd = indexed ? ovl_layer_open(fs, f->top, ".", O_PATH | O_DIRECTORY)
			   : ovl_dir_borrow(fs, parent, f->top, &lent);
	if (pdfd < 0)
		return pdfd;
	int prot = indexed ? ovl_prot_at(fs, 0, pdfd, f->dirlayers[0].path, f->st.st_mode)
			   : ovl_prot_at(fs, f->top, pdfd, name, f->st.st_mode);
	ovl_dir_return(fs, pdfd, lent);
	return prot;
}

int ovl_copy_fileattr(struct ovl_fs *fs, int sfd, int dfd)
{
	unsigned flags, nflags;

	if (ioctl(sfd, FS_IOC_GETFLAGS, &flags) < 0)
		return no_fileattr(errno) ? 0 : -errno;
	if (flags & PROT_FL) {
		int err = write_protattr(fs, dfd, prot_of_flags(flags), 0);
		/* As the kernel: without xattrs on upper the copy goes on without them. */
		if (err && err != -EPERM)
			return err;
	}
	if (!(flags & COPY_FL))
		return 0;
	if (ioctl(dfd, FS_IOC_GETFLAGS, &nflags) < 0)
		return no_fileattr(errno) ? 0 : -errno;
	nflags = (nflags & ~(unsigned)COPY_FL) | (flags & COPY_FL);
	return ioctl(dfd, FS_IOC_SETFLAGS, &nflags) < 0 ? -errno : 0;
}

/* An fd of the node's object in layer for the flag ioctls.
 * Preconditions: the rename lock. */
static int open_object(struct ovl_fs *fs, struct ovl_node *node, int layer)
{
	int dir = node->type == S_IFDIR ? O_DIRECTORY : 0;

	if (node->type != S_IFREG && node->type != S_IFDIR)
		return -ENOTTY; /* as the kernel's FUSE: only files and directories have them */
	return ovl_open_in_layer(fs, node, layer, O_RDONLY | O_NONBLOCK | O_NOCTTY | dir);
}

static int fileattr_get(struct ovl_fs *fs, struct ovl_node *node, bool fsx, void *arg)
{
	int prot = 0, fd;

	pthread_rwlock_rdlock(&fs->rename_lock);
	int top = ovl_node_top(node);
	fd = open_object(fs, node, top);
	pthread_rwlock_unlock(&fs->rename_lock);
	if (fd < 0)
		return fd;
	if (fs->has_upper && top == 0)
		prot = read_protattr_fd(fs, fd);
	int err = prot < 0 ? prot : 0;
	if (!err && ioctl(fd, fsx ? FS_IOC_FSGETXATTR : FS_IOC_GETFLAGS, arg) < 0)
		err = -errno;
	close(fd);
	if (err)
		return err;
	if (fsx) {
		struct fsxattr *fa = arg;
		if (prot & OVL_PROT_APPEND)
			fa->fsx_xflags |= FS_XFLAG_APPEND;
		if (prot & OVL_PROT_IMMUTABLE)
			fa->fsx_xflags |= FS_XFLAG_IMMUTABLE;
	} else {
		unsigned *flags = arg;
		if (prot & OVL_PROT_APPEND)
			*flags |= FS_APPEND_FL;
		if (prot & OVL_PROT_IMMUTABLE)
			*flags |= FS_IMMUTABLE_FL;
	}
	return 0;
}

/* arg is the caller's; the protected bits are cleared from it before the upper ioctl. */
static int fileattr_set(struct ovl_fs *fs, struct ovl_node *node, bool fsx, void *arg, int prot)
{
	int err, fd = -1;

	if (fs->readonly)
		return -EROFS;
	atomic_store(&node->no_xattrs, false); /* protattr may come */
	pthread_rwlock_rdlock(&fs->rename_lock);
	err = ovl_copy_up_meta_locked(fs, node);
	if (!err) {
		fd = open_object(fs, node, 0);
		if (fd < 0)
			err = fd;
	}
	pthread_rwlock_unlock(&fs->rename_lock);
	if (err)
		return err;
	/* As the kernel: the xattr first, then the inode, which never gets these flags (it
	 * clears them, had an older kernel set them there). */
	int had = read_protattr_fd(fs, fd);
	err = had < 0 ? had : write_protattr(fs, fd, prot, had);
	if (!err && ioctl(fd, fsx ? FS_IOC_FSSETXATTR : FS_IOC_SETFLAGS, arg) < 0)
		err = -errno;
	close(fd);
	if (fs->attr_changed)
		fs->attr_changed(fs->attr_changed_ctx, node); /* the ctime moved */
	return err;
}

int ovl_get_flags(struct ovl_fs *fs, struct ovl_node *node, unsigned *flags)
{
	*flags = 0;
	return fileattr_get(fs, node, false, flags);
}

int ovl_set_flags(struct ovl_fs *fs, struct ovl_node *node, unsigned flags)
{
	int prot = prot_of_flags(flags);

	flags &= ~(unsigned)PROT_FL;
	return fileattr_set(fs, node, false, &flags, prot);
}

int ovl_get_fsxattr(struct ovl_fs *fs, struct ovl_node *node, struct fsxattr *fa)
{
	memset(fa, 0, sizeof(*fa));
	return fileattr_get(fs, node, true, fa);
}

int ovl_set_fsxattr(struct ovl_fs *fs, struct ovl_node *node, const struct fsxattr *fa)
{
	struct fsxattr copy = *fa;
	int prot = ((fa->fsx_xflags & FS_XFLAG_APPEND) ? OVL_PROT_APPEND : 0) |
		   ((fa->fsx_xflags & FS_XFLAG_IMMUTABLE) ? OVL_PROT_IMMUTABLE : 0);

	copy.fsx_xflags &= ~(unsigned)PROT_XFLAG;
	return fileattr_set(fs, node, true, &copy, prot);
}
