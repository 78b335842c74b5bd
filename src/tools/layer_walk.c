/* Confined, sorted reading of layer directories and the overlay marks found in them. */
#include "layer_walk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void lw_free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

int lw_list_names(int dfd, char ***out, size_t *nout)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int err = 0;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		err = -errno;
		close(fd);
		return err;
	}
	for (;;) {
		errno = 0;
		de = readdir(d);
		if (!de) {
			err = -errno;
			break;
		}
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (n == cap) {
			char **nn = realloc(names, (cap = cap ? cap * 2 : 16) * sizeof(*names));
			if (!nn) {
				err = -ENOMEM;
				break;
			}
			names = nn;
		}
		if (!(names[n] = strdup(de->d_name))) {
			err = -ENOMEM;
			break;
		}
		n++;
	}
	closedir(d);
	if (err) {
		lw_free_names(names, n);
		return err;
	}
	if (n)
		qsort(names, n, sizeof(*names), cmp_names);
	*out = names;
	*nout = n;
	return 0;
}

int lw_open_dir(int dfd, const char *name)
{
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* dfd/name through dfd's magic link: the l*xattr calls then act on exactly that entry. */
static int proc_name(char *buf, size_t size, int dfd, const char *name)
{
	int n = snprintf(buf, size, "/proc/self/fd/%d/%s", dfd, name);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

long lw_getxattr(int dfd, const char *name, const char *xname, void *buf, size_t size)
{
	char path[64 + NAME_MAX];
	ssize_t n;
	int r = proc_name(path, sizeof(path), dfd, name);

	if (r)
		return r;
	n = lgetxattr(path, xname, buf, size);
	return n < 0 ? -errno : n;
}

long lw_listxattr(int dfd, const char *name, char *buf, size_t size)
{
	char path[64 + NAME_MAX];
	ssize_t n;
	int r = proc_name(path, sizeof(path), dfd, name);

	if (r)
		return r;
	n = llistxattr(path, buf, size);
	return n < 0 ? -errno : n;
}

int lw_getxattr_alloc(int dfd, const char *name, const char *xname, char **val, size_t *len)
{
	for (;;) {
		long n = lw_getxattr(dfd, name, xname, NULL, 0);
		char *buf;
		if (n < 0)
			return (int)n;
		buf = malloc(n ? (size_t)n : 1);
		if (!buf)
			return -ENOMEM;
		long m = lw_getxattr(dfd, name, xname, buf, (size_t)n);
		if (m == -ERANGE) { /* grew in between: ask again */
			free(buf);
			continue;
		}
		if (m < 0) {
			free(buf);
			return (int)m;
		}
		*val = buf;
		*len = (size_t)m;
		return 0;
	}
}

int lw_lower_opaque(int dfd, const char *name)
{
	char v;

	return ovl_opaque_value(&v, lw_getxattr(dfd, name, OVL_XATTR_OPAQUE, &v, 1));
}

bool lw_is_xwhiteout(int dfd, const char *name, const struct stat *st)
{
	return ovl_may_be_xwhiteout(st) && lw_getxattr(dfd, name, OVL_XATTR_WHITEOUT, NULL, 0) >= 0;
}

/* The upper directory's own mark, in every form: the kernel's (trusted.overlay.opaque),
 * userxattr mounts' (user.overlay.opaque), both "y" (opaque) or "x" (holds xattr
 * whiteouts), and fuse-overlayfs's (user.fuseoverlayfs.opaque starting with 'y'). */
static void upper_marks(int dfd, bool *opaque, bool *xwh)
{
	static const char *const names[] = {OVL_XATTR_OPAQUE, OVL_UXATTR_OPAQUE};
	char v[8];
	ssize_t n;

	*opaque = *xwh = false;
	for (size_t i = 0; i < 2; i++) {
		n = fgetxattr(dfd, names[i], v, sizeof(v));
		if (ovl_opaque_value(v, n) == OVL_OPAQUE_YES)
			*opaque = true;
		if (ovl_opaque_value(v, n) == OVL_OPAQUE_XWHITEOUTS)
			*xwh = true;
	}
	n = fgetxattr(dfd, OVL_FXATTR_OPAQUE, v, sizeof(v));
	if (n >= 1 && v[0] == OVL_OPAQUE_YES)
		*opaque = true;
}

static bool upper_xwhiteout(int dfd, const char *name, const struct stat *st)
{
	return ovl_may_be_xwhiteout(st) &&
	       (lw_getxattr(dfd, name, OVL_XATTR_WHITEOUT, NULL, 0) >= 0 ||
		lw_getxattr(dfd, name, OVL_UXATTR_WHITEOUT, NULL, 0) >= 0);
}

int lw_read_upper_dir(int dfd, struct lw_dir *out)
{
	char **names;
	size_t n;
	bool xwh;
	int r = lw_list_names(dfd, &names, &n);

	memset(out, 0, sizeof(*out));
	if (r)
		return r;
	out->e = calloc(n ? n : 1, sizeof(*out->e));
	if (!out->e) {
		lw_free_names(names, n);
		return -ENOMEM;
	}
	upper_marks(dfd, &out->opaque, &xwh);
	for (size_t i = 0; i < n; i++) {
		struct lw_entry *e = &out->e[out->n];
		e->name = names[i];
		names[i] = NULL;
		out->n++;
		if (fstatat(dfd, e->name, &e->st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			break;
		}
		enum ovl_wh_kind wh = ovl_wh_kind(e->name, &e->hidden);
		if (wh == OVL_WH_OPAQUE_DIR) {
			e->kind = LW_OPQ_MARK;
			out->opaque = true;
		} else if (wh == OVL_WH_META) {
			e->kind = LW_META;
		} else if (wh == OVL_WH_HIDES) {
			e->kind = LW_WHITEOUT;
		} else if (ovl_is_whiteout_stat(&e->st) ||
			   (xwh && upper_xwhiteout(dfd, e->name, &e->st))) {
			e->kind = LW_WHITEOUT;
			e->hidden = e->name;
		} else {
			e->kind = LW_OBJECT;
		}
	}
	lw_free_names(names, n);
	if (r)
		lw_dir_free(out);
	return r;
}

void lw_dir_free(struct lw_dir *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->e[i].name);
	free(d->e);
	memset(d, 0, sizeof(*d));
}
