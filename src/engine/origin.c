/*
 * The kernel's overlay.origin record: an upper object copied up from a lower one names
 * that lower object by a file handle of its filesystem, with the filesystem's UUID. The
 * lower object's inode number then stays the object's st_ino after copy-up, after a
 * remount, and under the kernel overlayfs, which reads and writes the same record.
 *
 * The value, as the kernel lays it out (byte offsets): 0 version (0), 1 magic (0xfb),
 * 2 length of the whole value, 3 flags (byte order, "handle of an upper object"), 4 the
 * handle's type, 5..20 the UUID, then the handle's bytes (name_to_handle_at's f_handle).
 * An empty value means "copied up, origin unknown" (the lower filesystem gives no handles,
 * or the writer could not decode them).
 *
 * Handles are only decoded to learn the lower object's identity (fstat of an O_PATH fd):
 * a record never makes us read or write anything outside the layers.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/xattr.h>
#include <unistd.h>

_Static_assert(OVL_FH_HEADER + MAX_HANDLE_SZ <= 255, "the length byte holds any handle");
_Static_assert(OVL_ORIGIN_MAX >= OVL_FH_HEADER + MAX_HANDLE_SZ, "a value fits its buffer");

/* uuid=off: records carry this, and only such are read (the kernel's rule). */
static const unsigned char null_uuid[16];

/* The UUID the kernel puts in handles of this filesystem (its super block's, null for a
 * filesystem that has none). */
static void layer_uuid(struct ovl_layer *l)
{
	struct ovl_fsuuid u = {0};
	int fd = openat(l->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	memset(l->uuid, 0, sizeof(l->uuid));
	if (fd < 0)
		return;
	if (ioctl(fd, OVL_IOC_GETFSUUID, &u) == 0 && u.len == sizeof(l->uuid))
		memcpy(l->uuid, u.uuid, sizeof(l->uuid));
	close(fd);
}

/* The first layer on l's filesystem. */
static struct ovl_layer *first_on_dev(struct ovl_fs *fs, const struct ovl_layer *l)
{
	for (int i = 0; i < fs->nlayers; i++)
		if (fs->layers[i].dev == l->dev)
			return &fs->layers[i];
	return NULL;
}

void ovl_origin_init(struct ovl_fs *fs)
{
	for (int i = 0; i < fs->nlayers; i++) {
		struct ovl_layer *l = &fs->layers[i];
		layer_uuid(l);
		if (first_on_dev(fs, l) == l)
			l->handle_fd = openat(l->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	/* Two filesystems with one UUID (copies of one image, or both without one): a handle
	 * cannot say which it came from; as the kernel, those of the lower layers that are not
	 * on the upper's filesystem are not searched. */
	for (int i = 0; i < fs->nlayers; i++) {
		struct ovl_layer *a = &fs->layers[i];
		for (int j = 0; j < fs->nlayers; j++) {
			struct ovl_layer *b = &fs->layers[j];
			if (a->dev != b->dev && !memcmp(a->uuid, b->uuid, sizeof(a->uuid)))
				a->uuid_shared = true;
		}
	}
	/* Handles decode only with CAP_DAC_READ_SEARCH; without it the kernel writes the
	 * "origin unknown" value, and so do we. */
	fs->origin_decodable = false;
	for (int i = 0; i < fs->nlayers && !fs->origin_decodable; i++) {
		struct {
			struct file_handle fh;
			unsigned char bytes[MAX_HANDLE_SZ];
		} h = {.fh.handle_bytes = MAX_HANDLE_SZ};
		int mount_id, fd;
		if (fs->layers[i].handle_fd < 0 ||
		    name_to_handle_at(fs->layers[i].root_fd, "", &h.fh, &mount_id, AT_EMPTY_PATH))
			continue;
		fd = open_by_handle_at(fs->layers[i].handle_fd, &h.fh, O_PATH | O_CLOEXEC);
		if (fd >= 0) {
			fs->origin_decodable = true;
			close(fd);
		}
	}
}

const char *ovl_origin_xattr(const struct ovl_fs *fs)
{
	return fs->userxattr ? "user.overlay.origin" : "trusted.overlay.origin";
}

ssize_t ovl_origin_encode_at(struct ovl_fs *fs, int layer, int dirfd, const char *name,
			     int at_flags, bool upper, unsigned char *buf, size_t size)
{
	struct {
		struct file_handle fh;
		unsigned char bytes[MAX_HANDLE_SZ];
	} h = {.fh.handle_bytes = MAX_HANDLE_SZ};
	int mount_id;

	if (size < OVL_ORIGIN_MAX)
		return -ERANGE;
	if (!fs->origin_decodable)
		return 0;
	if (name_to_handle_at(dirfd, name, &h.fh, &mount_id, at_flags) < 0) {
		/* No handles on this filesystem (EOPNOTSUPP): the "unknown" value. */
		return errno == EOPNOTSUPP || errno == EOVERFLOW ? 0 : -errno;
	}
	if (h.fh.handle_bytes > MAX_HANDLE_SZ || h.fh.handle_type < 0 || h.fh.handle_type > 0xff)
		return 0;
	buf[0] = OVL_FH_VERSION;
	buf[1] = OVL_FH_MAGIC;
	buf[2] = (unsigned char)(OVL_FH_HEADER + h.fh.handle_bytes);
	buf[3] = OVL_FH_FLAG_CPU_ENDIAN | (upper ? OVL_FH_FLAG_PATH_UPPER : 0);
	buf[4] = (unsigned char)h.fh.handle_type;
	memcpy(buf + OVL_FH_UUID, fs->origin_uuid_off ? null_uuid : fs->layers[layer].uuid, 16);
	memcpy(buf + OVL_FH_HEADER, h.fh.f_handle, h.fh.handle_bytes);
	return OVL_FH_HEADER + h.fh.handle_bytes;
}

ssize_t ovl_origin_encode(struct ovl_fs *fs, int layer, int dirfd, const char *name,
			  unsigned char *buf, size_t size)
{
	return ovl_origin_encode_at(fs, layer, dirfd, name, 0, false, buf, size);
}

/* Decodes the handle in the layers whose filesystem the UUID names: the first that knows
 * it. 0 with *st and *layer, or -ESTALE. */
static int decode(struct ovl_fs *fs, const unsigned char *buf, struct stat *st, int *layer)
{
	size_t nbytes = (size_t)buf[2] - OVL_FH_HEADER;
	struct {
		struct file_handle fh;
		unsigned char bytes[MAX_HANDLE_SZ];
	} h;

	if (nbytes > MAX_HANDLE_SZ)
		return -ESTALE;
	h.fh.handle_bytes = (unsigned)nbytes;
	h.fh.handle_type = buf[4];
	memcpy(h.fh.f_handle, buf + OVL_FH_HEADER, nbytes);
	for (int i = fs->has_upper ? 1 : 0; i < fs->nlayers; i++) {
		struct ovl_layer *l = &fs->layers[i];
		bool seen = false;
		for (int j = fs->has_upper ? 1 : 0; j < i; j++)
			seen |= fs->layers[j].dev == l->dev;
		if (seen ||
		    memcmp(fs->origin_uuid_off ? null_uuid : l->uuid, buf + OVL_FH_UUID, 16) != 0)
			continue;
		if (l->uuid_shared && !(fs->has_upper && l->dev == fs->layers[0].dev))
			continue;
		int mfd = first_on_dev(fs, l)->handle_fd;
		if (mfd < 0)
			continue;
		int fd = open_by_handle_at(mfd, &h.fh, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		int r = fstat(fd, st);
		close(fd);
		if (r == 0 && st->st_dev == l->dev) {
			*layer = i;
			return 0;
		}
	}
	return -ESTALE;
}

/* The lower object dirfd/name was copied up from: 0 with its stat and layer, -ENODATA none
 * or unknown, -ESTALE gone, foreign or of another type, -EINVAL malformed. */
static int origin_find(struct ovl_fs *fs, int dirfd, const char *name, mode_t type, struct stat *st,
		       int *layer)
{
	unsigned char buf[OVL_ORIGIN_MAX];
	int n, r;

	if (!fs->has_upper || fs->nlayers < 2 || !fs->origin_decodable)
		return -ENODATA;
	n = ovl_getxattr_at(dirfd, name, ovl_origin_xattr(fs), buf, sizeof(buf));
	if (n < 0)
		return n == -ERANGE ? -EINVAL : -ENODATA;
	if ((r = ovl_origin_check(buf, (size_t)n)))
		return r;
	if ((r = decode(fs, buf, st, layer)))
		return r;
	/* A record naming an object of another type is not this object's origin. */
	if ((st->st_mode & S_IFMT) != type)
		return -ESTALE;
	return 0;
}

uint64_t ovl_origin_ino(struct ovl_fs *fs, int dirfd, const char *name, mode_t type, bool *indexed)
{
	struct stat lst;
	int layer;

	*indexed = false;
	if (origin_find(fs, dirfd, name, type, &lst, &layer))
		return 0;
	/* A lower hard link's copies may be several, unless the index joins them (as the
	 * kernel's OVL_INDEX inodes, which keep the origin's number). */
	char hex[OVL_INDEX_NAME_MAX];
	if (lst.st_nlink != 1 && !(*indexed = ovl_index_entry_of(fs, dirfd, name, hex)))
		return 0;
	return ovl_map_ino(fs, layer, lst.st_dev, lst.st_ino);
}

int ovl_origin_record(struct ovl_fs *fs, int layer, int dirfd, const char *name, const char *tmp)
{
	unsigned char buf[OVL_ORIGIN_MAX];
	ssize_t n = ovl_origin_encode(fs, layer, dirfd, name, buf, sizeof(buf));

	if (n < 0)
		return (int)n;
	int err = ovl_setxattr_at(fs->work_fd, tmp, ovl_origin_xattr(fs), buf, (size_t)n);
	/* As the kernel: an upper without xattrs, or user.* on a symlink, goes without. */
	return err == -EOPNOTSUPP || err == -EPERM ? 0 : err;
}

static const char *impure_xattr(const struct ovl_fs *fs)
{
	return fs->userxattr ? "user.overlay.impure" : "trusted.overlay.impure";
}

bool ovl_is_impure(struct ovl_fs *fs, int dirfd)
{
	char v;

	return ovl_dir_getxattr(dirfd, impure_xattr(fs), &v, 1) == 1 && v == 'y';
}

int ovl_set_impure(struct ovl_fs *fs, int dirfd)
{
	char proc[64];

	if (ovl_is_impure(fs, dirfd))
		return 0;
	if (ovl_proc_path(dirfd, proc, sizeof(proc)) < 0)
		return -ENAMETOOLONG;
	if (setxattr(proc, impure_xattr(fs), "y", 1, 0) < 0)
		return errno == EOPNOTSUPP ? 0 : -errno;
	return 0;
}

int ovl_mark_impure_for(struct ovl_fs *fs, int dirfd, const char *name)
{
	if (fs->nlayers < 2 || ovl_getxattr_at(dirfd, name, ovl_origin_xattr(fs), NULL, 0) < 0)
		return 0;
	return ovl_set_impure(fs, dirfd);
}
