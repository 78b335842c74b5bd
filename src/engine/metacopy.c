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
#include <linux/fsverity.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/xattr.h>
#include <unistd.h>

/* The kernel's value (6.6+): empty, or a header {version 0, len, flags, digest algorithm}
 * followed by an fs-verity digest of up to 64 bytes, len counting all of it. */
#define METACOPY_HDR 4
#define METACOPY_MAX OVL_METACOPY_MAX
#define METACOPY_DIGEST_MAX (METACOPY_MAX - METACOPY_HDR)

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
	/* A digest is checked when the data file is opened (verity_check). */
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

/* The fs-verity digest of the open file fd as a metacopy record names it: the kernel's
 * algorithm ids (linux/hash_info.h: HASH_ALGO_SHA256 4, HASH_ALGO_SHA512 6) into *algo,
 * the bytes into digest; its size, 0 when the file has none (or its filesystem no
 * fs-verity), or -errno. */
static int measure_verity(int fd, unsigned char *algo, unsigned char *digest)
{
	union {
		struct fsverity_digest d;
		unsigned char raw[sizeof(struct fsverity_digest) + METACOPY_DIGEST_MAX];
	} m = {.d.digest_size = METACOPY_DIGEST_MAX};

	if (ioctl(fd, FS_IOC_MEASURE_VERITY, &m) < 0)
		return errno == ENODATA || errno == EOPNOTSUPP || errno == ENOTTY ? 0 : -errno;
	if (m.d.digest_algorithm == FS_VERITY_HASH_ALG_SHA256)
		*algo = 4;
	else if (m.d.digest_algorithm == FS_VERITY_HASH_ALG_SHA512)
		*algo = 6;
	else
		return 0; /* an algorithm no record can name */
	if (m.d.digest_size > METACOPY_DIGEST_MAX)
		return 0;
	memcpy(digest, m.d.digest, m.d.digest_size);
	return m.d.digest_size;
}

/*
 * The kernel's verity=on|require at an open of a metacopy node's data file (data_fd): the
 * digest its stub's record carries must be the data file's fs-verity digest; with require
 * a record without one is refused too. EIO and a log line, as the kernel.
 * Preconditions: the rename lock.
 */
static int verity_check(struct ovl_fs *fs, struct ovl_node *node, int data_fd)
{
	unsigned char rec[METACOPY_MAX], digest[METACOPY_DIGEST_MAX], algo;
	const char *name;
	int dfd = ovl_open_parent(fs, node, ovl_node_top(node), &name);

	if (dfd < 0)
		return dfd;
	int n = ovl_getxattr_at(dfd, name, ovl_metacopy_xattr(fs), rec, sizeof(rec));
	close(dfd);
	if (n == -ENODATA)
		return 0; /* the stub got its data meanwhile */
	if (n < 0)
		return n;
	if (n <= METACOPY_HDR || rec[3] == 0) {
		if (fs->verity != OVL_VERITY_REQUIRE)
			return 0;
		ovl_warn(fs, "metacopy file %s has no fs-verity digest (verity=require)", name);
		return -EIO;
	}
	int size = measure_verity(data_fd, &algo, digest);
	if (size < 0)
		return size;
	if (size == 0) {
		ovl_warn(fs, "the data file of %s has no fs-verity digest", name);
		return -EIO;
	}
	if (n != METACOPY_HDR + size || rec[3] != algo ||
	    memcmp(rec + METACOPY_HDR, digest, (size_t)size)) {
		ovl_warn(fs, "the data file of %s has the wrong fs-verity digest", name);
		return -EIO;
	}
	return 0;
}

int ovl_node_data_open(struct ovl_fs *fs, struct ovl_node *node, int flags)
{
	char path[PATH_MAX];
	int layer = data_where(fs, node, path, sizeof(path));

	if (layer < 0)
		return layer;
	int fd = ovl_layer_open(fs, layer, path, flags);
	/* Only an open for the data is checked (not a stat's O_PATH one), as the kernel. */
	if (fd >= 0 && fs->verity != OVL_VERITY_OFF && !(flags & O_PATH)) {
		int err = verity_check(fs, node, fd);
		if (err) {
			close(fd);
			return err;
		}
	}
	return fd;
}

int ovl_metacopy_record(struct ovl_fs *fs, int data_fd, unsigned char *rec)
{
	if (fs->verity == OVL_VERITY_OFF)
		return 0;
	int size = measure_verity(data_fd, &rec[3], rec + METACOPY_HDR);
	if (size < 0)
		return size;
	if (size == 0)
		return fs->verity == OVL_VERITY_REQUIRE ? -ENODATA : 0;
	rec[0] = 0; /* version */
	rec[1] = (unsigned char)(METACOPY_HDR + size);
	rec[2] = 0; /* flags */
	return METACOPY_HDR + size;
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

/* Whether node's lower object (its data file when the node is a stub) has other links: 1
 * if so, 0 if not, or -errno. */
static int lower_linked(struct ovl_fs *fs, struct ovl_node *node, bool stub)
{
	struct stat st;
	int fd = stub ? ovl_node_data_open(fs, node, O_PATH)
		      : ovl_open_in_layer(fs, node, ovl_node_top(node), O_PATH);

	if (fd < 0)
		return fd;
	int err = fstat(fd, &st) < 0 ? -errno : 0;
	close(fd);
	return err ? err : st.st_nlink > 1;
}

/* The kernel's ovl_set_redirect for a stub: a redirect it has stays, unless it is relative
 * and an absolute one is needed (another directory, or a lower hard link, whose names may
 * end up in several directories); the new one is the moved name within its directory,
 * else the data's path from the layer root. 1 if the stub holds one now, 0 when it is a
 * stub no more. Preconditions: the rename lock and the node's op lock. */
static int set_stub_redirect(struct ovl_fs *fs, struct ovl_node *node, const char *name,
			     bool samedir)
{
	char have[PATH_MAX], want[OVL_REDIRECT_MAX + 1];
	const char *own;

	if (!ovl_node_metacopy(node))
		return 0; /* its data went up meanwhile */
	int linked = lower_linked(fs, node, true);
	if (linked < 0)
		return linked;
	bool absolute = !samedir || linked || !name;
	int pfd = ovl_open_parent(fs, node, 0, &own);
	if (pfd < 0)
		return pfd;
	int n = ovl_get_redirect_raw(fs, pfd, own, have, sizeof(have));
	close(pfd);
	if (n < 0)
		return n;
	if (n > 0 && (!absolute || have[0] == '/'))
		return 1;
	if (!absolute) {
		if (strlen(name) >= sizeof(want))
			return -EXDEV;
		strcpy(want, name);
	} else {
		want[0] = '/';
		/* too long for the kernel's redirect_max: it would refuse the move (EXDEV) */
		if (data_where(fs, node, want + 1, sizeof(want) - 1) < 0)
			return -EXDEV;
	}
	int fd = ovl_open_in_layer(fs, node, 0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return fd;
	int err = fsetxattr(fd, ovl_redirect_xattr(fs), want, strlen(want), 0) < 0 ? -errno : 0;
	close(fd);
	return err ? err : 1;
}

int ovl_copy_up_for_move_locked(struct ovl_fs *fs, struct ovl_node *node, const char *name,
				bool samedir)
{
	/* As the kernel: redirects need redirect_dir=on, and it has neither them nor metacopy
	 * with userxattr; OCI layers are for tools that know no redirect. */
	if (!fs->metacopy_up || !fs->redirect_write || fs->userxattr || fs->file_whiteouts ||
	    node->type != S_IFREG || !fs->has_upper || fs->readonly || !node->parent)
		return ovl_copy_up_locked(fs, node, false);
	bool upper = ovl_node_is_upper(fs, node);
	if (upper && !ovl_node_metacopy(node))
		return 0;
	if (!upper) {
		/* A lower stub (composefs): its data path is not its own path, which the
		 * kernel's redirect would name; an indexed hard link goes up whole with its
		 * index entry, which keeps its group joined. */
		if (ovl_node_metacopy(node))
			return ovl_copy_up_locked(fs, node, false);
		int linked = lower_linked(fs, node, false);
		if (linked < 0)
			return linked;
		if (linked && fs->index_layer >= 0)
			return ovl_copy_up_locked(fs, node, false);
		int err = ovl_copy_up_meta_locked(fs, node);
		if (err)
			return err;
	}
	pthread_mutex_lock(&node->op_lock);
	int set = set_stub_redirect(fs, node, name, samedir);
	pthread_mutex_unlock(&node->op_lock);
	if (set >= 0)
		return 0;
	/* The kernel would answer EXDEV (and mv copy the file): the data goes up instead. */
	ovl_warn(fs, "cannot set the redirect of a moved metacopy file (%s): copying its data",
		 strerror(-set));
	return ovl_copy_up_data_locked(fs, node);
}
