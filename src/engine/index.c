/*
 * The kernel's inode index (index=on): hard links of a lower file stay one file across
 * copy-up. The first copy-up of a lower file with several links goes to
 * <workdir>/index/<hex of its origin record> and is then linked to the name copied up;
 * every other name of the group, still lower, shows that index entry's object, and is
 * linked to it ("linked up") when it is changed. overlay.nlink on the object keeps the
 * overlay's link count relative to the upper one ("U+n": n more than the upper inode's
 * links, which count the index entry and the names linked up). At mount the upper root
 * records the first lower root (overlay.origin) and the index directory the upper root
 * (overlay.upper), as the kernel writes them, so that the index is never used with other
 * layers. (Read in fs/overlayfs for the layouts; written anew.)
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

static const char *nlink_xattr(const struct ovl_fs *fs)
{
	return fs->userxattr ? "user.overlay.nlink" : "trusted.overlay.nlink";
}

static const char *upper_xattr(const struct ovl_fs *fs)
{
	return fs->userxattr ? "user.overlay.upper" : "trusted.overlay.upper";
}

static void to_hex(const unsigned char *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

/* Sets the record xname of the directory fd to want, or checks the one it has: -ESTALE when
 * it names another object. */
static int verify_or_set(int fd, const char *xname, const unsigned char *want, size_t n)
{
	unsigned char have[OVL_ORIGIN_MAX];
	char proc[64];
	int r = ovl_fd_getxattr(fd, xname, have, sizeof(have));

	if (r >= 0)
		return (size_t)r == n && memcmp(have, want, n) == 0 ? 0 : -ESTALE;
	if (r != -ENODATA)
		return r;
	if (ovl_proc_path(fd, proc, sizeof(proc)) < 0)
		return -ENAMETOOLONG;
	return setxattr(proc, xname, want, n, 0) < 0 ? -errno : 0;
}

/* Why the index cannot be used with these layers (NULL: it can). */
static const char *index_unusable(struct ovl_fs *fs)
{
	if (!fs->origin_decodable)
		return "file handles do not decode here (needs CAP_DAC_READ_SEARCH)";
	/* As the kernel: a lower filesystem whose UUID cannot tell its handles apart. */
	static const unsigned char null_uuid[16];
	for (int i = 1; i < fs->nlayers; i++) {
		struct ovl_layer *l = &fs->layers[i];
		if (l->dev == fs->layers[0].dev)
			continue;
		if (l->uuid_shared || !memcmp(l->uuid, null_uuid, sizeof(null_uuid)))
			return "a lower layer's filesystem has a null or shared UUID";
	}
	return NULL;
}

/* The upper root's origin (the first lower root) and the index directory's upper record
 * (the upper root), set or checked. A mismatch: -ESTALE with *why. */
static int index_records(struct ovl_fs *fs, int index_fd, const char **why)
{
	unsigned char buf[OVL_ORIGIN_MAX];
	ssize_t n = ovl_origin_encode_at(fs, 1, fs->layers[1].root_fd, "", AT_EMPTY_PATH, false,
					 buf, sizeof(buf));
	int err;

	*why = NULL;
	if (n <= 0)
		return n < 0 ? (int)n : -EOPNOTSUPP;
	err = verify_or_set(fs->layers[0].root_fd, ovl_origin_xattr(fs), buf, (size_t)n);
	if (err == -ESTALE)
		*why = "the upper root's origin names another lower root";
	if (err)
		return err;
	n = ovl_origin_encode_at(fs, 0, fs->layers[0].root_fd, "", AT_EMPTY_PATH, true, buf,
				 sizeof(buf));
	if (n <= 0)
		return n < 0 ? (int)n : -EOPNOTSUPP;
	err = verify_or_set(index_fd, upper_xattr(fs), buf, (size_t)n);
	if (err == -ESTALE)
		*why = "the index directory's upper record names another upper layer";
	return err;
}

int ovl_index_init(struct ovl_fs *fs, int wfd, int mode)
{
	struct ovl_layer *il = &fs->layers[fs->nlayers];
	const char *why = mode == OVL_INDEX_OFF ? NULL : index_unusable(fs);
	int fd, err;

	fs->index_layer = -1;
	if (mode == OVL_INDEX_OFF)
		return 0;
	if (why) {
		/* By default this is a property of the machine, not of these layers: no line at
		 * every mount of a rootless user. */
		if (mode == OVL_INDEX_AUTO)
			return 0;
		ovl_warn(fs, "index=on is not possible (%s): hard links split on copy-up", why);
		return -EINVAL;
	}
	if (mkdirat(wfd, "index", 0) < 0 && errno != EEXIST)
		return -errno;
	fd = openat(wfd, "index", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	err = index_records(fs, fd, &why);
	if (err) {
		close(fd);
		if (!why)
			return err;
		/* The kernel refuses such a mount; a runtime asking for nothing in particular
		 * still gets its root filesystem, without the index. One line either way. */
		if (mode == OVL_INDEX_ON) {
			ovl_warn(fs,
				 "index=on: %s (the layers do not match the index; mount "
				 "with index=off, or delete <workdir>/index to start a new one)",
				 why);
			return err;
		}
		ovl_warn(fs,
			 "index: turned off for this mount: %s (delete <workdir>/index to "
			 "start a new one)",
			 why);
		return 0;
	}
	/* The index is one more layer, after all others: no name is looked up in it, only
	 * the objects lower names were copied up to (by their dirlayers path). */
	il->root_fd = fd;
	il->handle_fd = -1;
	il->dev = fs->layers[0].dev;
	il->fsid = fs->layers[0].fsid;
	il->data_only = true;
	il->path = strdup("index");
	fs->index_layer = fs->nlayers;
	return il->path ? 0 : -ENOMEM;
}

void ovl_index_close(struct ovl_fs *fs)
{
	if (fs->index_layer < 0 || !fs->layers)
		return;
	struct ovl_layer *il = &fs->layers[fs->index_layer];
	if (il->root_fd >= 0)
		close(il->root_fd);
	il->root_fd = -1;
}

void ovl_index_free(struct ovl_fs *fs)
{
	ovl_index_close(fs);
	if (fs->layers && fs->index_layer >= 0)
		free(fs->layers[fs->index_layer].path);
}

struct ovl_dirlayer *ovl_index_dirlayer(struct ovl_fs *fs, const char *hex)
{
	struct ovl_dirlayer *dl = calloc(1, sizeof(*dl));

	if (!dl || !(dl->path = strdup(hex))) {
		free(dl);
		return NULL;
	}
	dl->layer = fs->index_layer;
	/* Paths now go by dirlayers for such nodes (layer.c). */
	atomic_store(&fs->redirects_seen, true);
	return dl;
}

bool ovl_index_wanted(const struct ovl_fs *fs, int layer, const struct stat *st)
{
	return fs->index_layer >= 0 && layer != 0 && layer != fs->index_layer &&
	       !S_ISDIR(st->st_mode) && st->st_nlink > 1;
}

int ovl_index_name_at(struct ovl_fs *fs, int layer, int dirfd, const char *name,
		      char hex[OVL_INDEX_NAME_MAX])
{
	unsigned char buf[OVL_ORIGIN_MAX];
	ssize_t n = ovl_origin_encode(fs, layer, dirfd, name, buf, sizeof(buf));

	if (n <= 0)
		return n < 0 ? (int)n : -ENODATA;
	to_hex(buf, (size_t)n, hex);
	return 0;
}

/* The index entry named by the origin record of the upper object dirfd/name, into hex. */
static int index_name_of_upper(struct ovl_fs *fs, int dirfd, const char *name,
			       char hex[OVL_INDEX_NAME_MAX])
{
	unsigned char buf[OVL_ORIGIN_MAX];
	int n = ovl_getxattr_at(dirfd, name, ovl_origin_xattr(fs), buf, sizeof(buf));

	if (n <= 0)
		return n < 0 ? n : -ENODATA;
	to_hex(buf, (size_t)n, hex);
	return 0;
}

/* overlay.nlink of dirfd/name (of the object dirfd, name NULL) as "U+n": n, or false when
 * it has none in that form. */
static bool read_nlink_delta(struct ovl_fs *fs, int dirfd, const char *name, long *delta)
{
	char buf[16];
	char *end;
	int n = name ? ovl_getxattr_at(dirfd, name, nlink_xattr(fs), buf, sizeof(buf) - 1)
		     : ovl_opath_getxattr(dirfd, nlink_xattr(fs), buf, sizeof(buf) - 1);

	if (n < 3)
		return false;
	buf[n] = '\0';
	if (buf[0] != 'U' || (buf[1] != '+' && buf[1] != '-'))
		return false;
	*delta = strtol(buf + 1, &end, 10);
	return *end == '\0';
}

nlink_t ovl_index_nlink(struct ovl_fs *fs, int dirfd, const char *name, const struct stat *st)
{
	long delta;

	/* As the kernel, a record it cannot use leaves the upper count. */
	if (!read_nlink_delta(fs, dirfd, name, &delta) || (long)st->st_nlink + delta <= 0)
		return st->st_nlink;
	return (nlink_t)((long)st->st_nlink + delta);
}

/* Records the overlay's count as the upper count of dirfd/name (as it is now) plus what it
 * lacks. */
static int write_nlink(struct ovl_fs *fs, int dirfd, const char *name, long overlay_nlink)
{
	struct stat st;
	char val[24];

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	int len = snprintf(val, sizeof(val), "U%+ld", overlay_nlink - (long)st.st_nlink);
	return ovl_setxattr_at(dirfd, name, nlink_xattr(fs), val, (size_t)len);
}

int ovl_index_store(struct ovl_fs *fs, const char *tmp, const char *hex, nlink_t names)
{
	int ifd = fs->layers[fs->index_layer].root_fd;
	int err = write_nlink(fs, fs->work_fd, tmp, (long)names);

	if (err)
		return err;
	if (renameat2(fs->work_fd, tmp, ifd, hex, RENAME_NOREPLACE) < 0)
		return -errno; /* EEXIST: indexed already (the copy is to be discarded) */
	return 0;
}

int ovl_index_link(struct ovl_fs *fs, const char *hex, int dirfd, const char *name)
{
	int ifd = fs->layers[fs->index_layer].root_fd;
	struct stat st;

	if (fstatat(ifd, hex, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	/* A name linked up was counted already, as a lower name. */
	long names = (long)ovl_index_nlink(fs, ifd, hex, &st);
	if (linkat(ifd, hex, dirfd, name, 0) < 0)
		return -errno;
	return write_nlink(fs, ifd, hex, names);
}

int ovl_index_find_lower(struct ovl_fs *fs, int layer, int dirfd, const char *name,
			 struct ovl_found *f)
{
	char hex[OVL_INDEX_NAME_MAX];
	struct stat ist;
	int ifd, err;

	if (!ovl_index_wanted(fs, layer, &f->st))
		return 0;
	err = ovl_index_name_at(fs, layer, dirfd, name, hex);
	if (err)
		return err == -ENODATA ? 0 : err;
	ifd = fs->layers[fs->index_layer].root_fd;
	if (fstatat(ifd, hex, &ist, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if ((ist.st_mode & S_IFMT) != (f->st.st_mode & S_IFMT)) {
		ovl_warn(fs, "index: entry %s is not of its origin's type: ignored", hex);
		return 0;
	}
	struct ovl_dirlayer *dl = ovl_index_dirlayer(fs, hex);
	if (!dl)
		return -ENOMEM;
	/* The object copied up, shown with its origin's number, as the kernel's index. */
	f->ino = ovl_map_ino(fs, layer, f->st.st_dev, f->st.st_ino);
	f->st = ist;
	f->st.st_nlink = ovl_index_nlink(fs, ifd, hex, &ist);
	f->top = fs->index_layer;
	ovl_dirlayers_free(f->dirlayers, f->ndirlayers);
	f->dirlayers = dl;
	f->ndirlayers = 1;
	f->indexed = true;
	return 0;
}

void ovl_index_name_removed(struct ovl_fs *fs, const char *hex)
{
	int ifd = fs->layers[fs->index_layer].root_fd;
	struct stat st;
	long delta;

	if (fstatat(ifd, hex, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    !read_nlink_delta(fs, ifd, hex, &delta))
		return;
	/* No name left in the overlay: the entry goes, as the kernel cleans it up. */
	if ((long)st.st_nlink + delta <= 0)
		(void)unlinkat(ifd, hex, 0);
}

bool ovl_index_entry_of(struct ovl_fs *fs, int dirfd, const char *name,
			char hex[OVL_INDEX_NAME_MAX])
{
	struct stat ist, ust;

	if (fs->index_layer < 0 || index_name_of_upper(fs, dirfd, name, hex) < 0)
		return false;
	return fstatat(fs->layers[fs->index_layer].root_fd, hex, &ist, AT_SYMLINK_NOFOLLOW) == 0 &&
	       fstatat(dirfd, name, &ust, AT_SYMLINK_NOFOLLOW) == 0 && ist.st_dev == ust.st_dev &&
	       ist.st_ino == ust.st_ino;
}

int ovl_index_prepare_locked(struct ovl_fs *fs, struct ovl_node *parent, const char *name)
{
	struct ovl_found f = {0};
	int err, dfd;

	if (fs->index_layer < 0)
		return 0;
	err = ovl_find(fs, parent, name, 0, &f);
	if (!err && f.top >= 0 && f.top != fs->index_layer && ovl_index_wanted(fs, f.top, &f.st)) {
		/* Not indexed yet: the group's node copies it up (into the index). */
		struct ovl_node *node;
		struct stat st;
		int layer = f.top;
		ovl_found_free(&f);
		err = ovl_lookup_locked(fs, parent, name, &node, &st);
		if (!err) {
			/* As the kernel, this name goes up; the node's own may be another one. */
			bool own = node->parent == parent && strcmp(node->name, name) == 0;
			err = own ? ovl_copy_up_locked(fs, node, false)
				  : ovl_copy_up_locked(fs, parent, false);
			if (!err && !own)
				err = ovl_copy_up_name_locked(fs, node, parent, name, layer);
			ovl_forget(fs, node, 1);
		}
		if (!err)
			err = ovl_find(fs, parent, name, 0, &f);
	}
	if (err || f.top != fs->index_layer || f.top < 0) {
		ovl_found_free(&f);
		return err;
	}
	/* This name is still lower: it becomes a link of the entry. */
	err = ovl_copy_up_locked(fs, parent, false);
	dfd = err ? err : ovl_open_in_layer(fs, parent, 0, O_PATH | O_DIRECTORY);
	if (dfd < 0) {
		ovl_found_free(&f);
		return dfd;
	}
	struct stat pst;
	pthread_mutex_lock(&parent->op_lock);
	err = fstat(dfd, &pst) < 0 ? -errno : ovl_index_link(fs, f.dirlayers[0].path, dfd, name);
	if (!err)
		err = ovl_set_impure(fs, dfd);
	if (!err) /* as the kernel's link-up: the parent's times stay */
		ovl_restore_times(dfd, &pst);
	if (!err) {
		pthread_mutex_lock(&fs->table_lock);
		struct ovl_node *node = ovl_node_get_child(fs, parent, name);
		if (node && ovl_node_top(node) == fs->index_layer)
			ovl_node_linked_up(node);
		pthread_mutex_unlock(&fs->table_lock);
	}
	pthread_mutex_unlock(&parent->op_lock);
	close(dfd);
	ovl_found_free(&f);
	return err;
}
