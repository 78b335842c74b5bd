/*
 * Metacopy files, read: a kernel mounted with metacopy=on copies up only the metadata of a
 * lower file (chown, chmod, ...): the upper file is a sparse stub of the right size
 * carrying overlay.metacopy, and its data stays in the file below (the same path in the
 * layers under it, or the path its own absolute overlay.redirect names, which may be in a
 * data-only layer: composefs). Lookup (namei.c) finds that data file; reads go to it; the
 * first change of the data copies it into the stub, then drops the mark.
 * Without -o metacopy=on such a file is refused (EPERM), as the kernel refuses it.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

/* The kernel's value (6.6+): empty, or a header {version 0, len, flags, digest algorithm}
 * followed by an fs-verity digest of up to 64 bytes, len counting all of it. */
#define METACOPY_HDR 4
#define METACOPY_MAX (METACOPY_HDR + 64)

const char *ovl_metacopy_xattr(const struct ovl_fs *fs)
{
	return fs->userxattr ? OVL_UXATTR_PREFIX OVL_X_METACOPY : OVL_XATTR_PREFIX OVL_X_METACOPY;
}

int ovl_is_metacopy(struct ovl_fs *fs, int dirfd, const char *name, const struct stat *st)
{
	unsigned char v[METACOPY_MAX];

	if (!S_ISREG(st->st_mode))
		return 0;
	int n = ovl_getxattr_at(dirfd, name, ovl_metacopy_xattr(fs), v, sizeof(v));
	if (n == -ENODATA || n == -EOPNOTSUPP)
		return 0;
	/* As the kernel: an unreadable user.* xattr says nothing. */
	if (n == -EACCES && fs->userxattr)
		return 0;
	if (n == -ERANGE || (n > 0 && (n < METACOPY_HDR || v[0] != 0 || v[1] != n))) {
		ovl_warn(fs, "invalid metacopy record of %s", name);
		return -EIO;
	}
	/* A digest is only checked with the kernel's verity=on, which ovlfs does not have:
	 * ignored, as the kernel's verity=off does. */
	return n < 0 ? n : 1;
}

/* Where a metacopy node's data is: entries of fs->mcdata, under fs->mcdata_lock. */
struct mcdata {
	struct ovl_hlink link;
	struct ovl_node *node;
	char *path; /* from the layer's root */
	int layer;
};

static uint64_t mcdata_hash(const struct ovl_hlink *l)
{
	return ovl_hash_u64((uint64_t)(uintptr_t)ovl_entry_of(l, struct mcdata, link)->node);
}

static bool mcdata_match(const struct ovl_hlink *l, const void *key)
{
	return ovl_entry_of(l, struct mcdata, link)->node == key;
}

/* Preconditions: fs->mcdata_lock held. */
static struct mcdata *mcdata_find(struct ovl_fs *fs, struct ovl_node *node)
{
	struct ovl_hlink *l =
	    ovl_htab_find(&fs->mcdata, ovl_hash_u64((uint64_t)(uintptr_t)node), mcdata_match, node);
	return l ? ovl_entry_of(l, struct mcdata, link) : NULL;
}

bool ovl_node_metacopy(struct ovl_node *node)
{
	return atomic_load(&node->metacopy);
}

void ovl_metacopy_set(struct ovl_fs *fs, struct ovl_node *node, int layer, char *path)
{
	struct mcdata *m = NULL, *old;

	if (!path && !atomic_load(&node->metacopy))
		return; /* the common case: no lock */
	if (path) {
		m = malloc(sizeof(*m));
		if (!m) {
			/* Unrecorded, the data would be the stub's zeros: EIO at open instead. */
			free(path);
			path = NULL;
		} else {
			m->node = node;
			m->path = path;
			m->layer = layer;
		}
	}
	pthread_mutex_lock(&fs->mcdata_lock);
	if (!fs->mcdata.hash)
		fs->mcdata.hash = mcdata_hash;
	old = mcdata_find(fs, node);
	if (old)
		ovl_htab_remove(&fs->mcdata, &old->link);
	if (m && ovl_htab_insert(&fs->mcdata, &m->link) < 0) {
		free(m->path);
		free(m);
		m = NULL;
	}
	atomic_store(&node->metacopy, m != NULL);
	pthread_mutex_unlock(&fs->mcdata_lock);
	if (old) {
		free(old->path);
		free(old);
	}
}

static void mcdata_free(struct ovl_hlink *l, void *arg)
{
	struct mcdata *m = ovl_entry_of(l, struct mcdata, link);

	(void)arg;
	free(m->path);
	free(m);
}

void ovl_metacopy_free_all(struct ovl_fs *fs)
{
	ovl_htab_free(&fs->mcdata, mcdata_free, NULL);
}

/* Copies the node's data path into buf: its layer, or -ENODATA when the node's own object
 * holds the data. */
static int data_where(struct ovl_fs *fs, struct ovl_node *node, char *buf, size_t size)
{
	int layer = -ENODATA;

	if (!atomic_load(&node->metacopy))
		return layer;
	pthread_mutex_lock(&fs->mcdata_lock);
	struct mcdata *m = mcdata_find(fs, node);
	if (m && strlen(m->path) < size) {
		strcpy(buf, m->path);
		layer = m->layer;
	}
	pthread_mutex_unlock(&fs->mcdata_lock);
	return layer;
}

int ovl_node_data_open(struct ovl_fs *fs, struct ovl_node *node, int flags)
{
	char path[PATH_MAX];
	int layer = data_where(fs, node, path, sizeof(path));

	if (layer < 0)
		return layer;
	return ovl_layer_open(fs, layer, path, flags);
}

void ovl_metacopy_blocks(struct ovl_fs *fs, struct ovl_node *node, struct stat *st)
{
	struct stat dst;
	int fd = ovl_node_data_open(fs, node, O_PATH);

	if (fd < 0)
		return; /* not metacopy (any more): the object's own blocks */
	if (fstat(fd, &dst) == 0)
		st->st_blocks = dst.st_blocks;
	close(fd);
}

/* Preconditions: the rename lock and the node's op lock. */
static int copy_data_in(struct ovl_fs *fs, struct ovl_node *node)
{
	struct stat st, dst;
	int in, out, err = 0;

	in = ovl_node_data_open(fs, node, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
	if (in == -ENODATA)
		return 0; /* done by another thread meanwhile */
	if (in < 0)
		return in;
	out = ovl_open_in_layer(fs, node, 0, O_WRONLY | O_NOFOLLOW | O_NONBLOCK);
	if (out < 0) {
		close(in);
		return out;
	}
	/* A lookup racing with an earlier copy may have marked the node again: the stub's own
	 * mark decides (only removed under the op lock we hold). */
	if (fgetxattr(out, ovl_metacopy_xattr(fs), NULL, 0) < 0 && errno == ENODATA) {
		close(out);
		close(in);
		ovl_metacopy_set(fs, node, -1, NULL);
		return 0;
	}
	if (fstat(out, &st) < 0 || fstat(in, &dst) < 0)
		err = -errno;
	/* The stub's size is the file's; its holes read as zeros already. */
	dst.st_size = st.st_size;
	if (!err)
		err = ovl_copy_data(in, out, &dst);
	if (!err && !fs->no_fsync && fdatasync(out) < 0)
		err = -errno;
	if (!err) {
		struct timespec ts[2] = {st.st_atim, st.st_mtim};
		if (futimens(out, ts) < 0)
			err = -errno;
	}
	/* From here on the stub is the file: the mark goes last. */
	if (!err && fremovexattr(out, ovl_metacopy_xattr(fs)) < 0 && errno != ENODATA)
		err = -errno;
	close(out);
	close(in);
	if (err)
		return err;
	ovl_metacopy_set(fs, node, -1, NULL);
	if (fs->attr_changed)
		fs->attr_changed(fs->attr_changed_ctx, node); /* st_blocks are the stub's now */
	return 0;
}

int ovl_copy_up_data_locked(struct ovl_fs *fs, struct ovl_node *node)
{
	if (!ovl_node_metacopy(node))
		return 0;
	pthread_mutex_lock(&node->op_lock);
	int err = copy_data_in(fs, node);
	pthread_mutex_unlock(&node->op_lock);
	return err;
}
