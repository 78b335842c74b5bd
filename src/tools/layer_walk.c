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

static int cmp_entry_by_name(const void *a, const void *b)
{
	return strcmp(((const struct lw_entry *)a)->name, ((const struct lw_entry *)b)->name);
}

/* Whether the upper directory d holds name as an object or a whiteout in either form. */
bool lw_dir_hides(const struct lw_dir *d, const char *name)
{
	struct lw_entry key = {.name = (char *)name};
	char wh[sizeof(OVL_WH_PREFIX) + NAME_MAX];
	const struct lw_entry *e = bsearch(&key, d->e, d->n, sizeof(*d->e), cmp_entry_by_name);

	if (e && (e->kind == LW_OBJECT || e->kind == LW_WHITEOUT))
		return true;
	snprintf(wh, sizeof(wh), OVL_WH_PREFIX "%s", name);
	key.name = wh;
	e = bsearch(&key, d->e, d->n, sizeof(*d->e), cmp_entry_by_name);
	return e && e->kind == LW_WHITEOUT;
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

void lw_stack_free(struct lw_stack *s)
{
	for (size_t i = 0; i < s->n; i++)
		close(s->d[i].fd);
	free(s->d);
	s->d = NULL;
	s->n = 0;
}

void lw_found_free(struct lw_found *f)
{
	lw_stack_free(&f->dirs);
	if (f->pfd >= 0)
		close(f->pfd);
	if (f->datafd >= 0)
		close(f->datafd);
	free(f->name);
	f->pfd = f->datafd = -1;
	f->name = NULL;
}

static bool bad_component(const char *s, size_t len)
{
	return len == 0 || len > NAME_MAX || (len == 1 && s[0] == '.') ||
	       (len == 2 && s[0] == '.' && s[1] == '.');
}

/* The kernel's rules for a redirect's value; ".." would leave the layer, so it is refused
 * here rather than looked up. */
static bool valid_redirect(const char *v, size_t len)
{
	if (len == 0 || len >= PATH_MAX || strlen(v) != len)
		return false;
	if (v[0] != '/')
		return !strchr(v, '/') && !bad_component(v, len);
	for (const char *s = v; *s == '/';) {
		const char *next = strchrnul(s + 1, '/');
		if (bad_component(s + 1, (size_t)(next - s - 1)))
			return false;
		s = next;
	}
	return true;
}

int lw_read_redirect(int dfd, const char *name, char **out)
{
	static const char *const names[] = {OVL_XATTR_PREFIX OVL_X_REDIRECT,
					    OVL_UXATTR_PREFIX OVL_X_REDIRECT};
	char *v;
	size_t len;

	*out = NULL;
	for (size_t i = 0; i < 2; i++) {
		int r = lw_getxattr_alloc(dfd, name, names[i], &v, &len);
		if (r == -ENODATA || r == -ENOTSUP)
			continue;
		if (r == -E2BIG || r == -ERANGE)
			return -EINVAL;
		if (r)
			return r;
		char *s = realloc(v, len + 1);
		if (!s) {
			free(v);
			return -ENOMEM;
		}
		s[len] = '\0';
		if (!valid_redirect(s, len)) {
			free(s);
			return -EINVAL;
		}
		*out = s;
		return 1;
	}
	return 0;
}

bool lw_has_origin(int dfd, const char *name)
{
	return lw_getxattr(dfd, name, OVL_XATTR_PREFIX OVL_X_ORIGIN, NULL, 0) >= 0 ||
	       lw_getxattr(dfd, name, OVL_UXATTR_PREFIX OVL_X_ORIGIN, NULL, 0) >= 0;
}

bool lw_is_metacopy(int dfd, const char *name)
{
	return lw_getxattr(dfd, name, OVL_XATTR_PREFIX OVL_X_METACOPY, NULL, 0) >= 0 ||
	       lw_getxattr(dfd, name, OVL_UXATTR_PREFIX OVL_X_METACOPY, NULL, 0) >= 0;
}

/* Where the lookup stands in one layer: the directory holding the last component. */
enum step { STEP_ABSENT, STEP_STOP, STEP_FOUND };

/* Walks the absolute path `abs` ("/a/b") in the layer root rfd to the directory holding its
 * last component: *pfd (owned) and *last. Components are opened one at a time, never
 * through a symlink. An intermediate whiteout or non-directory ends the lookup (STEP_STOP);
 * an intermediate opaque directory ends it after this layer (*stop_after). */
static int walk_abs(int rfd, bool xwh, const char *abs, int *pfd, const char **last,
		    bool *stop_after)
{
	int fd = dup(rfd);
	const char *s = abs + 1;

	if (fd < 0)
		return -errno;
	for (;;) {
		const char *next = strchrnul(s, '/');
		if (!*next) {
			*pfd = fd;
			*last = s;
			return STEP_FOUND;
		}
		char comp[NAME_MAX + 1];
		struct stat st;
		memcpy(comp, s, (size_t)(next - s));
		comp[next - s] = '\0';
		if (fstatat(fd, comp, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			int e = errno;
			close(fd);
			return e == ENOENT || e == ENAMETOOLONG ? STEP_ABSENT : -e;
		}
		if (!S_ISDIR(st.st_mode) || ovl_is_whiteout_stat(&st) ||
		    (xwh && lw_is_xwhiteout(fd, comp, &st))) {
			close(fd);
			return STEP_STOP;
		}
		int op = lw_lower_opaque(fd, comp);
		int cfd = lw_open_dir(fd, comp);
		close(fd);
		if (cfd < 0)
			return cfd;
		if (op == OVL_OPAQUE_YES)
			*stop_after = true;
		xwh = op == OVL_OPAQUE_XWHITEOUTS;
		fd = cfd;
		s = next + 1;
	}
}

/* A relative redirect replaces the last component of the name looked up. */
static int apply_redirect(char **cur, const char *redirect)
{
	char *n;

	if (redirect[0] == '/' || (*cur)[0] != '/') {
		n = strdup(redirect);
	} else {
		const char *slash = strrchr(*cur, '/');
		if (asprintf(&n, "%.*s/%s", (int)(slash - *cur), *cur, redirect) < 0)
			n = NULL;
	}
	if (!n)
		return -ENOMEM;
	free(*cur);
	*cur = n;
	return 0;
}

static int push_dir(struct lw_stack *s, int fd, size_t layer, bool xwh)
{
	struct lw_ldir *nd = realloc(s->d, (s->n + 1) * sizeof(*nd));

	if (!nd) {
		close(fd);
		return -ENOMEM;
	}
	s->d = nd;
	s->d[s->n++] = (struct lw_ldir){.fd = fd, .layer = layer, .xwh = xwh};
	return 0;
}

int lw_lookup(const struct lw_stack *parent, const struct lw_stack *roots, const char *name,
	      const char *redirect, bool metacopy, struct lw_found *f)
{
	char *cur = strdup(redirect ? redirect : name);
	size_t nlayers = roots->n, pi = 0;
	int kind = 0, r = 0;
	bool stop = false;

	memset(f, 0, sizeof(*f));
	f->pfd = f->datafd = -1;
	if (!cur)
		return -ENOMEM;
	for (size_t layer = 0; layer < nlayers && !stop && !r; layer++) {
		bool xwh, stop_after = false, last_layer = layer + 1 == nlayers;
		const char *last = NULL;
		int pfd = -1;
		struct stat st;

		if (cur[0] == '/') {
			xwh = roots->d[layer].xwh;
			r = walk_abs(roots->d[layer].fd, xwh, cur, &pfd, &last, &stop_after);
			if (r == STEP_ABSENT) {
				r = 0;
				continue;
			}
			if (r == STEP_STOP) {
				r = 0;
				break;
			}
			if (r < 0)
				break;
			r = 0;
		} else {
			while (pi < parent->n && parent->d[pi].layer < layer)
				pi++;
			if (pi == parent->n || parent->d[pi].layer != layer)
				continue;
			if ((pfd = dup(parent->d[pi].fd)) < 0) {
				r = -errno;
				break;
			}
			xwh = parent->d[pi].xwh;
			last = cur;
		}
		if (fstatat(pfd, last, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT && errno != ENAMETOOLONG)
				r = -errno;
			close(pfd);
			stop = stop_after;
			continue;
		}
		if (ovl_is_whiteout_stat(&st) || (xwh && lw_is_xwhiteout(pfd, last, &st))) {
			close(pfd);
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			if (kind == 1 || metacopy) { /* a directory below a non-directory: hidden */
				close(pfd);
				break;
			}
			int op = lw_lower_opaque(pfd, last);
			int cfd = lw_open_dir(pfd, last);
			char *rd = NULL;
			if (cfd >= 0 && !last_layer && op != OVL_OPAQUE_YES)
				r = lw_read_redirect(pfd, last, &rd);
			close(pfd);
			if (cfd < 0) {
				r = cfd;
				break;
			}
			if (kind == 0)
				f->st = st;
			kind = 2;
			if (r >= 0)
				r = push_dir(&f->dirs, cfd, layer, op == OVL_OPAQUE_XWHITEOUTS);
			else
				close(cfd);
			if (!r && rd)
				r = apply_redirect(&cur, rd);
			free(rd);
			stop = op == OVL_OPAQUE_YES || stop_after;
			continue;
		}
		if (kind == 2 || (metacopy && !S_ISREG(st.st_mode))) {
			close(pfd);
			break;
		}
		bool mc = S_ISREG(st.st_mode) && !last_layer && lw_is_metacopy(pfd, last);
		if (kind == 0 && !metacopy) {
			kind = 1;
			f->st = st;
			if (!(f->name = strdup(last))) {
				close(pfd);
				r = -ENOMEM;
				break;
			}
			f->pfd = pfd;
			if (!mc)
				break;
			if ((pfd = dup(pfd)) < 0) {
				r = -errno;
				break;
			}
			metacopy = true;
		}
		if (!mc) { /* the data of the metacopy chain */
			int fd = openat(pfd, last,
					O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
			close(pfd);
			if (fd < 0)
				r = -errno;
			else
				f->datafd = fd;
			if (!kind)
				kind = 1;
			break;
		}
		/* one more metacopy: its own absolute redirect says where the data is */
		char *rd = NULL;
		r = lw_read_redirect(pfd, last, &rd);
		close(pfd);
		if (r > 0 && rd[0] == '/')
			r = apply_redirect(&cur, rd);
		else if (r > 0)
			r = 0;
		free(rd);
		stop = stop_after;
	}
	free(cur);
	if (r < 0) {
		lw_found_free(f);
		return r;
	}
	return kind;
}

int lw_cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted, distinct names of every directory of the stack. 0 or -errno. */
int lw_stack_names(const struct lw_stack *l, char ***out, size_t *nout)
{
	char **all = NULL;
	size_t n = 0, k, w = 0;
	int r = 0;

	for (size_t i = 0; i < l->n && !r; i++) {
		char **names, **na;
		if ((r = lw_list_names(l->d[i].fd, &names, &k)) < 0)
			break;
		if (!(na = realloc(all, (n + k + 1) * sizeof(*na)))) {
			lw_free_names(names, k);
			r = -ENOMEM;
			break;
		}
		all = na;
		memcpy(all + n, names, k * sizeof(*names));
		n += k;
		free(names);
	}
	if (r) {
		lw_free_names(all, n);
		return r;
	}
	if (n)
		qsort(all, n, sizeof(*all), lw_cmp_names);
	for (size_t i = 0; i < n; i++) {
		if (w && !strcmp(all[i], all[w - 1]))
			free(all[i]);
		else
			all[w++] = all[i];
	}
	*out = all;
	*nout = w;
	return 0;
}
