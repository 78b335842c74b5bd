/*
 * Ownership as the mount shows it, as fuse-overlayfs does it:
 * - uidmapping=/gidmapping= shift IDs between the disk and the mount (idmap.c);
 * - squash_to_root/uid/gid show one owner for everything, and chown always succeeds;
 * - override xattrs keep "uid:gid:mode[:type]" of an object when the layer cannot (a
 *   rootless daemon can neither chown nor mknod): a layer whose root carries one is read
 *   that way, and xattr_permissions=1|2 makes the upper layer one.
 * IDs on disk and in override xattrs are disk-side; only what crosses the mount is mapped.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#define XATTR_PRIVILEGED "security.fuseoverlayfs.override_stat"
#define XATTR_CONTAINERS "user.containers.override_stat"
#define XATTR_LEGACY OVL_FXATTR_PREFIX "override_stat"

/* The names an override layer is read with, first found wins. */
static const char *const read_names[][3] = {
    [OVL_OVR_NONE] = {NULL},
    [OVL_OVR_PRIVILEGED] = {XATTR_PRIVILEGED, NULL},
    [OVL_OVR_CONTAINERS] = {XATTR_CONTAINERS, XATTR_LEGACY, NULL},
    [OVL_OVR_USER] = {XATTR_LEGACY, NULL},
};

struct override {
	uint32_t uid, gid;
	mode_t mode; /* permission bits */
	mode_t type; /* S_IFMT bits, 0 when the value names none */
	dev_t rdev;
};

static int parse_type(const char *t, struct override *o)
{
	static const struct {
		const char *name;
		mode_t type;
	} types[] = {{"dir", S_IFDIR},
		     {"file", S_IFREG},
		     {"symlink", S_IFLNK},
		     {"pipe", S_IFIFO},
		     {"socket", S_IFSOCK}};
	unsigned maj, min;
	int n = 0;

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (!strcmp(t, types[i].name)) {
			o->type = types[i].type;
			return 0;
		}
	if (sscanf(t, "block-%u-%u%n", &maj, &min, &n) == 2 && !t[n])
		o->type = S_IFBLK;
	else if (sscanf(t, "char-%u-%u%n", &maj, &min, &n) == 2 && !t[n])
		o->type = S_IFCHR;
	else
		return -EINVAL;
	o->rdev = makedev(maj, min);
	return 0;
}

/* "uid:gid:octal-mode[:type]" */
static int parse_override(char *v, struct override *o)
{
	unsigned long uid, gid, mode;
	char *end;

	memset(o, 0, sizeof(*o));
	uid = strtoul(v, &end, 10);
	if (end == v || *end != ':')
		return -EINVAL;
	v = end + 1;
	gid = strtoul(v, &end, 10);
	if (end == v || *end != ':')
		return -EINVAL;
	v = end + 1;
	mode = strtoul(v, &end, 8);
	if (end == v || (*end && *end != ':') || uid > UINT32_MAX || gid > UINT32_MAX)
		return -EINVAL;
	o->uid = (uint32_t)uid;
	o->gid = (uint32_t)gid;
	o->mode = (mode_t)mode & 07777;
	return *end ? parse_type(end + 1, o) : 0;
}

static int format_override(char *buf, size_t size, uint32_t uid, uint32_t gid, mode_t mode,
			   dev_t rdev)
{
	const char *type;
	char dev[48];
	int n;

	switch (mode & S_IFMT) {
	case S_IFDIR:
		type = "dir";
		break;
	case S_IFLNK:
		type = "symlink";
		break;
	case S_IFIFO:
		type = "pipe";
		break;
	case S_IFSOCK:
		type = "socket";
		break;
	case S_IFBLK:
	case S_IFCHR:
		snprintf(dev, sizeof(dev), "%s-%u-%u", S_ISBLK(mode) ? "block" : "char",
			 major(rdev), minor(rdev));
		type = dev;
		break;
	default:
		type = "file";
		break;
	}
	n = snprintf(buf, size, "%u:%u:%04o:%s", uid, gid, (unsigned)(mode & 07777), type);
	return n < 0 || (size_t)n >= size ? -ERANGE : n;
}

/* Reads fd's override as its layer spells it: 1 found, 0 none, or -errno. */
static int read_override(int kind, int fd, struct override *o)
{
	char buf[128];

	for (const char *const *name = read_names[kind]; *name; name++) {
		int n = ovl_fd_getxattr(fd, *name, buf, sizeof(buf) - 1);
		if (n == -ENODATA)
			continue;
		if (n < 0)
			return n;
		buf[n] = '\0';
		return parse_override(buf, o) == 0 ? 1 : 0; /* a garbled value is no override */
	}
	return 0;
}

/* The type an override may show: the object's own, or a device, pipe or socket kept as a
 * regular file. */
static void apply_override(struct stat *st, const struct override *o)
{
	st->st_uid = o->uid;
	st->st_gid = o->gid;
	if (o->type && o->type != (st->st_mode & S_IFMT) && S_ISREG(st->st_mode) &&
	    o->type != S_IFDIR && o->type != S_IFLNK) {
		st->st_mode = o->type | o->mode;
		st->st_rdev = o->rdev;
		st->st_size = 0;
	} else {
		st->st_mode = (st->st_mode & S_IFMT) | o->mode;
	}
}

static const char *write_name(int kind)
{
	return kind == OVL_OVR_PRIVILEGED ? XATTR_PRIVILEGED : XATTR_CONTAINERS;
}

/* Whether an object of this (backing) type can carry the layer's override: the kernel
 * takes user.* xattrs on regular files and directories only. */
static bool can_carry(int kind, mode_t type)
{
	return kind == OVL_OVR_PRIVILEGED || type == S_IFREG || type == S_IFDIR;
}

/* Writes the override of the object an O_PATH fd holds. */
static int write_override(int kind, int fd, uint32_t uid, uint32_t gid, mode_t mode, dev_t rdev)
{
	char proc[64], val[96];
	int n = format_override(val, sizeof(val), uid, gid, mode, rdev);

	if (n < 0)
		return n;
	if (ovl_proc_path(fd, proc, sizeof(proc)) < 0)
		return -ENAMETOOLONG;
	return setxattr(proc, write_name(kind), val, (size_t)n, 0) < 0 ? -errno : 0;
}

/* The backing object stays accessible to the daemon whatever mode it shows. */
static int chmod_backing(int fd, mode_t mode)
{
	char proc[64];

	if (S_ISLNK(mode))
		return 0;
	if (ovl_proc_path(fd, proc, sizeof(proc)) < 0)
		return -ENAMETOOLONG;
	return chmod(proc, (mode & 07777) | 0755) < 0 ? -errno : 0;
}

int ovl_owner_setup(struct ovl_fs *fs, const struct ovl_owner_opts *opts)
{
	static const struct {
		const char *name;
		int kind;
	} marks[] = {{XATTR_PRIVILEGED, OVL_OVR_PRIVILEGED},
		     {XATTR_CONTAINERS, OVL_OVR_CONTAINERS},
		     {XATTR_LEGACY, OVL_OVR_USER}};
	const struct ovl_owner_opts *o = &fs->owner;
	char val[128];
	int n = -ENODATA;

	if (opts)
		fs->owner = *opts;
	/* As fuse-overlayfs: a layer whose root carries an override is read with it. */
	for (int i = 0; i < fs->nlayers; i++)
		for (size_t m = 0; m < sizeof(marks) / sizeof(marks[0]); m++)
			if (!fs->layers[i].override &&
			    ovl_fd_getxattr(fs->layers[i].root_fd, marks[m].name, NULL, 0) >= 0)
				fs->layers[i].override = marks[m].kind;
	if (o->xattr_permissions && fs->has_upper) {
		int kind = o->xattr_permissions == 1 ? OVL_OVR_PRIVILEGED : OVL_OVR_CONTAINERS;
		int root = fs->layers[0].root_fd;
		struct stat st;
		fs->layers[0].override = kind;
		/* The root shows what a lower root says, else what it is on disk. */
		if (!fs->readonly && ovl_fd_getxattr(root, write_name(kind), NULL, 0) == -ENODATA) {
			for (int i = 1; i < fs->nlayers && n < 0; i++)
				for (size_t m = 0; m < sizeof(marks) / sizeof(marks[0]) && n < 0;
				     m++)
					n = ovl_fd_getxattr(fs->layers[i].root_fd, marks[m].name,
							    val, sizeof(val));
			char proc[64];
			if (ovl_proc_path(root, proc, sizeof(proc)) < 0)
				return -ENAMETOOLONG;
			if (n > 0 && setxattr(proc, write_name(kind), val, (size_t)n, 0) < 0)
				return -errno;
			if (n <= 0) {
				if (fstat(root, &st) < 0)
					return -errno;
				int err =
				    write_override(kind, root, st.st_uid, st.st_gid, st.st_mode, 0);
				if (err)
					return err;
			}
		}
	}
	for (int i = 0; i < fs->nlayers; i++)
		fs->owner_xattrs |= fs->layers[i].override != OVL_OVR_NONE;
	fs->owner_active = fs->owner_xattrs || o->uids.n || o->gids.n || o->squash_root ||
			   o->has_squash_uid || o->has_squash_gid;
	return 0;
}

static bool squashing(const struct ovl_fs *fs)
{
	return fs->owner.squash_root || fs->owner.has_squash_uid || fs->owner.has_squash_gid;
}

void ovl_owner_show(struct ovl_fs *fs, struct ovl_node *node, struct stat *st)
{
	const struct ovl_owner_opts *o = &fs->owner;
	struct override ovr;

	if (!fs->owner_active)
		return;
	int layer = ovl_node_top(node);
	int kind = fs->layers[layer].override;
	if (kind) {
		/* An unlinked object is reachable through the fd its open files keep. */
		int fd = !node->unlinked	    ? ovl_open_in_layer(fs, node, layer, O_PATH)
			 : ovl_orphan_fd(node) >= 0 ? dup(ovl_orphan_fd(node))
						    : -1;
		if (fd >= 0 && read_override(kind, fd, &ovr) > 0)
			apply_override(st, &ovr);
		if (fd >= 0)
			close(fd);
	}
	st->st_uid = o->has_squash_uid ? o->squash_uid
		     : o->squash_root  ? 0
				       : ovl_id_shown(&o->uids, st->st_uid);
	st->st_gid = o->has_squash_gid ? o->squash_gid
		     : o->squash_root  ? 0
				       : ovl_id_shown(&o->gids, st->st_gid);
}

/* The caller as stored: an ID outside the mapping is stored as the overflow ID, as
 * fuse-overlayfs does (the object must belong to someone). */
static uint32_t caller_on_disk(const struct ovl_idmap *m, uint32_t id)
{
	uint32_t disk;
	return ovl_id_disk(m, id, &disk) ? disk : OVL_OVERFLOW_ID;
}

void ovl_owner_new_ids(struct ovl_fs *fs, const struct ovl_cred *cred, int pdfd, struct stat *pst,
		       uid_t *uid, gid_t *gid, bool *sgid)
{
	struct override ovr;

	/* The parent's setgid bit and group may live in its override. */
	if (fs->layers[0].override && read_override(fs->layers[0].override, pdfd, &ovr) > 0)
		apply_override(pst, &ovr);
	*sgid = (pst->st_mode & S_ISGID) != 0;
	*uid = caller_on_disk(&fs->owner.uids, cred->uid);
	*gid = *sgid ? pst->st_gid : caller_on_disk(&fs->owner.gids, cred->gid);
}

bool ovl_owner_device_as_file(struct ovl_fs *fs, mode_t mode)
{
	return fs->layers[0].override && (S_ISCHR(mode) || S_ISBLK(mode));
}

int ovl_owner_init_new_fd(struct ovl_fs *fs, int fd, mode_t mode, dev_t rdev, uid_t uid, gid_t gid,
			  bool *done)
{
	int kind = fs->layers[0].override;
	mode_t backing = ovl_owner_device_as_file(fs, mode) ? S_IFREG : mode & S_IFMT;
	int err;

	*done = false;
	if (!kind || !can_carry(kind, backing))
		return 0;
	err = write_override(kind, fd, uid, gid, mode, rdev);
	if (!err)
		err = chmod_backing(fd, backing | (mode & 07777));
	*done = err == 0;
	return err;
}

int ovl_owner_init_new(struct ovl_fs *fs, int dirfd, const char *name, mode_t mode, dev_t rdev,
		       uid_t uid, gid_t gid, bool *done)
{
	int kind = fs->layers[0].override;
	mode_t backing = ovl_owner_device_as_file(fs, mode) ? S_IFREG : mode & S_IFMT;

	*done = false;
	if (!kind || !can_carry(kind, backing))
		return 0;
	int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int err = ovl_owner_init_new_fd(fs, fd, mode, rdev, uid, gid, done);
	close(fd);
	return err;
}

int ovl_owner_map_attr(struct ovl_fs *fs, int *to_set, const struct stat *attr, struct stat *a)
{
	int err = 0;

	*a = *attr;
	if (!fs->owner_active)
		return 0;
	if ((*to_set & OVL_SET_UID) && !ovl_id_disk(&fs->owner.uids, attr->st_uid, &a->st_uid))
		err = -EINVAL; /* as the kernel for an ID its user namespace does not map */
	if ((*to_set & OVL_SET_GID) && !ovl_id_disk(&fs->owner.gids, attr->st_gid, &a->st_gid))
		err = -EINVAL;
	if (err && squashing(fs)) {
		*to_set &= ~(OVL_SET_UID | OVL_SET_GID); /* nothing to keep; no error either */
		err = 0;
	}
	return err;
}

int ovl_owner_setattr(struct ovl_fs *fs, int fd, int *to_set, const struct stat *a)
{
	const int owner = OVL_SET_UID | OVL_SET_GID;
	int kind = fs->layers[0].override;
	struct override ovr;
	struct stat cur;

	if (!fs->owner_active || !(*to_set & (owner | OVL_SET_MODE)))
		return 0;
	if (kind && fstat(fd, &cur) == 0 && can_carry(kind, cur.st_mode & S_IFMT)) {
		if (read_override(kind, fd, &ovr) > 0)
			apply_override(&cur, &ovr);
		else
			ovr.rdev = cur.st_rdev;
		if (*to_set & OVL_SET_UID)
			cur.st_uid = a->st_uid;
		if (*to_set & OVL_SET_GID)
			cur.st_gid = a->st_gid;
		if (*to_set & OVL_SET_MODE)
			cur.st_mode = (cur.st_mode & S_IFMT) | (a->st_mode & 07777);
		int werr = write_override(kind, fd, cur.st_uid, cur.st_gid, cur.st_mode, ovr.rdev);
		if (werr && !squashing(fs))
			return werr;
		if (!werr && (*to_set & OVL_SET_MODE))
			*to_set &= ~OVL_SET_MODE;
		*to_set &= ~owner;
		return 0;
	}
	/* Squashed: the owner shown never changes; the layer keeps what it can, as with
	 * fuse-overlayfs, and a refusal is no error. */
	if (squashing(fs) && (*to_set & owner)) {
		(void)fchownat(fd, "", *to_set & OVL_SET_UID ? a->st_uid : (uid_t)-1,
			       *to_set & OVL_SET_GID ? a->st_gid : (gid_t)-1,
			       AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
		*to_set &= ~owner;
	}
	return 0;
}

int ovl_owner_copy_up(struct ovl_fs *fs, int layer, int sfd, int dirfd, const char *tmp,
		      const struct stat *st, bool *done)
{
	int kind = fs->layers[0].override, fd, err;
	struct stat eff = *st;
	struct override ovr = {.rdev = st->st_rdev};

	*done = false;
	if (!kind || !can_carry(kind, st->st_mode & S_IFMT))
		return 0;
	/* What the source shows (before mapping) is what the copy must show. */
	if (fs->layers[layer].override && read_override(fs->layers[layer].override, sfd, &ovr) > 0)
		apply_override(&eff, &ovr);
	fd = openat(dirfd, tmp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	err = write_override(kind, fd, eff.st_uid, eff.st_gid, eff.st_mode, eff.st_rdev);
	if (!err)
		err = chmod_backing(fd, st->st_mode);
	close(fd);
	*done = err == 0;
	return err;
}

static bool is_override_name(const char *name)
{
	return !strcmp(name, XATTR_PRIVILEGED) || !strcmp(name, XATTR_CONTAINERS) ||
	       !strcmp(name, XATTR_LEGACY);
}

bool ovl_owner_hidden_xattr(struct ovl_fs *fs, const char *name)
{
	return fs->owner_xattrs && is_override_name(name);
}

size_t ovl_owner_filter_xattrs(struct ovl_fs *fs, char *list, size_t len)
{
	size_t out = 0;

	if (!fs->owner_xattrs)
		return len;
	for (size_t i = 0; i < len;) {
		size_t n = strlen(list + i) + 1;
		if (!is_override_name(list + i)) {
			memmove(list + out, list + i, n);
			out += n;
		}
		i += n;
	}
	return out;
}
