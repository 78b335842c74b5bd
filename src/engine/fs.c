/* The layer stack: opening the layers, the work directory, and the root node. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <unistd.h>

/* Removes everything below dirfd without following symlinks. */
int ovl_remove_tree_at(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int err = 0;

	if (fd < 0) {
		if (errno == ENOTDIR || errno == ELOOP)
			return unlinkat(dirfd, name, 0) < 0 ? -errno : 0;
		return -errno;
	}
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		int r = de->d_type == DT_DIR ? ovl_remove_tree_at(fd, de->d_name)
					     : (unlinkat(fd, de->d_name, 0) < 0 ? -errno : 0);
		if (r == -EISDIR)
			r = ovl_remove_tree_at(fd, de->d_name);
		if (r && !err)
			err = r;
	}
	closedir(d);
	if (!err && strcmp(name, ".") != 0 && unlinkat(dirfd, name, AT_REMOVEDIR) < 0)
		err = -errno;
	return err;
}

static int open_layer(struct ovl_fs *fs, int i, const char *path, bool upper)
{
	struct ovl_layer *l = &fs->layers[i];
	struct statfs sfs;
	struct stat st;

	l->path = strdup(path);
	l->is_upper = upper;
	l->root_fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (!l->path || l->root_fd < 0)
		return l->path ? -errno : -ENOMEM;
	if (fstat(l->root_fd, &st) < 0 || fstatfs(l->root_fd, &sfs) < 0)
		return -errno;
	l->dev = st.st_dev;
	if ((long)sfs.f_namelen > fs->namemax)
		fs->namemax = (long)sfs.f_namelen;
	l->fsid = -1;
	for (int j = 0; j < i; j++)
		if (fs->layers[j].dev == l->dev)
			l->fsid = fs->layers[j].fsid;
	if (l->fsid < 0)
		l->fsid = fs->ndevs++;
	return 0;
}

/* The work directory is <workdir>/work, as the kernel's; stale leftovers of an earlier
 * mount (interrupted copy-ups, temporary whiteouts) are removed at mount. */
static int open_workdir(struct ovl_fs *fs, const char *workdir)
{
	int wfd = open(workdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	int err;

	if (wfd < 0)
		return -errno;
	if (mkdirat(wfd, "work", 0700) < 0 && errno != EEXIST) {
		err = -errno;
		close(wfd);
		return err;
	}
	fs->work_fd = openat(wfd, "work", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	err = fs->work_fd < 0 ? -errno : 0;
	if (!err)
		err = ovl_remove_tree_at(fs->work_fd, ".");
	close(wfd);
	return err;
}

/* The index beside the work directory, once the layers' handles are known. */
static int setup_index(struct ovl_fs *fs, const char *workdir, int mode)
{
	if (mode == OVL_INDEX_OFF)
		return 0;
	/* As the kernel ("useless in a non-upper mount"): said, and the mount goes on. */
	if (!fs->has_upper || fs->readonly) {
		if (mode == OVL_INDEX_ON)
			ovl_warn(fs, "index=on has no use without a writable upper layer: ignored");
		return 0;
	}
	int wfd = open(workdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (wfd < 0)
		return -errno;
	int err = ovl_index_init(fs, wfd, mode);
	close(wfd);
	return err;
}

static int make_root(struct ovl_fs *fs)
{
	struct ovl_node *root = ovl_node_new(fs, NULL, "");
	struct stat st;

	if (!root)
		return -ENOMEM;
	fs->root = root;
	root->type = S_IFDIR;
	root->top = 0;
	root->refs = 1;
	root->nlookup = 1;
	/* Data-only layers are never looked up by name: no directory merges them. */
	root->dirlayers = calloc((size_t)fs->nregular, sizeof(*root->dirlayers));
	if (!root->dirlayers)
		return -ENOMEM;
	root->ndirlayers = fs->nregular;
	for (int i = 0; i < fs->nregular; i++) {
		root->dirlayers[i].layer = i;
		root->dirlayers[i].xwhiteouts =
		    !fs->layers[i].is_upper &&
		    ovl_dir_opaque(fs, fs->layers[i].root_fd, ".", false) == OVL_OPAQUE_XWHITEOUTS;
	}
	if (fstat(fs->layers[0].root_fd, &st) < 0)
		return -errno;
	root->ino = ovl_map_ino(fs, 0, st.st_dev, st.st_ino);
	return 0;
}

int ovl_fs_new(const struct ovl_fs_params *p, struct ovl_fs **out)
{
	struct ovl_fs *fs = calloc(1, sizeof(*fs));
	int err, i = 0;

	if (!fs)
		return -ENOMEM;
	if (p->nlower < 1 || p->nlower >= OVL_MAX_LAYERS || (p->upperdir && !p->workdir) ||
	    p->ndata < 0 || p->ndata >= p->nlower) {
		free(fs);
		return -EINVAL;
	}
	pthread_rwlock_init(&fs->rename_lock, NULL);
	pthread_mutex_init(&fs->table_lock, NULL);
	pthread_mutex_init(&fs->listing_lock, NULL);
	pthread_mutex_init(&fs->files_lock, NULL);
	pthread_mutex_init(&fs->mcdata_lock, NULL);
	pthread_mutex_init(&fs->whiteout_lock, NULL);
	atomic_init(&fs->tmp_counter, 0);
	fs->work_fd = -1;
	fs->has_upper = p->upperdir != NULL;
	fs->readonly = p->readonly || !p->upperdir;
	fs->no_fsync = p->no_fsync;
	fs->noatime = p->noatime;
	fs->euid = geteuid();
	fs->egid = getegid();
	fs->nodiratime = p->nodiratime;
	fs->oci_whiteouts = !p->no_oci_whiteouts;
	fs->origin_uuid_off = p->origin_uuid_off;
	fs->redirect_nofollow = p->redirect_nofollow;
	fs->redirect_write = p->redirect_write;
	/* Data-only layers name data through metacopy redirects only: they imply metacopy. */
	fs->metacopy = p->metacopy || p->ndata > 0;
	/* Not implied: a kernel without metacopy=on refuses the stubs a copy-up would leave. */
	fs->metacopy_up = p->metacopy;
	fs->verity = p->verity;
	fs->attr_changed = p->attr_changed;
	fs->attr_changed_ctx = p->ctx;
	fs->warn = p->warn;
	fs->nlayers = p->nlower + (fs->has_upper ? 1 : 0);
	fs->nregular = fs->nlayers - p->ndata;
	/* One more: the index (index.c), used only with index=on. */
	fs->layers = calloc((size_t)fs->nlayers + 1, sizeof(*fs->layers));
	fs->index_layer = -1;
	err = fs->layers ? 0 : -ENOMEM;
	for (int j = 0; j <= fs->nlayers; j++)
		if (fs->layers)
			fs->layers[j].root_fd = fs->layers[j].handle_fd = -1;
	if (!err && fs->has_upper)
		err = open_layer(fs, i++, p->upperdir, true);
	for (int j = 0; !err && j < p->nlower; j++) {
		fs->layers[i].data_only = j >= p->nlower - p->ndata;
		err = open_layer(fs, i++, p->lowerdirs[j], false);
	}
	if (!err) {
		while ((1 << fs->xino_bits) < fs->ndevs)
			fs->xino_bits++;
		fs->next_private_ino = 2;
		/* uuid=off needs every layer on one filesystem, as the kernel's, which falls
		 * back to uuid=on otherwise (overlayfs/super.c, ovl_fill_super). */
		if (fs->ndevs > 1)
			fs->origin_uuid_off = false;
	}
	if (!err && fs->has_upper && !fs->readonly)
		err = open_workdir(fs, p->workdir);
	if (!err)
		err = ovl_formats_init(fs, p);
	if (!err)
		ovl_origin_init(fs);
	if (!err)
		err = setup_index(fs, p->workdir, p->index);
	if (!err)
		err = ovl_owner_setup(fs, p->owner);
	if (!err)
		err = ovl_dircache_init(fs);
	if (!err)
		err = ovl_node_init_table(fs);
	if (!err)
		err = make_root(fs);
	if (err) {
		ovl_fs_destroy(fs);
		return err;
	}
	*out = fs;
	return 0;
}

void ovl_fs_close_layers(struct ovl_fs *fs)
{
	ovl_files_free_all(fs); /* the files the kernel never released, with their fds */
	ovl_index_close(fs);
	ovl_dircache_close(fs);
	for (struct ovl_node *n = fs->orphans; n; n = n->orphan->next) {
		if (n->orphan->fd >= 0)
			close(n->orphan->fd);
		n->orphan->fd = -1;
	}
	for (int i = 0; fs->layers && i < fs->nlayers; i++) {
		if (fs->layers[i].root_fd >= 0)
			close(fs->layers[i].root_fd);
		if (fs->layers[i].handle_fd >= 0)
			close(fs->layers[i].handle_fd);
		fs->layers[i].root_fd = fs->layers[i].handle_fd = -1;
	}
	/* Best effort: the next mount empties the work directory anyway. */
	if (fs->work_fd >= 0 && fs->whiteout_name[0])
		(void)unlinkat(fs->work_fd, fs->whiteout_name, 0);
	fs->whiteout_name[0] = '\0';
	if (fs->work_fd >= 0)
		close(fs->work_fd);
	fs->work_fd = -1;
}

void ovl_fs_destroy(struct ovl_fs *fs)
{
	if (!fs)
		return;
	/* The fds first (again, if the front end did already): freeing 100,000 nodes one by one
	 * takes 0.1 s, during which the layers would stay busy. */
	ovl_fs_close_layers(fs);
	ovl_node_free_all(fs);
	ovl_metacopy_free_all(fs);
	ovl_maps_free(fs);
	ovl_index_free(fs);
	ovl_dircache_free(fs);
	for (int i = 0; fs->layers && i < fs->nlayers; i++)
		free(fs->layers[i].path);
	free(fs->layers);
	pthread_rwlock_destroy(&fs->rename_lock);
	pthread_mutex_destroy(&fs->table_lock);
	pthread_mutex_destroy(&fs->listing_lock);
	pthread_mutex_destroy(&fs->files_lock);
	pthread_mutex_destroy(&fs->mcdata_lock);
	pthread_mutex_destroy(&fs->whiteout_lock);
	free(fs);
}

struct ovl_node *ovl_root(struct ovl_fs *fs)
{
	return fs->root;
}

bool ovl_is_readonly(const struct ovl_fs *fs)
{
	return fs->readonly;
}

int ovl_syncfs(struct ovl_fs *fs)
{
	if (!fs->has_upper)
		return 0;
	/* syncfs wants an fd that may do I/O: the O_PATH root fd does not do. */
	int fd = openat(fs->layers[0].root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int err = syncfs(fd) < 0 ? -errno : 0;
	close(fd);
	return err;
}

int ovl_tmpname(struct ovl_fs *fs, char *buf, size_t size)
{
	unsigned long n = atomic_fetch_add(&fs->tmp_counter, 1);
	int len = snprintf(buf, size, "#ovl%lx.%lx", (unsigned long)getpid(), n);
	return len < 0 || (size_t)len >= size ? -ENAMETOOLONG : 0;
}

void ovl_warn(struct ovl_fs *fs, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!fs->warn)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fs->warn(msg);
}
