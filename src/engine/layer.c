/* Walking inside a layer: every path is resolved beneath the layer root, never through a
 * symlink, a magic link or a mount, so no layer content can lead the daemon outside. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

/* Flags a request may carry through to a layer; openat2 refuses unknown bits such as the
 * kernel-internal __FMODE_EXEC of an exec. */
#define OVL_OPEN_FLAGS                                                                             \
	(O_ACCMODE | O_APPEND | O_DIRECT | O_NOATIME | O_SYNC | O_DSYNC | O_NONBLOCK | O_TRUNC |   \
	 O_LARGEFILE | O_PATH | O_DIRECTORY | O_CREAT | O_EXCL)

/* Whether a read of a layer object must leave its atime alone: always below (the kernel
 * overlayfs never changes a lower object's atime), and above as the mount's mode says. */
static bool keep_atime(struct ovl_fs *fs, int layer, int flags)
{
	if ((flags & O_PATH) || atomic_load(&fs->noatime_denied))
		return false;
	if (!fs->layers[layer].is_upper)
		return true;
	return fs->noatime || (fs->nodiratime && (flags & O_DIRECTORY));
}

static long layer_openat2(struct ovl_fs *fs, int layer, int dirfd, const char *relpath, int flags)
{
	struct open_how how = {
	    .flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
	    .resolve =
		RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
	};
	long fd;

	do {
		fd = syscall(SYS_openat2, dirfd < 0 ? fs->layers[layer].root_fd : dirfd, relpath,
			     &how, sizeof(how));
	} while (fd < 0 && errno == EAGAIN);
	return fd;
}

/* O_NOATIME is refused with EPERM where the daemon neither owns the object nor has
 * CAP_FOWNER: the open is retried without it, which if it works stops asking for it. */
static void noatime_refused(struct ovl_fs *fs)
{
	atomic_store(&fs->noatime_denied, true);
}

/* relpath beneath dirfd, a directory a walk reached in layer, or beneath the layer's root
 * when dirfd is -1. */
static int layer_open_at(struct ovl_fs *fs, int layer, int dirfd, const char *relpath, int flags)
{
	flags &= OVL_OPEN_FLAGS;
	bool add = !(flags & O_NOATIME) && keep_atime(fs, layer, flags);
	long fd = layer_openat2(fs, layer, dirfd, relpath, add ? flags | O_NOATIME : flags);

	if (fd < 0 && errno == EPERM && add) {
		fd = layer_openat2(fs, layer, dirfd, relpath, flags);
		if (fd >= 0)
			noatime_refused(fs);
	}
	if (fd < 0)
		return errno == ELOOP ? -ENOENT : -errno;
	return (int)fd;
}

int ovl_layer_open(struct ovl_fs *fs, int layer, const char *relpath, int flags)
{
	return layer_open_at(fs, layer, -1, relpath, flags);
}

int ovl_openat_noatime(struct ovl_fs *fs, int dirfd, const char *name, int flags)
{
	bool add = !atomic_load(&fs->noatime_denied);
	int fd = openat(dirfd, name, add ? flags | O_NOATIME : flags);

	if (fd < 0 && errno == EPERM && add) {
		fd = openat(dirfd, name, flags);
		if (fd >= 0)
			noatime_refused(fs);
	}
	return fd < 0 ? -errno : fd;
}

/* Builds "a/b/c" from the node chain ("." for the root). Needs the rename lock. */
int ovl_node_path(struct ovl_node *node, char *buf, size_t size)
{
	size_t pos = size;

	if (node->unlinked)
		return -ENOENT;
	if (!node->parent) {
		if (size < 2)
			return -ENAMETOOLONG;
		strcpy(buf, ".");
		return 0;
	}
	buf[--pos] = '\0';
	for (struct ovl_node *n = node; n->parent; n = n->parent) {
		if (n->parent->unlinked)
			return -ENOENT;
		size_t len = strlen(n->name);
		if (len + 1 > pos)
			return -ENAMETOOLONG;
		if (pos != size - 1)
			buf[--pos] = '/';
		pos -= len;
		memcpy(buf + pos, n->name, len);
	}
	memmove(buf, buf + pos, size - pos);
	return 0;
}

/*
 * node/last (last may be NULL) when the whole path is PATH_MAX or longer, which openat2
 * refuses: the walk goes in chunks shorter than PATH_MAX, each resolved with the same
 * confinement beneath the directory the previous chunk reached, the first beneath the layer
 * root, so no step can leave the layer. Preconditions: the rename lock.
 */
static int open_deep(struct ovl_fs *fs, struct ovl_node *node, int layer, const char *last,
		     int flags)
{
	char chunk[PATH_MAX];
	const char **names;
	size_t depth = last ? 1 : 0, i;
	int dirfd = -1, err = 0;

	for (struct ovl_node *n = node; n->parent; n = n->parent) {
		if (n->parent->unlinked)
			return -ENOENT;
		depth++;
	}
	names = malloc(depth * sizeof(*names));
	if (!names)
		return -ENOMEM;
	i = depth;
	if (last)
		names[--i] = last;
	for (struct ovl_node *n = node; n->parent; n = n->parent)
		names[--i] = n->name;
	while (i < depth) {
		size_t pos = 0;
		/* Whole names up to PATH_MAX - 1 bytes; a name is at most NAME_MAX. */
		for (; i < depth; i++) {
			size_t len = strlen(names[i]);
			if (pos + (pos ? 1 : 0) + len >= sizeof(chunk))
				break;
			if (pos)
				chunk[pos++] = '/';
			memcpy(chunk + pos, names[i], len);
			pos += len;
		}
		if (!pos) {
			err = -ENAMETOOLONG;
			break;
		}
		chunk[pos] = '\0';
		int fd = layer_open_at(fs, layer, dirfd, chunk,
				       i == depth ? flags : O_PATH | O_DIRECTORY);
		if (dirfd >= 0)
			close(dirfd);
		dirfd = fd;
		if (fd < 0) {
			err = fd;
			break;
		}
	}
	free(names);
	return err ? err : dirfd;
}

/* The redirected path of n in layer into buf[..*pos] (prepended), if a redirect put it
 * elsewhere: true. Read under n's spinlock, which guards its dirlayers. */
static bool prepend_redirected(struct ovl_node *n, int layer, char *buf, size_t *pos, bool sep,
			       int *err)
{
	bool found = false;

	pthread_spin_lock(&n->lock);
	for (int i = 0; i < n->ndirlayers && !found; i++) {
		const char *p = n->dirlayers[i].path;
		if (n->dirlayers[i].layer != layer || !p)
			continue;
		size_t len = strlen(p);
		found = true;
		if (len + (sep ? 1 : 0) > *pos) {
			*err = -ENAMETOOLONG;
		} else {
			if (sep)
				buf[--*pos] = '/';
			*pos -= len;
			memcpy(buf + *pos, p, len);
		}
	}
	pthread_spin_unlock(&n->lock);
	return found;
}

int ovl_node_layer_path(struct ovl_fs *fs, struct ovl_node *node, int layer, char *buf, size_t size)
{
	size_t pos = size;
	int err = 0;

	if (!atomic_load(&fs->redirects_seen))
		return ovl_node_path(node, buf, size);
	if (node->unlinked)
		return -ENOENT;
	buf[--pos] = '\0';
	for (struct ovl_node *n = node; n->parent; n = n->parent) {
		bool sep = pos != size - 1;
		if (n->parent->unlinked)
			return -ENOENT;
		if (prepend_redirected(n, layer, buf, &pos, sep, &err))
			break;
		size_t len = strlen(n->name);
		if (len + (sep ? 1 : 0) > pos)
			return -ENAMETOOLONG;
		if (sep)
			buf[--pos] = '/';
		pos -= len;
		memcpy(buf + pos, n->name, len);
	}
	if (err)
		return err;
	if (pos == size - 1) { /* the root */
		if (size < 2)
			return -ENAMETOOLONG;
		strcpy(buf, ".");
		return 0;
	}
	memmove(buf, buf + pos, size - pos);
	return 0;
}

/* node/last, or node itself when last is NULL, walked from the layer root. Short paths
 * (the common case) take one openat2; only PATH_MAX and longer walk in chunks (open_deep). */
static int walk_node(struct ovl_fs *fs, struct ovl_node *node, int layer, const char *last,
		     int flags)
{
	char path[PATH_MAX];
	int err = ovl_node_layer_path(fs, node, layer, path, sizeof(path));
	bool redirected = atomic_load(&fs->redirects_seen);

	if (!err && last) {
		size_t len = strcmp(path, ".") ? strlen(path) : 0;
		if (len + (len ? 1 : 0) + strlen(last) >= sizeof(path)) {
			err = -ENAMETOOLONG;
		} else {
			if (len)
				path[len++] = '/';
			strcpy(path + len, last);
		}
	}
	if (err == -ENAMETOOLONG && !redirected) /* (deep walks follow no redirect) */
		return open_deep(fs, node, layer, last, flags);
	if (err)
		return err;
	return ovl_layer_open(fs, layer, path, flags);
}

/* Whether node's object in layer is at a path of its own (a redirect, an index entry: see
 * ovl_node_layer_path), not at its parent's there and its name. */
static bool own_layer_path(struct ovl_fs *fs, struct ovl_node *node, int layer)
{
	bool own = false;

	if (!atomic_load(&fs->redirects_seen))
		return false;
	pthread_spin_lock(&node->lock);
	for (int i = 0; i < node->ndirlayers && !own; i++)
		own = node->dirlayers[i].layer == layer && node->dirlayers[i].path;
	pthread_spin_unlock(&node->lock);
	return own;
}

/* Whether node or an ancestor is unlinked: its path names nothing (as ovl_node_path). */
static bool path_gone(struct ovl_node *node)
{
	for (struct ovl_node *n = node; n; n = n->parent)
		if (atomic_load(&n->unlinked))
			return true;
	return false;
}

/* node/last, or node itself when last is NULL, from the cached fd of the directory it is
 * in (or of node itself, a directory): a walk of one name instead of the whole path. A
 * miss walks to the directory from the root and caches it (dircache.c). */
static int open_node(struct ovl_fs *fs, struct ovl_node *node, int layer, const char *last,
		     int flags)
{
	struct ovl_node *dir = node;
	const char *rest = last;
	struct ovl_dircache_entry *entry;
	bool self = false;

	if (!last && atomic_load(&node->type) != S_IFDIR) {
		if (own_layer_path(fs, node, layer))
			return walk_node(fs, node, layer, last, flags);
		dir = node->parent;
		rest = node->name;
	} else if (!last) {
		rest = "."; /* a directory's own path may be redirected: its own entry */
		self = true;
	}
	if (!dir || atomic_load(&dir->type) != S_IFDIR || !atomic_load(&dir->ino))
		return walk_node(fs, node, layer, last, flags);
	if (path_gone(node))
		return -ENOENT;
	int dirfd = ovl_dircache_get(fs, dir, layer, &entry);
	if (dirfd < 0) {
		uint64_t gen = ovl_dircache_gen(fs);
		dirfd = walk_node(fs, dir, layer, NULL, O_PATH | O_DIRECTORY);
		/* What the whole walk would have met as well (not for node itself: it may be
		 * no directory there). */
		if (dirfd == -ENOENT || (dirfd == -ENOTDIR && !self))
			return dirfd;
		if (dirfd < 0)
			return walk_node(fs, node, layer, last, flags);
		if (!ovl_dircache_add(fs, dir, layer, gen, dirfd, &entry)) {
			int fd = layer_open_at(fs, layer, dirfd, rest, flags);
			close(dirfd);
			return fd;
		}
	}
	int fd;
	if (self && (flags & OVL_OPEN_FLAGS) == (O_PATH | O_DIRECTORY)) {
		fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0); /* the same object: no walk at all */
		fd = fd < 0 ? -errno : fd;
	} else {
		fd = layer_open_at(fs, layer, dirfd, rest, flags);
	}
	ovl_dircache_put(fs, entry);
	return fd;
}

int ovl_dir_borrow(struct ovl_fs *fs, struct ovl_node *dir, int layer,
		   struct ovl_dircache_entry **entry)
{
	*entry = NULL;
	if (atomic_load(&dir->type) != S_IFDIR || !atomic_load(&dir->ino))
		return walk_node(fs, dir, layer, NULL, O_PATH | O_DIRECTORY);
	if (path_gone(dir))
		return -ENOENT;
	int fd = ovl_dircache_get(fs, dir, layer, entry);
	if (fd >= 0)
		return fd;
	uint64_t gen = ovl_dircache_gen(fs);
	fd = walk_node(fs, dir, layer, NULL, O_PATH | O_DIRECTORY);
	if (fd >= 0 && !ovl_dircache_add(fs, dir, layer, gen, fd, entry))
		*entry = NULL; /* the caller's to close */
	return fd;
}

int ovl_parent_borrow(struct ovl_fs *fs, struct ovl_node *node, int layer, const char **name,
		      struct ovl_dircache_entry **entry)
{
	*entry = NULL;
	/* Redirected, or an index entry: not its parent's name there (ovl_open_parent). */
	if (node->unlinked || !node->parent || own_layer_path(fs, node, layer))
		return ovl_open_parent(fs, node, layer, name);
	*name = node->name;
	return ovl_dir_borrow(fs, node->parent, layer, entry);
}

void ovl_dir_return(struct ovl_fs *fs, int fd, struct ovl_dircache_entry *entry)
{
	if (entry)
		ovl_dircache_put(fs, entry);
	else if (fd >= 0)
		close(fd);
}

int ovl_open_in_layer(struct ovl_fs *fs, struct ovl_node *node, int layer, int flags)
{
	return open_node(fs, node, layer, NULL, flags);
}

int ovl_open_child_in_layer(struct ovl_fs *fs, struct ovl_node *parent, const char *name, int layer,
			    int flags)
{
	return open_node(fs, parent, layer, name, flags);
}

int ovl_open_parent(struct ovl_fs *fs, struct ovl_node *node, int layer, const char **name)
{
	if (node->unlinked)
		return -ENOENT;
	if (!node->parent) {
		*name = ".";
		return ovl_layer_open(fs, layer, ".", O_PATH | O_DIRECTORY);
	}
	if (atomic_load(&fs->redirects_seen)) {
		/* A redirected directory is not parent/name in that layer: the parent of its
		 * path there, and its last name (per thread: callers use it at once). */
		static __thread char last[NAME_MAX + 1];
		char path[PATH_MAX];
		int err = ovl_node_layer_path(fs, node, layer, path, sizeof(path));
		if (err)
			return err;
		char *slash = strrchr(path, '/');
		const char *base = slash ? slash + 1 : path;
		if (strlen(base) >= sizeof(last))
			return -ENAMETOOLONG;
		strcpy(last, base);
		*name = last;
		if (!slash)
			return ovl_layer_open(fs, layer, ".", O_PATH | O_DIRECTORY);
		*slash = '\0';
		return ovl_layer_open(fs, layer, path, O_PATH | O_DIRECTORY);
	}
	*name = node->name;
	return ovl_open_in_layer(fs, node->parent, layer, O_PATH | O_DIRECTORY);
}

int ovl_proc_path(int fd, char *buf, size_t size)
{
	int n = snprintf(buf, size, "/proc/self/fd/%d", fd);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* getxattr on any fd, O_PATH ones included (through the fd's magic link, which names
 * exactly the object the fd holds). Returns the size or -errno. */
int ovl_fd_getxattr(int fd, const char *name, void *buf, size_t size)
{
	ssize_t n = fgetxattr(fd, name, buf, size);

	if (n >= 0)
		return (int)n;
	return errno == EBADF ? ovl_opath_getxattr(fd, name, buf, size) : -errno;
}

int ovl_opath_getxattr(int fd, const char *name, void *buf, size_t size)
{
	char proc[64];

	if (ovl_proc_path(fd, proc, sizeof(proc)) < 0)
		return -ENAMETOOLONG;
	ssize_t n = getxattr(proc, name, buf, size);
	return n < 0 ? -errno : (int)n;
}

#ifndef SYS_getxattrat
#define SYS_getxattrat 464 /* Linux 6.13; one number on every architecture */
#endif

struct xattr_args_v0 {
	uint64_t value;
	uint32_t size;
	uint32_t flags;
};

/* getxattr of dirfd/name without following a final symlink: one syscall where the kernel
 * has getxattrat, else through dirfd's magic link in /proc. Returns the size or -errno. */
int ovl_getxattr_at(int dirfd, const char *name, const char *xname, void *buf, size_t size)
{
	static atomic_bool no_getxattrat;
	char path[64 + NAME_MAX];
	ssize_t n;

	if (!atomic_load(&no_getxattrat)) {
		struct xattr_args_v0 args = {.value = (uint64_t)(uintptr_t)buf,
					     .size = (uint32_t)size};
		n = syscall(SYS_getxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, xname, &args,
			    sizeof(args));
		if (n >= 0 || errno != ENOSYS)
			return n < 0 ? -errno : (int)n;
		atomic_store(&no_getxattrat, true);
	}
	n = snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", dirfd, name);
	if (n < 0 || (size_t)n >= sizeof(path))
		return -ENAMETOOLONG;
	n = lgetxattr(path, xname, buf, size);
	return n < 0 ? -errno : (int)n;
}

int ovl_setxattr_at(int dirfd, const char *name, const char *xname, const void *value, size_t size)
{
	char path[64 + NAME_MAX];
	int n = snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", dirfd, name);

	if (n < 0 || (size_t)n >= sizeof(path))
		return -ENAMETOOLONG;
	return lsetxattr(path, xname, value, size, 0) < 0 ? -errno : 0;
}

int ovl_dir_getxattr(int dirfd, const char *xname, void *buf, size_t size)
{
	return ovl_getxattr_at(dirfd, ".", xname, buf, size);
}

/* The origin and fallback inode maps: (dev, ino) -> overlay inode number. */
static uint64_t origin_hash(const struct ovl_hlink *link)
{
	const struct ovl_origin *o = ovl_entry_of(link, struct ovl_origin, link);
	return ovl_hash_dev_ino(o->dev, o->ino);
}

static bool origin_is(const struct ovl_hlink *link, const void *key)
{
	const struct ovl_origin *o = ovl_entry_of(link, struct ovl_origin, link);
	const struct ovl_origin *k = key;
	return o->dev == k->dev && o->ino == k->ino;
}

static struct ovl_origin *map_find(const struct ovl_htab *map, dev_t dev, ino_t ino)
{
	struct ovl_origin key = {.dev = dev, .ino = ino};
	struct ovl_hlink *link = ovl_htab_find(map, ovl_hash_dev_ino(dev, ino), origin_is, &key);
	return link ? ovl_entry_of(link, struct ovl_origin, link) : NULL;
}

/* Grows the map as it fills; the caller holds table_lock. Returns the entry or NULL. */
static struct ovl_origin *map_add(struct ovl_htab *map, dev_t dev, ino_t ino, uint64_t ovl_ino)
{
	struct ovl_origin *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	o->dev = dev;
	o->ino = ino;
	o->ovl_ino = ovl_ino;
	map->hash = origin_hash;
	if (ovl_htab_insert(map, &o->link) < 0) {
		free(o);
		return NULL;
	}
	return o;
}

void ovl_record_origin(struct ovl_fs *fs, dev_t dev, ino_t ino, uint64_t ovl_ino)
{
	pthread_mutex_lock(&fs->table_lock);
	struct ovl_origin *o = map_find(&fs->origins, dev, ino);
	if (o)
		o->ovl_ino = ovl_ino;
	else
		map_add(&fs->origins, dev, ino, ovl_ino);
	pthread_mutex_unlock(&fs->table_lock);
}

/*
 * The inode number scheme (xino-like): with every layer on one filesystem, st_ino is the
 * layer's own inode number, unique there. With several filesystems, the filesystem's index
 * goes into the top xino_bits bits; an inode number too large for that gets a private
 * number from a counter instead. A copied-up object keeps the number it had below.
 */
uint64_t ovl_map_ino(struct ovl_fs *fs, int layer, dev_t dev, ino_t ino)
{
	uint64_t res;

	if (fs->layers[layer].is_upper && fs->origins.buckets) {
		pthread_mutex_lock(&fs->table_lock);
		struct ovl_origin *o = map_find(&fs->origins, dev, ino);
		res = o ? o->ovl_ino : 0;
		pthread_mutex_unlock(&fs->table_lock);
		if (res)
			return res;
	}
	if (fs->xino_bits == 0)
		return ino;
	if (((uint64_t)ino >> (64 - fs->xino_bits)) == 0)
		return (uint64_t)ino | ((uint64_t)fs->layers[layer].fsid << (64 - fs->xino_bits));
	pthread_mutex_lock(&fs->table_lock);
	struct ovl_origin *o = map_find(&fs->inomap, dev, ino);
	if (!o)
		o = map_add(&fs->inomap, dev, ino, fs->next_private_ino++);
	res = o ? o->ovl_ino : ino;
	pthread_mutex_unlock(&fs->table_lock);
	return res;
}

static void free_origin(struct ovl_hlink *link, void *arg)
{
	(void)arg;
	free(ovl_entry_of(link, struct ovl_origin, link));
}

void ovl_maps_free(struct ovl_fs *fs)
{
	ovl_htab_free(&fs->origins, free_origin, NULL);
	ovl_htab_free(&fs->inomap, free_origin, NULL);
}

/* Directory fds of each layer of a directory, lent to the lookups of a readdirplus. */
struct ovl_dirfds *ovl_dirfds_open(struct ovl_fs *fs, struct ovl_node *dir)
{
	struct ovl_dirlayer *dl;
	struct ovl_dirfds *d = malloc(sizeof(*d) + sizeof(int) * (size_t)fs->nlayers);
	if (!d)
		return NULL;
	d->n = fs->nlayers;
	for (int i = 0; i < fs->nlayers; i++)
		d->fd[i] = -1;
	if (dir->type != S_IFDIR || dir->unlinked)
		return d;
	pthread_rwlock_rdlock(&fs->rename_lock);
	int n = ovl_node_dirlayers(dir, &dl);
	for (int i = 0; i < n; i++) {
		int fd = ovl_open_in_layer(fs, dir, dl[i].layer, O_PATH | O_DIRECTORY);
		d->fd[dl[i].layer] = fd < 0 ? -1 : fd;
	}
	pthread_rwlock_unlock(&fs->rename_lock);
	if (n >= 0)
		free(dl); /* allocated even for no layers */
	return d;
}

void ovl_dirfds_close(struct ovl_dirfds *d)
{
	if (!d)
		return;
	for (int i = 0; i < d->n; i++)
		if (d->fd[i] >= 0)
			close(d->fd[i]);
	free(d);
}
