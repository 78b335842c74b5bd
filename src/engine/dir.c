/* Namespace operations inside one directory: create, mkdir, mknod, symlink, link, unlink,
 * rmdir. Each copies the parent chain up first, then works under the parent's op lock. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

struct new_object {
	mode_t mode; /* type and permission bits */
	dev_t rdev;
	const char *target; /* symlinks */
	int open_flags;	    /* regular files created by create(): the fd is kept */
	int fd;
	bool as_file; /* a device kept as a regular file (its type in an override xattr) */
};

static int make_object(int dirfd, const char *name, struct new_object *o)
{
	switch (o->mode & S_IFMT) {
	case S_IFDIR:
		return mkdirat(dirfd, name, o->mode & 07777) < 0 ? -errno : 0;
	case S_IFLNK:
		return symlinkat(o->target, dirfd, name) < 0 ? -errno : 0;
	case S_IFREG:
		if (o->open_flags >= 0) {
			int fl = (o->open_flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY)) |
				 O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
			o->fd = openat(dirfd, name, fl, o->mode & 07777);
			if (o->fd < 0 && errno == EINVAL && (fl & O_DIRECT))
				o->fd = openat(dirfd, name, fl & ~O_DIRECT, o->mode & 07777);
			return o->fd < 0 ? -errno : 0;
		}
		/* fallthrough */
	default: {
		mode_t mode = o->as_file ? S_IFREG | (o->mode & 07777) : o->mode;
		return mknodat(dirfd, name, mode, o->as_file ? 0 : o->rdev) < 0 ? -errno : 0;
	}
	}
}

/* Takes the permission bits the object was made with into o (the setid bits asked for
 * stay: set_owner restores them after the chown). */
static int made_mode(int dirfd, const char *name, struct new_object *o)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	o->mode = (o->mode & ~(mode_t)0777) | (st.st_mode & 0777);
	return 0;
}

static void remove_object(int dirfd, const char *name, mode_t mode)
{
	(void)unlinkat(dirfd, name, S_ISDIR(mode) ? AT_REMOVEDIR : 0);
}

/* Owner and mode of a new object: the caller's, with setgid directories honoured (in an
 * override xattr where the upper layer keeps owners so: owner.c). The chown
 * comes first since it clears setuid/setgid bits. */
static int set_owner(struct ovl_fs *fs, int dirfd, const char *name, struct new_object *o,
		     uid_t uid, gid_t gid, bool setgid_dir)
{
	mode_t mode = o->mode & 07777;
	bool done;
	int err = ovl_owner_init_new(fs, dirfd, name,
				     S_ISDIR(o->mode) && setgid_dir ? o->mode | S_ISGID : o->mode,
				     o->rdev, uid, gid, &done);

	if (err || done)
		return err;

	/* The daemon's own ids are already the object's. */
	if ((uid != fs->euid || gid != fs->egid || setgid_dir) &&
	    fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (S_ISDIR(o->mode) && setgid_dir)
		mode |= S_ISGID;
	if (!S_ISLNK(o->mode) && (mode & 07000) && fchmodat(dirfd, name, mode, 0) < 0)
		return -errno;
	return 0;
}

/* Enters an object just made in parent's upper directory into the node table: it lives in
 * upper alone (over a whiteout, or where no lower layer has the name).
 * Preconditions: the rename lock and parent's op lock. */
static int install_new(struct ovl_fs *fs, struct ovl_node *parent, const char *name, int pdfd,
		       struct ovl_node **node, struct stat *st)
{
	struct ovl_found f = {.top = 0};

	if (fstatat(pdfd, name, &f.st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	/* A new file or directory has the xattrs its filesystem gave it (ACLs, labels), nearly
	 * always none: listed once here, none need be asked for later (a write asks for
	 * security.capability, a create in a directory for its protattr). */
	f.no_xattrs = (S_ISREG(f.st.st_mode) || S_ISDIR(f.st.st_mode)) &&
		      ovl_upper_records(fs, pdfd, name) == 0;
	if (S_ISDIR(f.st.st_mode)) {
		f.dirlayers = calloc(1, sizeof(*f.dirlayers));
		if (!f.dirlayers)
			return -ENOMEM;
		f.ndirlayers = 1;
	}
	return ovl_node_install(fs, parent, name, &f, OVL_INSTALL_FRESH, node, st);
}

/* -EEXIST unless the name is free in the merged view; f tells whether upper whited it out.
 * Preconditions: the rename lock and parent's op lock. */
static int name_is_free(struct ovl_fs *fs, struct ovl_node *parent, const char *name, int pdfd,
			struct ovl_found *f)
{
	int *dirfds = malloc(sizeof(*dirfds) * (size_t)fs->nlayers);

	if (!dirfds)
		return -ENOMEM;
	for (int i = 0; i < fs->nlayers; i++)
		dirfds[i] = -1;
	dirfds[0] = pdfd; /* the upper directory, opened already */
	int err = ovl_find_in(fs, parent, name, 0, dirfds, f);
	free(dirfds);

	if (!err && f->top >= 0)
		err = -EEXIST;
	ovl_found_free(f);
	return err;
}

/* Creates `name` in parent's upper directory. Over a whiteout, the object is built in the
 * work directory and swapped in, so that the whiteout is never missing.
 * Preconditions: the rename lock; no op lock (parent is copied up, then its op lock taken). */
/* The kernel's may_create: no new name in an immutable directory (an append-only one takes
 * new names). Preconditions: the rename lock. */
static int may_create(struct ovl_fs *fs, struct ovl_node *parent)
{
	int prot = ovl_node_prot(fs, parent);

	if (prot > 0)
		return (prot & OVL_PROT_IMMUTABLE) ? -EPERM : 0;
	return prot;
}

/* Before a new name goes into parent: may_create, then parent copied up to hold it.
 * Preconditions: the rename lock. */
static int upper_dir_for_new_name(struct ovl_fs *fs, struct ovl_node *parent)
{
	int err = may_create(fs, parent);

	return err ? err : ovl_copy_up_locked(fs, parent, false);
}

/* A directory with upper and lower layers (the kernel's OVL_TYPE_MERGE). */
static bool parent_is_merged(struct ovl_node *dir)
{
	pthread_spin_lock(&dir->lock);
	bool merged = dir->ndirlayers > 1;
	pthread_spin_unlock(&dir->lock);
	return merged;
}

static int create_in(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
		     struct new_object *o, const struct ovl_cred *cred, struct ovl_node **node,
		     struct stat *st)
{
	struct ovl_found f;
	struct stat pst;
	char tmp[64];
	int err, pdfd;

	if (fs->readonly)
		return -EROFS;
	if (strlen(name) > (size_t)fs->namemax)
		return -ENAMETOOLONG;
	if (ovl_oci_name(fs, name))
		return -EINVAL; /* reserved for whiteouts, as fuse-overlayfs */
	err = upper_dir_for_new_name(fs, parent);
	if (err)
		return err;
	pthread_mutex_lock(&parent->op_lock);
	struct ovl_dircache_entry *lent;
	pdfd = ovl_dir_borrow(fs, parent, 0, &lent);
	if (pdfd < 0) {
		pthread_mutex_unlock(&parent->op_lock);
		return pdfd;
	}
	err = name_is_free(fs, parent, name, pdfd, &f);
	if (err)
		goto out;
	if (fstat(pdfd, &pst) < 0) {
		err = -errno;
		goto out;
	}
	uid_t uid;
	gid_t gid;
	bool sgid;
	ovl_owner_new_ids(fs, cred, pdfd, &pst, &uid, &gid, &sgid);
	/* The umask, which the kernel left to us, goes where no default ACL shapes the mode
	 * (POSIX.1e); the parent's upper copy carries any ACL it has below. */
	bool acl = !S_ISLNK(o->mode) && ovl_has_default_acl(pdfd);
	if (!acl && !S_ISLNK(o->mode))
		o->mode &= ~(cred->umask & 0777);
	/* A directory over a .wh.<name> file is built aside too: it must be opaque first. */
	if (!f.whiteout_in_upper && !(f.whfile_in_upper && S_ISDIR(o->mode))) {
		err = make_object(pdfd, name, o);
		/* The upper filesystem fitted the mode to the default ACL: keep what it made. */
		if (!err && ((acl && (err = made_mode(pdfd, name, o))) ||
			     (err = set_owner(fs, pdfd, name, o, uid, gid, sgid))))
			remove_object(pdfd, name, o->mode);
		/* As the kernel with redirect_dir=on, metacopy=on or index=on (whose layers allow
		 * no offline change): a directory made in a merged one is opaque, so that nothing
		 * below ever shows in it. Like the kernel's, the mark may fail: nothing is below
		 * that name today. */
		if (!err && S_ISDIR(o->mode) &&
		    (fs->redirect_write || fs->metacopy_up || fs->index_layer >= 0) &&
		    parent_is_merged(parent))
			(void)ovl_set_opaque(fs, pdfd, name);
	} else {
		err = ovl_tmpname(fs, tmp, sizeof(tmp));
		if (!err)
			err = make_object(fs->work_fd, tmp, o);
		if (err)
			goto out;
		/* Made outside the parent: its default ACL is ours to give. */
		if (acl)
			err = ovl_acl_inherit(pdfd, fs->work_fd, tmp, &o->mode);
		if (!err)
			err = set_owner(fs, fs->work_fd, tmp, o, uid, gid, sgid);
		/* A directory over a whiteout hides what the whiteout hid. */
		if (!err && S_ISDIR(o->mode))
			err = ovl_set_opaque(fs, fs->work_fd, tmp);
		if (!err && !f.whiteout_in_upper) {
			if (renameat2(fs->work_fd, tmp, pdfd, name, RENAME_NOREPLACE) < 0)
				err = -errno;
		} else if (!err && S_ISDIR(o->mode)) {
			if (renameat2(fs->work_fd, tmp, pdfd, name, RENAME_EXCHANGE) < 0)
				err = -errno;
			else
				(void)unlinkat(fs->work_fd, tmp, 0); /* the old whiteout */
		} else if (!err && renameat(fs->work_fd, tmp, pdfd, name) < 0) {
			err = -errno;
		}
		if (err)
			remove_object(fs->work_fd, tmp, o->mode);
	}
	if (!err && f.whfile_in_upper)
		ovl_drop_wh_file(pdfd, name);
	if (!err)
		err = install_new(fs, parent, name, pdfd, node, st);
out:
	if (err && o->fd >= 0) {
		close(o->fd);
		o->fd = -1;
	}
	ovl_dir_return(fs, pdfd, lent);
	pthread_mutex_unlock(&parent->op_lock);
	return err;
}

static int create_common(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
			 struct new_object *o, const struct ovl_cred *cred, struct ovl_node **node,
			 struct stat *st)
{
	pthread_rwlock_rdlock(&fs->rename_lock);
	int err = create_in(fs, parent, name, o, cred, node, st);
	pthread_rwlock_unlock(&fs->rename_lock);
	return err;
}

int ovl_mkdir(struct ovl_fs *fs, struct ovl_node *parent, const char *name, mode_t mode,
	      const struct ovl_cred *cred, struct ovl_node **node, struct stat *st)
{
	struct new_object o = {.mode = S_IFDIR | (mode & 07777), .open_flags = -1, .fd = -1};
	return create_common(fs, parent, name, &o, cred, node, st);
}

int ovl_mknod(struct ovl_fs *fs, struct ovl_node *parent, const char *name, mode_t mode, dev_t rdev,
	      const struct ovl_cred *cred, struct ovl_node **node, struct stat *st)
{
	struct new_object o = {.mode = mode, .rdev = rdev, .open_flags = -1, .fd = -1};

	/* That would be a whiteout. */
	if (S_ISCHR(mode) && rdev == OVL_WHITEOUT_DEV)
		return -EPERM;
	if (S_ISDIR(mode) || S_ISLNK(mode))
		return -EINVAL;
	o.as_file = ovl_owner_device_as_file(fs, mode);
	return create_common(fs, parent, name, &o, cred, node, st);
}

int ovl_symlink(struct ovl_fs *fs, struct ovl_node *parent, const char *name, const char *target,
		const struct ovl_cred *cred, struct ovl_node **node, struct stat *st)
{
	struct new_object o = {
	    .mode = S_IFLNK | 0777, .target = target, .open_flags = -1, .fd = -1};
	return create_common(fs, parent, name, &o, cred, node, st);
}

int ovl_create(struct ovl_fs *fs, struct ovl_node *parent, const char *name, mode_t mode, int flags,
	       const struct ovl_cred *cred, struct ovl_node **node, struct stat *st,
	       struct ovl_file **out)
{
	struct new_object o = {.mode = S_IFREG | (mode & 07777), .open_flags = flags, .fd = -1};
	int err = create_common(fs, parent, name, &o, cred, node, st);

	if (err)
		return err;
	*out = ovl_file_new(fs, *node, o.fd, flags, true);
	if (!*out) {
		close(o.fd);
		ovl_forget(fs, *node, 1);
		return -ENOMEM;
	}
	return 0;
}

/* Owner and mode of a new O_TMPFILE, as set_owner gives a named object. */
static int set_tmpfile_owner(struct ovl_fs *fs, int fd, mode_t mode, uid_t uid, gid_t gid)
{
	bool done;
	int err = ovl_owner_init_new_fd(fs, fd, mode, 0, uid, gid, &done);

	if (err || done)
		return err;
	if ((uid != fs->euid || gid != fs->egid) && fchown(fd, uid, gid) < 0)
		return -errno;
	if ((mode & 07000) && fchmod(fd, mode & 07777) < 0)
		return -errno;
	return 0;
}

/* An unnamed regular file in the upper directory (O_TMPFILE of the upper filesystem, so
 * that nothing of it is left anywhere when it is closed unlinked, even after a crash), and
 * the open fd of it in *fd.
 * Preconditions: the rename lock and parent's op lock; parent is on upper. */
static int make_tmpfile(struct ovl_fs *fs, int pdfd, mode_t mode, int flags,
			const struct ovl_cred *cred, int *fd)
{
	struct stat pst;
	uid_t uid;
	gid_t gid;
	bool sgid;

	if (fstat(pdfd, &pst) < 0)
		return -errno;
	ovl_owner_new_ids(fs, cred, pdfd, &pst, &uid, &gid, &sgid);
	/* As create_in: the umask where no default ACL shapes the mode. */
	bool acl = ovl_has_default_acl(pdfd);
	if (!acl)
		mode &= ~(cred->umask & 0777);
	/* Without O_EXCL: the kernel refuses linkat of an O_EXCL tmpfile itself (vfs_link). */
	int fl =
	    (flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY | O_TMPFILE)) | O_TMPFILE | O_CLOEXEC;
	*fd = openat(pdfd, ".", fl, mode & 07777);
	if (*fd < 0 && errno == EINVAL && (fl & O_DIRECT))
		*fd = openat(pdfd, ".", fl & ~O_DIRECT, mode & 07777);
	if (*fd < 0)
		return -errno;
	int err = 0;
	if (acl) { /* the upper filesystem fitted the mode to the default ACL: keep it */
		struct stat st;
		if (fstat(*fd, &st) < 0)
			err = -errno;
		else
			mode = (mode & ~(mode_t)0777) | (st.st_mode & 0777);
	}
	if (!err)
		err = set_tmpfile_owner(fs, *fd, S_IFREG | (mode & 07777), uid, gid);
	if (err) {
		close(*fd);
		*fd = -1;
	}
	return err;
}

int ovl_tmpfile(struct ovl_fs *fs, struct ovl_node *parent, mode_t mode, int flags,
		const struct ovl_cred *cred, struct ovl_node **node, struct stat *st,
		struct ovl_file **out)
{
	struct ovl_found f = {.top = 0};
	struct ovl_orphan *orphan = NULL;
	char proc[64];
	int err, fd = -1, pdfd;

	if (fs->readonly)
		return -EROFS;
	if (parent->type != S_IFDIR || parent->unlinked)
		return parent->type != S_IFDIR ? -ENOTDIR : -ENOENT;
	pthread_rwlock_rdlock(&fs->rename_lock);
	err = upper_dir_for_new_name(fs, parent);
	if (err)
		goto unlock;
	pthread_mutex_lock(&parent->op_lock);
	pdfd = ovl_open_in_layer(fs, parent, 0, O_PATH | O_DIRECTORY);
	err = pdfd < 0 ? pdfd : make_tmpfile(fs, pdfd, mode, flags, cred, &fd);
	if (pdfd >= 0)
		close(pdfd);
	if (!err && !(orphan = calloc(1, sizeof(*orphan))))
		err = -ENOMEM;
	if (orphan)
		orphan->fd = -1;
	/* What keeps the object for the node (as an unlinked node's): a path-only fd, through
	 * which a link gives it a name (ovl_link). */
	if (!err && (err = ovl_proc_path(fd, proc, sizeof(proc))) == 0 &&
	    (orphan->fd = open(proc, O_PATH | O_CLOEXEC)) < 0) {
		err = -errno;
		orphan->fd = -1;
	}
	if (!err && fstat(fd, &f.st) < 0)
		err = -errno;
	/* A node born unlinked: entered under a name no directory can hold (no lookup can
	 * meet it), then detached at once, under the op lock, which other tmpfiles of this
	 * directory wait for. */
	if (!err)
		err = ovl_node_install(fs, parent, "/", &f, OVL_INSTALL_FRESH, node, st);
	if (!err) {
		ovl_node_detach(fs, *node, orphan, &f.st);
		orphan = NULL;
	}
	pthread_mutex_unlock(&parent->op_lock);
	ovl_orphan_free(orphan);
	if (err)
		goto unlock;
	*out = ovl_file_new(fs, *node, fd, flags, true);
	if (!*out) {
		err = -ENOMEM;
		ovl_forget(fs, *node, 1);
	}
unlock:
	pthread_rwlock_unlock(&fs->rename_lock);
	if (err && fd >= 0)
		close(fd);
	return err;
}

/* Gives an unlinked upper node's object (an O_TMPFILE, which the kernel lets be linked
 * unless it was opened O_EXCL) the name parent/name, linked from the object the node kept,
 * and makes the node that name's: the reply then names the node the kernel has, so the
 * open fd and the new name stay one inode.
 * Preconditions: the rename lock written (the node's parent, name and record change). */
static int link_unnamed(struct ovl_fs *fs, struct ovl_node *src, struct ovl_node *parent,
			const char *name, struct ovl_node **node, struct stat *st)
{
	struct ovl_found f;
	char tmp[64], proc[64];
	int err, pdfd;

	/* Only an upper object can get an upper name (a lower one is not ours to link). */
	if (!ovl_node_is_upper(fs, src) || ovl_orphan_fd(src) < 0)
		return -ENOENT;
	err = upper_dir_for_new_name(fs, parent);
	if (!err)
		err = ovl_proc_path(ovl_orphan_fd(src), proc, sizeof(proc));
	if (err)
		return err;
	pdfd = ovl_open_in_layer(fs, parent, 0, O_PATH | O_DIRECTORY);
	if (pdfd < 0)
		return pdfd;
	err = name_is_free(fs, parent, name, pdfd, &f);
	/* The fd's magic link, followed: linkat's way to an object without a name. */
	if (!err && !f.whiteout_in_upper) {
		if (linkat(AT_FDCWD, proc, pdfd, name, AT_SYMLINK_FOLLOW) < 0)
			err = -errno;
		else if (f.whfile_in_upper)
			ovl_drop_wh_file(pdfd, name);
	} else if (!err) {
		err = ovl_tmpname(fs, tmp, sizeof(tmp));
		if (!err && linkat(AT_FDCWD, proc, fs->work_fd, tmp, AT_SYMLINK_FOLLOW) < 0)
			err = -errno;
		if (!err && renameat(fs->work_fd, tmp, pdfd, name) < 0) {
			err = -errno;
			(void)unlinkat(fs->work_fd, tmp, 0);
		}
	}
	close(pdfd);
	if (err)
		return err;
	err = ovl_node_relink(fs, src, parent, name);
	if (!err) {
		*node = src;
		err = ovl_stat_node(fs, src, st);
		if (err)
			ovl_forget(fs, src, 1);
		return err;
	}
	/* The table holds a node of that name already (a name removed behind our back):
	 * the name is that node's, as for any link. */
	return ovl_lookup_locked(fs, parent, name, node, st);
}

/* The node a link's reply names: the source's, whose object the new name is (one inode for
 * all names), with one more lookup. Preconditions: the rename lock and parent's op lock. */
static int link_reply(struct ovl_fs *fs, struct ovl_node *src, struct ovl_node *parent,
		      const char *name, int pdfd, struct ovl_node **node, struct stat *st)
{
	struct stat raw;
	int err;

	if (fstatat(pdfd, name, &raw, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	pthread_mutex_lock(&fs->table_lock);
	err = ovl_node_get_child(fs, parent, name)
		  ? -EEXIST
		  : ovl_alias_link_table_locked(fs, src, parent, name, &raw);
	if (!err && src->nlookup++ == 0)
		src->refs++;
	pthread_mutex_unlock(&fs->table_lock);
	if (err) /* a node of its own (a name removed behind our back, no memory) */
		return ovl_lookup_locked(fs, parent, name, node, st);
	*node = src;
	err = ovl_stat_node(fs, src, st);
	if (err)
		ovl_forget(fs, src, 1);
	return err;
}

int ovl_link(struct ovl_fs *fs, struct ovl_node *src, struct ovl_node *parent, const char *name,
	     struct ovl_node **node, struct stat *st)
{
	struct ovl_found f;
	char tmp[64];
	const char *sname;
	int err, pdfd = -1, sdfd = -1;

	if (src->type == S_IFDIR)
		return -EPERM;
	if (fs->readonly)
		return -EROFS;
	if (ovl_oci_name(fs, name))
		return -EINVAL;
	/* A second name may change the xattrs behind this node's back. */
	atomic_store(&src->no_xattrs, false);
	if (atomic_load(&src->unlinked)) {
		pthread_rwlock_wrlock(&fs->rename_lock);
		if (src->unlinked) { /* else a link of the same tmpfile named it meanwhile */
			err = link_unnamed(fs, src, parent, name, node, st);
			pthread_rwlock_unlock(&fs->rename_lock);
			return err;
		}
		pthread_rwlock_unlock(&fs->rename_lock);
	}
	pthread_rwlock_rdlock(&fs->rename_lock);
	/* As the kernel's vfs_link and may_create. */
	err = ovl_node_prot(fs, src);
	if (err > 0)
		err = -EPERM;
	if (!err)
		err = may_create(fs, parent);
	if (!err) /* with metacopy=on a stub naming its data, as the kernel's */
		err = ovl_copy_up_for_move_locked(fs, src, NULL, false);
	if (!err)
		err = ovl_copy_up_locked(fs, parent, false);
	if (err)
		goto unlock;
	pthread_mutex_lock(&parent->op_lock);
	pdfd = ovl_open_in_layer(fs, parent, 0, O_PATH | O_DIRECTORY);
	if (pdfd < 0)
		err = pdfd;
	else
		err = name_is_free(fs, parent, name, pdfd, &f);
	if (!err)
		sdfd = ovl_open_parent(fs, src, 0, &sname);
	if (!err && sdfd < 0)
		err = sdfd;
	if (!err && !f.whiteout_in_upper) {
		if (linkat(sdfd, sname, pdfd, name, 0) < 0)
			err = -errno;
		else if (f.whfile_in_upper)
			ovl_drop_wh_file(pdfd, name);
	} else if (!err) {
		err = ovl_tmpname(fs, tmp, sizeof(tmp));
		if (!err && linkat(sdfd, sname, fs->work_fd, tmp, 0) < 0)
			err = -errno;
		if (!err && renameat(fs->work_fd, tmp, pdfd, name) < 0) {
			err = -errno;
			(void)unlinkat(fs->work_fd, tmp, 0);
		}
	}
	if (!err) /* a name with an origin: readers of the directory look its number up */
		err = ovl_mark_impure_for(fs, pdfd, name);
	if (!err)
		err = link_reply(fs, src, parent, name, pdfd, node, st);
	if (pdfd >= 0)
		close(pdfd);
	if (sdfd >= 0)
		close(sdfd);
	pthread_mutex_unlock(&parent->op_lock);
unlock:
	pthread_rwlock_unlock(&fs->rename_lock);
	return err;
}

/* Forgets the name in the node table (if the kernel knows it), keeping its last attributes
 * for fds still open on it; a hard-linked file's node takes another of its names
 * (exclusive: the rename lock is written). */
static void detach_child(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
			 const struct stat *st, struct ovl_orphan *orphan, bool exclusive)
{
	pthread_mutex_lock(&fs->table_lock);
	if (ovl_alias_drop_name_table_locked(fs, parent, name)) {
		pthread_mutex_unlock(&fs->table_lock);
		ovl_orphan_free(orphan);
		return;
	}
	struct ovl_node *child = ovl_node_get_child(fs, parent, name);
	if (child)
		child->refs++;
	pthread_mutex_unlock(&fs->table_lock);
	if (!child) {
		ovl_orphan_free(orphan);
		return;
	}
	ovl_name_removed(fs, child, parent, name, orphan, st, exclusive);
	ovl_node_unref(fs, child, 0, 1);
}

/* Whether removing parent/name moves its node to another name, which needs the rename lock
 * written: its node's own name, with other names known. */
static bool removal_moves_node(struct ovl_fs *fs, struct ovl_node *parent, const char *name)
{
	pthread_mutex_lock(&fs->table_lock);
	bool moves = ovl_alias_child_has_names_table_locked(fs, parent, name);
	pthread_mutex_unlock(&fs->table_lock);
	return moves;
}

/* Checks the node is an empty directory by the merged definition (whiteouts only). */
int ovl_check_empty(struct ovl_fs *fs, struct ovl_node *dir)
{
	struct ovl_dirent *ents;
	size_t count;
	int err = ovl_merge_dir(fs, dir, &ents, &count, NULL);

	if (err)
		return err;
	ovl_dirents_free(ents, count);
	return count ? -ENOTEMPTY : 0;
}

/* A node for a directory the kernel may not have looked up, to list or walk it. Its inode
 * number 0 keeps it out of the directory fd cache (its address is reused). */
static void temp_node(struct ovl_node *tmp, struct ovl_node *parent, const char *name,
		      struct ovl_found *f)
{
	memset(tmp, 0, sizeof(*tmp));
	tmp->parent = parent;
	tmp->name = (char *)name;
	tmp->type = S_IFDIR;
	tmp->top = f->top;
	tmp->dirlayers = f->dirlayers;
	tmp->ndirlayers = f->ndirlayers;
	pthread_spin_init(&tmp->lock, PTHREAD_PROCESS_PRIVATE);
}

/* Removes the upper entry `name` of a found object, leaving a whiteout where the name
 * exists below. A directory goes to the work directory first (atomically), then is
 * deleted with the whiteouts it held. */
int ovl_remove_upper(struct ovl_fs *fs, int pdfd, const char *name, const struct ovl_found *f)
{
	bool dir = S_ISDIR(f->st.st_mode);
	char tmp[64];
	int err;

	if (f->top != 0 || !fs->has_upper)
		return ovl_make_whiteout(fs, pdfd, name, false);
	if (!dir)
		return f->below ? ovl_make_whiteout(fs, pdfd, name, true)
				: (unlinkat(pdfd, name, 0) < 0 ? -errno : 0);
	err = ovl_tmpname(fs, tmp, sizeof(tmp));
	if (err)
		return err;
	if (f->below) {
		err = ovl_whiteout_dir(fs, pdfd, name, tmp);
		if (err)
			return err;
	} else if (renameat(pdfd, name, fs->work_fd, tmp) < 0) {
		return -errno;
	}
	(void)ovl_remove_tree_at(fs->work_fd, tmp); /* leftovers go at the next mount */
	return 0;
}

/* Whether `name` in parent can be removed: it exists, has the right type, and a directory
 * is empty by the merged definition; f is filled.
 * Preconditions: the rename lock and parent's op lock. */
static int check_removable(struct ovl_fs *fs, struct ovl_node *parent, const char *name, bool dir,
			   struct ovl_found *f)
{
	int err = ovl_find(fs, parent, name, OVL_FIND_BELOW, f);

	if (!err && f->top < 0)
		err = -ENOENT;
	if (!err && dir && !S_ISDIR(f->st.st_mode))
		err = -ENOTDIR;
	if (!err && !dir && S_ISDIR(f->st.st_mode))
		err = -EISDIR;
	if (!err && dir) {
		struct ovl_node tmp;
		temp_node(&tmp, parent, name, f);
		err = ovl_check_empty(fs, &tmp);
		pthread_spin_destroy(&tmp.lock);
	}
	return err;
}

/* The kernel's may_delete rule: neither the name's object nor its directory may be
 * immutable or append-only. Preconditions: as check_removable. */
static int removal_allowed(struct ovl_fs *fs, struct ovl_node *parent, const char *name,
			   const struct ovl_found *f)
{
	int prot = ovl_node_prot(fs, parent);

	if (!prot)
		prot = ovl_found_prot(fs, parent, name, f);
	return prot > 0 ? -EPERM : prot;
}

static int remove_common(struct ovl_fs *fs, struct ovl_node *parent, const char *name, bool dir)
{
	struct ovl_found f = {0};
	int err = 0, pdfd = -1;

	if (fs->readonly)
		return -EROFS;
	/* The rare removal that renames a node in the table excludes every path walk. */
	bool exclusive = !dir && removal_moves_node(fs, parent, name);
	if (exclusive)
		pthread_rwlock_wrlock(&fs->rename_lock);
	else
		pthread_rwlock_rdlock(&fs->rename_lock);
	if (!ovl_node_is_upper(fs, parent)) {
		/* A removal that fails (ENOTEMPTY...) must not copy the parent up. */
		pthread_mutex_lock(&parent->op_lock);
		err = check_removable(fs, parent, name, dir, &f);
		if (!err)
			err = removal_allowed(fs, parent, name, &f);
		pthread_mutex_unlock(&parent->op_lock);
		ovl_found_free(&f);
		if (!err)
			err = ovl_copy_up_locked(fs, parent, false);
	}
	if (!err && !dir) /* a lower hard link's group counts one name less */
		err = ovl_index_prepare_locked(fs, parent, name);
	if (err)
		goto unlock;
	pthread_mutex_lock(&parent->op_lock);
	err = check_removable(fs, parent, name, dir, &f);
	if (!err)
		err = removal_allowed(fs, parent, name, &f);
	if (!err) /* whether the removal leaves a whiteout */
		err = ovl_name_below(fs, parent, name, &f, &f.below);
	if (!err)
		pdfd = ovl_open_in_layer(fs, parent, 0, O_PATH | O_DIRECTORY);
	if (!err && pdfd < 0)
		err = pdfd;
	struct ovl_orphan *keep = NULL;
	char hex[OVL_INDEX_NAME_MAX];
	bool indexed = !err && !dir && ovl_index_entry_of(fs, pdfd, name, hex);
	if (!err)
		err = ovl_keep_orphan(fs, parent, name, &keep);
	if (!err)
		err = ovl_remove_upper(fs, pdfd, name, &f);
	if (!err && indexed)
		ovl_index_name_removed(fs, hex);
	if (!err)
		detach_child(fs, parent, name, &f.st, keep, exclusive);
	else
		ovl_orphan_free(keep);
	if (pdfd >= 0)
		close(pdfd);
	pthread_mutex_unlock(&parent->op_lock);
unlock:
	ovl_found_free(&f);
	pthread_rwlock_unlock(&fs->rename_lock);
	return err;
}

int ovl_unlink(struct ovl_fs *fs, struct ovl_node *parent, const char *name)
{
	return remove_common(fs, parent, name, false);
}

int ovl_rmdir(struct ovl_fs *fs, struct ovl_node *parent, const char *name)
{
	return remove_common(fs, parent, name, true);
}
