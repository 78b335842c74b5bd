/* Open files: each holds one fd of the layer file. Opening for write copies up first; a
 * read-only fd opened before a copy-up switches to the upper copy at its next use. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static bool wants_write(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

/* The node's name was removed from the layer by another program while its directory is
 * still there: ESTALE then makes the kernel look the name up again and retry the open once
 * (an O_CREAT then creates it). A directory on the way that is gone or is now a symlink
 * stays ENOENT: nothing is looked up through it again. */
static bool name_vanished(struct ovl_fs *fs, struct ovl_node *node, int layer)
{
	const char *name;
	struct stat st;
	int dfd = ovl_open_parent(fs, node, layer, &name);
	bool gone;

	if (dfd < 0)
		return false;
	gone = fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT;
	close(dfd);
	return gone;
}

/* Opens the node's layer file; O_DIRECT is dropped where the layer refuses it.
 * Preconditions: the rename lock. */
static int open_layer_file(struct ovl_fs *fs, struct ovl_node *node, int layer, int flags)
{
	flags &= ~(O_CREAT | O_EXCL | O_NOCTTY | O_DIRECTORY);
	int fd = ovl_open_in_layer(fs, node, layer, flags);

	if (fd == -EINVAL && (flags & O_DIRECT))
		fd = ovl_open_in_layer(fs, node, layer, flags & ~O_DIRECT);
	/* A device where a regular file was: the name was removed (whited out) meanwhile. */
	if (fd == -ENXIO || fd == -ENODEV)
		fd = -ESTALE;
	if (fd == -ENOENT && name_vanished(fs, node, layer))
		fd = -ESTALE;
	return fd;
}

struct ovl_file *ovl_file_new(struct ovl_fs *fs, struct ovl_node *node, int fd, int flags,
			      bool on_upper)
{
	struct ovl_file *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	pthread_rwlock_init(&f->lock, NULL);
	atomic_init(&f->refs, 1);
	atomic_fetch_add(&node->nopen, 1);
	f->fs = fs;
	f->node = node;
	f->fd = fd;
	f->flags = flags;
	f->on_upper = on_upper;
	ovl_node_ref(fs, node, 0, 1);
	pthread_mutex_lock(&fs->files_lock);
	f->next_open = fs->open_files;
	if (f->next_open)
		f->next_open->prev_open = f;
	fs->open_files = f;
	pthread_mutex_unlock(&fs->files_lock);
	return f;
}

static void file_free(struct ovl_file *file)
{
	struct ovl_fs *fs = file->fs;

	pthread_mutex_lock(&fs->files_lock);
	if (file->prev_open)
		file->prev_open->next_open = file->next_open;
	else
		fs->open_files = file->next_open;
	if (file->next_open)
		file->next_open->prev_open = file->prev_open;
	pthread_mutex_unlock(&fs->files_lock);
	close(file->fd);
	pthread_rwlock_destroy(&file->lock);
	free(file);
}

void ovl_files_free_all(struct ovl_fs *fs)
{
	while (fs->open_files)
		file_free(fs->open_files); /* the nodes go with the table */
}

/* The kernel's may_open rule for immutable and append-only files (checked on the overlay's
 * inode, before any copy-up). Preconditions: the rename lock. */
static int open_allowed(struct ovl_fs *fs, struct ovl_node *node, int flags)
{
	int prot = ovl_node_prot(fs, node);

	if (prot < 0)
		return prot;
	if (prot & OVL_PROT_IMMUTABLE)
		return -EPERM;
	if ((prot & OVL_PROT_APPEND) && (!(flags & O_APPEND) || (flags & O_TRUNC)))
		return -EPERM;
	return 0;
}

int ovl_open(struct ovl_fs *fs, struct ovl_node *node, int flags, struct ovl_file **out)
{
	int err = 0, fd, layer;

	if (node->type == S_IFDIR)
		return wants_write(flags) ? -EISDIR : -EINVAL;
	if (wants_write(flags) && fs->readonly)
		return -EROFS;
	pthread_rwlock_rdlock(&fs->rename_lock);
	if (wants_write(flags))
		err = open_allowed(fs, node, flags);
	if (!err && wants_write(flags) && node->type == S_IFREG)
		err = ovl_copy_up_locked(fs, node, (flags & O_TRUNC) != 0);
	layer = ovl_node_top(node);
	fd = err ? err : -ENODATA;
	/* A metacopy file (not being written: copied up above) reads its data file. */
	if (fd == -ENODATA && node->type == S_IFREG) {
		fd = ovl_node_data_open(fs, node, flags & ~(O_CREAT | O_EXCL | O_NOCTTY));
		if (fd >= 0)
			layer = -1; /* not the upper object */
	}
	if (fd == -ENODATA)
		fd = open_layer_file(fs, node, layer, flags);
	pthread_rwlock_unlock(&fs->rename_lock);
	if (fd < 0)
		return fd;
	*out = ovl_file_new(fs, node, fd, flags, fs->has_upper && layer == 0);
	if (!*out) {
		close(fd);
		return -ENOMEM;
	}
	return 0;
}

bool ovl_file_on_upper(struct ovl_file *file)
{
	pthread_rwlock_rdlock(&file->lock);
	bool on = file->on_upper;
	pthread_rwlock_unlock(&file->lock);
	return on;
}

bool ovl_file_is_direct(const struct ovl_file *file)
{
	return (file->flags & O_DIRECT) != 0;
}

static void file_unref(struct ovl_file *file)
{
	if (atomic_fetch_sub(&file->refs, 1) != 1)
		return;
	struct ovl_fs *fs = file->fs;
	struct ovl_node *node = file->node;
	file_free(file);
	atomic_fetch_sub(&node->nopen, 1);
	ovl_node_unref(fs, node, 0, 1);
}

/* A read-only fd of an unlinked node's kept object (it was copied up, then unlinked). */
static int reopen_orphan(struct ovl_node *node)
{
	char proc[64];

	if (ovl_orphan_fd(node) < 0 || ovl_proc_path(ovl_orphan_fd(node), proc, sizeof(proc)) < 0)
		return -ENOENT;
	int fd = open(proc, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int ovl_file_get_fd(struct ovl_fs *fs, struct ovl_file *file)
{
	atomic_fetch_add(&file->refs, 1);
	pthread_rwlock_rdlock(&file->lock);
	if (file->on_upper || !ovl_node_is_upper(fs, file->node) || ovl_node_metacopy(file->node))
		return file->fd;
	pthread_rwlock_unlock(&file->lock);

	/* Copied up since it was opened: read the upper copy from now on. */
	pthread_rwlock_wrlock(&file->lock);
	if (!file->on_upper) {
		pthread_rwlock_rdlock(&fs->rename_lock);
		int fd =
		    file->node->unlinked
			? reopen_orphan(file->node)
			: open_layer_file(fs, file->node, 0, O_RDONLY | (file->flags & O_DIRECT));
		pthread_rwlock_unlock(&fs->rename_lock);
		if (fd >= 0) {
			close(file->fd);
			file->fd = fd;
			file->on_upper = true;
		}
	}
	pthread_rwlock_unlock(&file->lock);
	pthread_rwlock_rdlock(&file->lock);
	return file->fd;
}

int ovl_file_upper_dup(struct ovl_file *file)
{
	pthread_rwlock_rdlock(&file->lock);
	int fd = file->on_upper ? fcntl(file->fd, F_DUPFD_CLOEXEC, 0) : -1;
	pthread_rwlock_unlock(&file->lock);
	return fd;
}

int ovl_file_upper_fstat(struct ovl_file *file, struct stat *st)
{
	pthread_rwlock_rdlock(&file->lock);
	int r = !file->on_upper ? 0 : fstat(file->fd, st) < 0 ? -errno : 1;
	pthread_rwlock_unlock(&file->lock);
	return r;
}

void ovl_file_put_fd(struct ovl_file *file)
{
	pthread_rwlock_unlock(&file->lock);
	file_unref(file);
}

ssize_t ovl_read(struct ovl_fs *fs, struct ovl_file *file, void *buf, size_t size, off_t off)
{
	int fd = ovl_file_get_fd(fs, file);
	ssize_t n = pread(fd, buf, size, off);
	ssize_t res = n < 0 ? -errno : n;

	ovl_file_put_fd(file);
	return res;
}

ssize_t ovl_write(struct ovl_fs *fs, struct ovl_file *file, const void *buf, size_t size, off_t off)
{
	int fd = ovl_file_get_fd(fs, file);
	ssize_t n = pwrite(fd, buf, size, off);
	ssize_t res = n < 0 ? -errno : n;

	ovl_file_put_fd(file);
	return res;
}

ssize_t ovl_write_buffered(struct ovl_fs *fs, struct ovl_file *file, const void *buf, size_t size,
			   off_t off)
{
	ssize_t res;
	int fl;

	if (!(file->flags & O_DIRECT))
		return ovl_write(fs, file, buf, size, off);
	/* A writable file is on upper for good (copied up at open): its fd never switches.
	 * The write lock keeps other requests' direct I/O off this fd meanwhile. */
	atomic_fetch_add(&file->refs, 1);
	pthread_rwlock_wrlock(&file->lock);
	fl = fcntl(file->fd, F_GETFL);
	if (fl < 0 || fcntl(file->fd, F_SETFL, fl & ~O_DIRECT) < 0) {
		res = -errno;
	} else {
		ssize_t n = pwrite(file->fd, buf, size, off);
		res = n < 0 ? -errno : n;
		if (fcntl(file->fd, F_SETFL, fl) < 0 && res >= 0)
			res = -errno;
	}
	pthread_rwlock_unlock(&file->lock);
	file_unref(file);
	return res;
}

int ovl_file_keep_kernel_mtime(struct ovl_fs *fs, struct ovl_file *file)
{
	struct ovl_node *node = file->node;
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_nsec = UTIME_OMIT}};
	bool has;
	int err = 0;

	pthread_spin_lock(&node->lock);
	ts[1] = node->kernel_mtime;
	pthread_spin_unlock(&node->lock);
	has = ts[1].tv_nsec != UTIME_OMIT;
	if (!has)
		return 0;
	int fd = ovl_file_get_fd(fs, file);
	if (file->on_upper && futimens(fd, ts) < 0)
		err = -errno;
	ovl_file_put_fd(file);
	return err;
}

int ovl_fsync(struct ovl_fs *fs, struct ovl_file *file, bool datasync)
{
	int err = 0;

	if (fs->no_fsync)
		return 0;
	int fd = ovl_file_get_fd(fs, file);
	/* A lower file never changes through us: nothing to sync. */
	if (file->on_upper && (datasync ? fdatasync(fd) : fsync(fd)) < 0)
		err = -errno;
	ovl_file_put_fd(file);
	return err;
}

int ovl_fsyncdir(struct ovl_fs *fs, struct ovl_node *node, bool datasync)
{
	int fd, err = 0;

	/* A directory only in lower layers has nothing of ours to sync; a removed one has no
	 * name left to sync (its removal is the parent's to sync), as on the kernel. */
	if (fs->no_fsync || !ovl_node_is_upper(fs, node) || atomic_load(&node->unlinked))
		return 0;
	pthread_rwlock_rdlock(&fs->rename_lock);
	fd = ovl_open_in_layer(fs, node, 0, O_RDONLY | O_DIRECTORY);
	pthread_rwlock_unlock(&fs->rename_lock);
	if (fd < 0)
		return fd;
	if ((datasync ? fdatasync(fd) : fsync(fd)) < 0)
		err = -errno;
	close(fd);
	return err;
}

int ovl_fallocate(struct ovl_fs *fs, struct ovl_file *file, int mode, off_t off, off_t len)
{
	int fd = ovl_file_get_fd(fs, file);
	int err = fallocate(fd, mode, off, len) < 0 ? -errno : 0;

	ovl_file_put_fd(file);
	return err;
}

off_t ovl_lseek(struct ovl_fs *fs, struct ovl_file *file, off_t off, int whence)
{
	int fd = ovl_file_get_fd(fs, file);
	off_t res = lseek(fd, off, whence);

	if (res < 0)
		res = -errno;
	ovl_file_put_fd(file);
	return res;
}

ssize_t ovl_copy_file_range(struct ovl_fs *fs, struct ovl_file *in, off_t off_in,
			    struct ovl_file *out, off_t off_out, size_t len, unsigned flags)
{
	int ifd = ovl_file_get_fd(fs, in);
	int ofd = in == out ? ifd : ovl_file_get_fd(fs, out);
	loff_t li = off_in, lo = off_out;
	ssize_t n = copy_file_range(ifd, &li, ofd, &lo, len, flags);
	ssize_t res = n < 0 ? -errno : n;

	if (in != out)
		ovl_file_put_fd(out);
	ovl_file_put_fd(in);
	return res;
}

void ovl_release(struct ovl_fs *fs, struct ovl_file *file)
{
	(void)fs;
	file_unref(file);
}
