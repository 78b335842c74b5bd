/*
 * On-disk formats. Read, always and in every layer: whiteouts as char 0/0, as 6.7+ xattr
 * whiteouts, and as OCI `.wh.<name>` files; opaque directories by overlay.opaque="y",
 * user.fuseoverlayfs.opaque="y" or a `.wh..wh..opq` file inside. Written: the kernel's
 * format (char 0/0, trusted.overlay.opaque) when privileged; otherwise (rootless) markers
 * under user.overlay. (the kernel's userxattr) and whiteouts as `.wh.` files. The choice
 * is probed at mount and recorded on the upper root, so that later mounts write the same.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

/* The record on the upper root: OVL_FORMAT_WH_FILE or _CHARDEV. Under user.overlay. it also
 * means userxattr. Only written when the format is not the kernel's default. */
#define REC_TRUSTED OVL_XATTR_PREFIX OVL_X_FORMAT
#define REC_USER OVL_UXATTR_PREFIX OVL_X_FORMAT

int ovl_has_wh_file(int dfd, const char *name)
{
	char wh[NAME_MAX + 8];
	struct stat st;

	if (ovl_wh_name(name, wh, sizeof(wh)) < 0)
		return 0; /* no such name can exist */
	if (fstatat(dfd, wh, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return 1;
	return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
}

static int mark_value(int dfd, const char *name, const char *xname)
{
	char v;

	return ovl_opaque_value(&v, ovl_getxattr_at(dfd, name, xname, &v, 1));
}

#ifndef SYS_listxattrat
#define SYS_listxattrat 465 /* Linux 6.13; one number on every architecture */
#endif

/* Which of the marks dfd/name carries, from one listxattrat (most objects carry none, and
 * one call then replaces several getxattrs). Bit i set: marks[i] present; OVL_REC_ANY: some
 * xattr at all; -1: unknown (no listxattrat, or a long list), ask each. */
static int listed_marks(int dfd, const char *name, const char *const *marks, int n)
{
	static atomic_bool no_listxattrat;
	char list[512];
	int found = 0;
	long len;

	if (atomic_load(&no_listxattrat))
		return -1;
	len = syscall(SYS_listxattrat, dfd, name, AT_SYMLINK_NOFOLLOW, list, sizeof(list));
	if (len < 0) {
		if (errno == ENOSYS)
			atomic_store(&no_listxattrat, true);
		return -1;
	}
	for (long i = 0; i < len; i += (long)strlen(list + i) + 1)
		for (int j = 0; j < n; j++)
			if (strcmp(list + i, marks[j]) == 0)
				found |= 1 << j;
	return len > 0 ? found | OVL_REC_ANY : found;
}

int ovl_upper_records(struct ovl_fs *fs, int dfd, const char *name)
{
	const char *const marks[] = {ovl_origin_xattr(fs), ovl_metacopy_xattr(fs)};

	return listed_marks(dfd, name, marks, 2);
}

int ovl_dir_opaque(struct ovl_fs *fs, int dfd, const char *name, bool below)
{
	int has;

	return ovl_dir_opaque_listed(fs, dfd, name, below, &has);
}

int ovl_dir_opaque_listed(struct ovl_fs *fs, int dfd, const char *name, bool below, int *listed)
{
	const char *const marks[] = {OVL_XATTR_OPAQUE, fs->x_opaque, OVL_FXATTR_OPAQUE};
	char path[NAME_MAX + sizeof(OVL_WH_OPAQUE) + 2];
	int has = *listed = listed_marks(dfd, name, marks, 3);
	struct stat st;
	int v = 0, u;

	if (fs->read_trusted && (has & 1))
		v = mark_value(dfd, name, OVL_XATTR_OPAQUE);
	if (v != OVL_OPAQUE_YES && fs->userxattr && (has & 2) &&
	    (u = mark_value(dfd, name, fs->x_opaque)))
		v = u;
	/* What follows only hides lower layers: not worth a syscall with none below. */
	if (v == OVL_OPAQUE_YES || !below)
		return v;
	if ((has & 4) && mark_value(dfd, name, OVL_FXATTR_OPAQUE) == OVL_OPAQUE_YES)
		return OVL_OPAQUE_YES;
	if (!fs->oci_whiteouts)
		return v; /* .wh..wh..opq is a plain name */
	if (snprintf(path, sizeof(path), "%s/" OVL_WH_OPAQUE, name) >= (int)sizeof(path))
		return v;
	return fstatat(dfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 ? OVL_OPAQUE_YES : v;
}

int ovl_is_xwhiteout(struct ovl_fs *fs, int dirfd, const char *name, const struct stat *st)
{
	if (!ovl_may_be_xwhiteout(st))
		return 0;
	if (fs->read_trusted && ovl_getxattr_at(dirfd, name, OVL_XATTR_WHITEOUT, NULL, 0) >= 0)
		return 1;
	return fs->userxattr && ovl_getxattr_at(dirfd, name, fs->x_whiteout, NULL, 0) >= 0;
}

/* An empty .wh.<name>; one already there is just as good. */
static int make_wh_file(int dirfd, const char *name)
{
	char wh[NAME_MAX + 8];
	int err = ovl_wh_name(name, wh, sizeof(wh));
	int fd;

	if (err)
		return err;
	fd = openat(dirfd, wh, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return errno == EEXIST ? 0 : -errno;
	close(fd);
	return 0;
}

void ovl_drop_wh_file(int dfd, const char *name)
{
	char wh[NAME_MAX + 8];

	/* Best effort: a name in a layer wins over that layer's .wh.<name> anyway. */
	if (ovl_wh_name(name, wh, sizeof(wh)) == 0)
		(void)unlinkat(dfd, wh, 0);
}

/* A link of the shared whiteout at dirfd/name, made first if there is none; one that is
 * full (EMLINK) or gone is replaced (the names linked to a full one keep it). */
static int link_shared_whiteout(struct ovl_fs *fs, int dirfd, const char *name)
{
	int err = 0;

	pthread_mutex_lock(&fs->whiteout_lock);
	for (int tries = 0; tries < 2; tries++) {
		if (!fs->whiteout_name[0]) {
			char tmp[sizeof(fs->whiteout_name)];
			err = ovl_tmpname(fs, tmp, sizeof(tmp));
			if (!err && mknodat(fs->work_fd, tmp, S_IFCHR, OVL_WHITEOUT_DEV) < 0)
				err = -errno;
			if (err)
				break;
			memcpy(fs->whiteout_name, tmp, sizeof(tmp));
		}
		err = linkat(fs->work_fd, fs->whiteout_name, dirfd, name, 0) < 0 ? -errno : 0;
		if (err == -ENOENT) { /* the target's directory, or the shared one removed? */
			struct stat st;
			if (fstatat(fs->work_fd, fs->whiteout_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
				break;
		} else if (err != -EMLINK) {
			break;
		} else if (unlinkat(fs->work_fd, fs->whiteout_name, 0) < 0) {
			err = -errno;
			break;
		}
		fs->whiteout_name[0] = '\0';
	}
	pthread_mutex_unlock(&fs->whiteout_lock);
	return err;
}

/* A new whiteout (a 0/0 character device) at dirfd/name. As the kernel's (fs/overlayfs
 * ovl_whiteout), a hard link of one whiteout kept in the work directory: on ext4 a new
 * inode per whiteout was most of the daemon's time in rm -rf of lower files. Where a link
 * fails and a new inode does not, sharing stops for the mount, as on the kernel. */
static int new_whiteout(struct ovl_fs *fs, int dirfd, const char *name)
{
	if (!atomic_load(&fs->whiteout_unshared)) {
		int err = link_shared_whiteout(fs, dirfd, name);
		if (!err || err == -EEXIST || err == -ENOENT || err == -ENOSPC || err == -EDQUOT)
			return err; /* a new inode would fail the same way */
	}
	if (mknodat(dirfd, name, S_IFCHR, OVL_WHITEOUT_DEV) < 0)
		return -errno;
	if (!atomic_exchange(&fs->whiteout_unshared, true))
		ovl_warn(fs, "whiteouts: linking failed, each whiteout is a new inode from now on");
	return 0;
}

int ovl_make_whiteout(struct ovl_fs *fs, int dirfd, const char *name, bool replace)
{
	char tmp[64];
	int err;

	if (fs->file_whiteouts) {
		/* The .wh. file first: until the name goes, the name still wins. */
		err = make_wh_file(dirfd, name);
		if (!err && replace && unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
			err = -errno;
		return err;
	}
	if (!replace)
		return new_whiteout(fs, dirfd, name);
	err = ovl_tmpname(fs, tmp, sizeof(tmp));
	if (!err)
		err = new_whiteout(fs, fs->work_fd, tmp);
	if (err)
		return err;
	if (renameat(fs->work_fd, tmp, dirfd, name) < 0) {
		err = -errno;
		(void)unlinkat(fs->work_fd, tmp, 0);
	}
	return err;
}

int ovl_whiteout_dir(struct ovl_fs *fs, int pdfd, const char *name, const char *tmp)
{
	int err;

	if (fs->file_whiteouts) {
		err = make_wh_file(pdfd, name);
		if (!err && renameat(pdfd, name, fs->work_fd, tmp) < 0)
			err = -errno;
		return err;
	}
	err = new_whiteout(fs, fs->work_fd, tmp);
	if (err)
		return err;
	if (renameat2(fs->work_fd, tmp, pdfd, name, RENAME_EXCHANGE) < 0) {
		err = -errno;
		(void)unlinkat(fs->work_fd, tmp, 0);
		return err;
	}
	return 0;
}

int ovl_set_opaque(struct ovl_fs *fs, int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int err = 0;

	if (fd < 0)
		return -errno;
	if (fsetxattr(fd, fs->x_opaque, &(char){OVL_OPAQUE_YES}, 1, 0) < 0)
		err = -errno;
	if (fs->file_whiteouts) {
		/* The OCI form too, for tools that read only that; it alone is enough for us
		 * where user xattrs are not supported. */
		int r = make_wh_file(fd, &OVL_WH_OPAQUE[sizeof(OVL_WH_PREFIX) - 1]);
		if (r || err == -EOPNOTSUPP)
			err = r;
	}
	close(fd);
	return err;
}

void ovl_fs_format(const struct ovl_fs *fs, bool *userxattr, bool *file_whiteouts)
{
	*userxattr = fs->userxattr;
	*file_whiteouts = fs->file_whiteouts;
}

/* Whether the work directory takes a trusted.overlay.* xattr (privileged) or a 0/0
 * character device (CAP_MKNOD). Returns 1, 0, or -errno for another failure. */
static int probe(struct ovl_fs *fs, bool xattr)
{
	char tmp[64];
	int err = ovl_tmpname(fs, tmp, sizeof(tmp)), fd, ok = 1;

	if (err)
		return err;
	if (!xattr) {
		if (mknodat(fs->work_fd, tmp, S_IFCHR | 0600, OVL_WHITEOUT_DEV) == 0)
			return unlinkat(fs->work_fd, tmp, 0) < 0 ? -errno : 1;
		return errno == EPERM || errno == EOPNOTSUPP || errno == EACCES ? 0 : -errno;
	}
	fd = openat(fs->work_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (fsetxattr(fd, OVL_XATTR_PREFIX "probe", "", 0, 0) < 0)
		ok = errno == EPERM || errno == EOPNOTSUPP || errno == EACCES ? 0 : -errno;
	close(fd);
	if (unlinkat(fs->work_fd, tmp, 0) < 0 && ok >= 0)
		ok = -errno;
	return ok;
}

/* Reads what an earlier mount recorded; 'f' (file), 'c' (chardev) or 0. */
static int read_record(struct ovl_fs *fs, bool *user)
{
	char v[32];
	int n, root = fs->layers[0].root_fd;

	*user = false;
	n = ovl_fd_getxattr(root, REC_USER, v, sizeof(v) - 1);
	if (n >= 0)
		*user = true;
	else if (fs->read_trusted)
		n = ovl_fd_getxattr(root, REC_TRUSTED, v, sizeof(v) - 1);
	if (n < 0)
		return 0;
	v[n] = '\0';
	return strcmp(v, OVL_FORMAT_WH_FILE) == 0      ? 'f'
	       : strcmp(v, OVL_FORMAT_WH_CHARDEV) == 0 ? 'c'
						       : 0;
}

static void write_record(struct ovl_fs *fs)
{
	const char *name = fs->userxattr ? REC_USER : REC_TRUSTED;
	const char *v = fs->file_whiteouts ? OVL_FORMAT_WH_FILE : OVL_FORMAT_WH_CHARDEV;
	char proc[64], old[32];
	int n;

	if (ovl_proc_path(fs->layers[0].root_fd, proc, sizeof(proc)) < 0)
		return;
	n = (int)getxattr(proc, name, old, sizeof(old) - 1);
	if (n >= 0 && (size_t)n == strlen(v) && memcmp(old, v, (size_t)n) == 0)
		return;
	/* Best effort: reading honours every form anyway; only later writes would differ. */
	(void)setxattr(proc, name, v, strlen(v), 0);
}

int ovl_formats_init(struct ovl_fs *fs, const struct ovl_fs_params *p)
{
	bool writable = fs->has_upper && !fs->readonly && fs->work_fd >= 0;
	bool rec_user = false;
	int rec = 0, r;

	r = writable ? probe(fs, true) : geteuid() == 0;
	if (r < 0)
		return r;
	/* Root reads the lower layers' trusted marks even if the upper cannot hold them. */
	fs->read_trusted = r || geteuid() == 0;
	if (fs->has_upper)
		rec = read_record(fs, &rec_user);
	fs->userxattr = p->userxattr || rec_user || !r;
	snprintf(fs->x_opaque, sizeof(fs->x_opaque), "%s" OVL_X_OPAQUE,
		 fs->userxattr ? OVL_UXATTR_PREFIX : OVL_XATTR_PREFIX);
	snprintf(fs->x_whiteout, sizeof(fs->x_whiteout), "%s" OVL_X_WHITEOUT,
		 fs->userxattr ? OVL_UXATTR_PREFIX : OVL_XATTR_PREFIX);
	if (!writable)
		return 0;
	/* Without OCI whiteouts a .wh. file would be read back as a plain name. */
	if (!fs->oci_whiteouts && p->whiteout == OVL_WHITEOUT_FILE)
		return -EINVAL;
	if (fs->oci_whiteouts && (p->whiteout == OVL_WHITEOUT_FILE ||
				  (p->whiteout == OVL_WHITEOUT_AUTO && rec == 'f'))) {
		fs->file_whiteouts = true;
	} else {
		r = probe(fs, false);
		if (r < 0)
			return r;
		if (!r && (p->whiteout == OVL_WHITEOUT_CHARDEV || !fs->oci_whiteouts))
			return -EPERM; /* asked for (or the only form left), not permitted */
		fs->file_whiteouts = !r;
	}
	if (fs->userxattr || fs->file_whiteouts)
		write_record(fs);
	return 0;
}
