/*
 * The harness's engine helpers (see harness.h): the engine driven by path, as a test reads
 * best, and directory listings collected through it.
 */
#include "harness.h"

/* ------------------------------------------------------------------------------------------ */
/* Engine helpers: paths are relative to the overlay root; every lookup is forgotten          */
/* ------------------------------------------------------------------------------------------ */

/* Drops one lookup (the root is never looked up by these helpers). */
void put(struct ovl_fs *fs, struct ovl_node *node)
{
	if (node && node != ovl_root(fs))
		ovl_forget(fs, node, 1);
}

/* Looks up a slash-separated path ("" is the root). *out holds one lookup: put() it. */
int walk(struct ovl_fs *fs, const char *path, struct ovl_node **out, struct stat *st)
{
	struct ovl_node *cur = ovl_root(fs);
	char buf[PATH_MAX], *save = NULL;
	struct stat tmp;
	int err;

	snprintf(buf, sizeof(buf), "%s", path);
	err = ovl_getattr(fs, cur, st ? st : &tmp);
	if (err)
		return err;
	for (char *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		struct ovl_node *next;
		err = ovl_lookup(fs, cur, c, &next, st ? st : &tmp);
		put(fs, cur);
		if (err)
			return err;
		cur = next;
	}
	*out = cur;
	return 0;
}

int lookup_st(struct ovl_fs *fs, const char *path, struct stat *st)
{
	struct ovl_node *n;
	int err = walk(fs, path, &n, st);

	if (!err)
		put(fs, n);
	return err;
}

int lookup_err(struct ovl_fs *fs, const char *path)
{
	return lookup_st(fs, path, NULL);
}

/* "a/b/c" -> parent "a/b", name "c". */
const char *split(const char *path, char *parent, size_t size)
{
	const char *slash = strrchr(path, '/');

	if (!slash) {
		snprintf(parent, size, "%s", "");
		return path;
	}
	snprintf(parent, size, "%.*s", (int)(slash - path), path);
	return slash + 1;
}

/* Reads a file through the engine, or "<-ENOENT>" and the like. */
const char *e_cat(struct ovl_fs *fs, const char *path)
{
	static char bufs[8][4096];
	static int next;
	char *b = bufs[next++ & 7];
	struct ovl_node *n;
	struct ovl_file *f;
	int err = walk(fs, path, &n, NULL);

	if (!err) {
		err = ovl_open(fs, n, O_RDONLY, &f);
		if (!err) {
			ssize_t r = ovl_read(fs, f, b, 4095, 0);
			if (r >= 0)
				b[r] = '\0';
			err = r < 0 ? (int)r : 0;
			ovl_release(fs, f);
		}
		put(fs, n);
	}
	if (err)
		snprintf(b, 4096, "<-%s>", strerrorname_np(-err));
	return b;
}

/* Opens an existing file with flags and writes data at off. */
int e_write(struct ovl_fs *fs, const char *path, int flags, const char *data, off_t off)
{
	struct ovl_node *n;
	struct ovl_file *f;
	int err = walk(fs, path, &n, NULL);

	if (err)
		return err;
	err = ovl_open(fs, n, flags, &f);
	if (!err) {
		ssize_t w = ovl_write(fs, f, data, strlen(data), off);
		err = w < 0 ? (int)w : (w == (ssize_t)strlen(data) ? 0 : -EIO);
		ovl_release(fs, f);
	}
	put(fs, n);
	return err;
}

int e_create_as(struct ovl_fs *fs, const char *path, mode_t mode, const char *data,
		const struct ovl_cred *cred)
{
	char pp[PATH_MAX];
	const char *name = split(path, pp, sizeof(pp));
	struct ovl_node *parent, *n;
	struct ovl_file *f;
	struct stat st;
	int err = walk(fs, pp, &parent, NULL);

	if (err)
		return err;
	err = ovl_create(fs, parent, name, mode, O_RDWR, cred, &n, &st, &f);
	if (!err) {
		if (data && *data) {
			ssize_t w = ovl_write(fs, f, data, strlen(data), 0);
			if (w != (ssize_t)strlen(data))
				err = w < 0 ? (int)w : -EIO;
		}
		ovl_release(fs, f);
		put(fs, n);
	}
	put(fs, parent);
	return err;
}

int e_create(struct ovl_fs *fs, const char *path, mode_t mode, const char *data)
{
	return e_create_as(fs, path, mode, data, &root_cred);
}

int e_mkdir(struct ovl_fs *fs, const char *path, mode_t mode)
{
	char pp[PATH_MAX];
	const char *name = split(path, pp, sizeof(pp));
	struct ovl_node *parent, *n;
	struct stat st;
	int err = walk(fs, pp, &parent, NULL);

	if (err)
		return err;
	err = ovl_mkdir(fs, parent, name, mode, &root_cred, &n, &st);
	if (!err)
		put(fs, n);
	put(fs, parent);
	return err;
}

int e_mknod(struct ovl_fs *fs, const char *path, mode_t mode, dev_t rdev)
{
	char pp[PATH_MAX];
	const char *name = split(path, pp, sizeof(pp));
	struct ovl_node *parent, *n;
	struct stat st;
	int err = walk(fs, pp, &parent, NULL);

	if (err)
		return err;
	err = ovl_mknod(fs, parent, name, mode, rdev, &root_cred, &n, &st);
	if (!err)
		put(fs, n);
	put(fs, parent);
	return err;
}

int e_symlink(struct ovl_fs *fs, const char *path, const char *target)
{
	char pp[PATH_MAX];
	const char *name = split(path, pp, sizeof(pp));
	struct ovl_node *parent, *n;
	struct stat st;
	int err = walk(fs, pp, &parent, NULL);

	if (err)
		return err;
	err = ovl_symlink(fs, parent, name, target, &root_cred, &n, &st);
	if (!err)
		put(fs, n);
	put(fs, parent);
	return err;
}

int e_remove(struct ovl_fs *fs, const char *path, bool dir)
{
	char pp[PATH_MAX];
	const char *name = split(path, pp, sizeof(pp));
	struct ovl_node *parent;
	int err = walk(fs, pp, &parent, NULL);

	if (err)
		return err;
	err = dir ? ovl_rmdir(fs, parent, name) : ovl_unlink(fs, parent, name);
	put(fs, parent);
	return err;
}

int e_unlink(struct ovl_fs *fs, const char *path)
{
	return e_remove(fs, path, false);
}

int e_rmdir(struct ovl_fs *fs, const char *path)
{
	return e_remove(fs, path, true);
}

int e_rename(struct ovl_fs *fs, const char *from, const char *to, unsigned flags)
{
	char fp[PATH_MAX], tp[PATH_MAX];
	const char *fname = split(from, fp, sizeof(fp));
	const char *tname = split(to, tp, sizeof(tp));
	struct ovl_node *fparent, *tparent;
	int err = walk(fs, fp, &fparent, NULL);

	if (err)
		return err;
	err = walk(fs, tp, &tparent, NULL);
	if (!err) {
		err = ovl_rename(fs, fparent, fname, tparent, tname, flags);
		put(fs, tparent);
	}
	put(fs, fparent);
	return err;
}

int e_link(struct ovl_fs *fs, const char *from, const char *to, struct stat *st)
{
	char tp[PATH_MAX];
	const char *tname = split(to, tp, sizeof(tp));
	struct ovl_node *src, *tparent, *n;
	struct stat tmp;
	int err = walk(fs, from, &src, NULL);

	if (err)
		return err;
	err = walk(fs, tp, &tparent, NULL);
	if (!err) {
		err = ovl_link(fs, src, tparent, tname, &n, st ? st : &tmp);
		if (!err)
			put(fs, n);
		put(fs, tparent);
	}
	put(fs, src);
	return err;
}

int e_copy_up(struct ovl_fs *fs, const char *path)
{
	struct ovl_node *n;
	int err = walk(fs, path, &n, NULL);

	if (err)
		return err;
	err = ovl_copy_up(fs, n);
	put(fs, n);
	return err;
}

int e_setattr(struct ovl_fs *fs, const char *path, int to_set, const struct stat *attr,
	      struct stat *out)
{
	struct ovl_node *n;
	struct stat tmp;
	int err = walk(fs, path, &n, NULL);

	if (err)
		return err;
	err = ovl_setattr(fs, n, NULL, to_set, attr, out ? out : &tmp);
	put(fs, n);
	return err;
}

/* An xattr value through the engine as a string, or "<-ENODATA>" and the like. */
const char *e_getx(struct ovl_fs *fs, const char *path, const char *name)
{
	static char bufs[8][256];
	static int next;
	char *b = bufs[next++ & 7];
	struct ovl_node *n;
	ssize_t r = walk(fs, path, &n, NULL);

	if (r == 0) {
		r = ovl_getxattr(fs, n, name, b, 255);
		put(fs, n);
	}
	if (r < 0)
		snprintf(b, 256, "<-%s>", strerrorname_np((int)-r));
	else
		b[r] = '\0';
	return b;
}

int e_setx(struct ovl_fs *fs, const char *path, const char *name, const char *value, int flags)
{
	struct ovl_node *n;
	int err = walk(fs, path, &n, NULL);

	if (err)
		return err;
	err = ovl_setxattr(fs, n, name, value, strlen(value), flags);
	put(fs, n);
	return err;
}

int e_removex(struct ovl_fs *fs, const char *path, const char *name)
{
	struct ovl_node *n;
	int err = walk(fs, path, &n, NULL);

	if (err)
		return err;
	err = ovl_removexattr(fs, n, name);
	put(fs, n);
	return err;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A list of NUL-separated names, sorted and joined with spaces (ring buffer). */
const char *join_names(char *list, size_t len)
{
	static char bufs[4][4096];
	static int next;
	char *b = bufs[next++ & 3], *names[256];
	size_t n = 0, pos = 0;

	for (size_t i = 0; i < len && n < 256; i += strlen(list + i) + 1)
		names[n++] = list + i;
	qsort(names, n, sizeof(*names), cmp_str);
	b[0] = '\0';
	for (size_t i = 0; i < n; i++)
		pos += (size_t)snprintf(b + pos, 4096 - pos, "%s%s", i ? " " : "", names[i]);
	return b;
}

/* The names listxattr shows through the engine, sorted and space-separated. */
const char *e_listx(struct ovl_fs *fs, const char *path)
{
	static char errbuf[64];
	char list[4096];
	struct ovl_node *n;
	ssize_t r = walk(fs, path, &n, NULL);

	if (r == 0) {
		r = ovl_listxattr(fs, n, list, sizeof(list), true);
		put(fs, n);
	}
	if (r < 0) {
		snprintf(errbuf, sizeof(errbuf), "<-%s>", strerrorname_np((int)-r));
		return errbuf;
	}
	return join_names(list, (size_t)r);
}

/* ------------------------------------------------------------------------------------------ */
/* Directory listings                                                                         */
/* ------------------------------------------------------------------------------------------ */

int collect(void *ctx, const char *name, uint64_t ino, unsigned type, off_t next)
{
	struct listing *l = ctx;

	if (l->limit && l->n >= l->limit)
		return 1;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		if (!l->v)
			die("out of memory");
	}
	l->v[l->n++] = (struct dent){strdup(name), ino, type, next};
	return 0;
}

void listing_free(struct listing *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

int list_dir(struct ovl_fs *fs, const char *path, struct listing *l)
{
	struct ovl_node *n;
	struct ovl_dir *d;
	int err = walk(fs, path, &n, NULL);

	memset(l, 0, sizeof(*l));
	if (err)
		return err;
	err = ovl_opendir(fs, n, &d);
	if (!err) {
		err = ovl_readdir(fs, d, 0, collect, l);
		ovl_releasedir(fs, d);
	}
	put(fs, n);
	return err;
}

const struct dent *find_dent(const struct listing *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i].name, name) == 0)
			return &l->v[i];
	return NULL;
}

int count_name(const struct listing *l, const char *name)
{
	int c = 0;

	for (size_t i = 0; i < l->n; i++)
		c += strcmp(l->v[i].name, name) == 0;
	return c;
}

/* The entries but . and .., sorted and space-separated (ring buffer). */
const char *names_of(const struct listing *l)
{
	char list[8192];
	size_t len = 0;

	for (size_t i = 0; i < l->n; i++) {
		if (strcmp(l->v[i].name, ".") == 0 || strcmp(l->v[i].name, "..") == 0)
			continue;
		size_t nl = strlen(l->v[i].name) + 1;
		if (len + nl > sizeof(list))
			break;
		memcpy(list + len, l->v[i].name, nl);
		len += nl;
	}
	return join_names(list, len);
}

/* The names of a directory listing through the engine, or "<-ENOENT>" and the like. */
const char *e_ls(struct ovl_fs *fs, const char *path)
{
	static char errbuf[64];
	struct listing l;
	int err = list_dir(fs, path, &l);

	if (err) {
		listing_free(&l);
		snprintf(errbuf, sizeof(errbuf), "<-%s>", strerrorname_np(-err));
		return errbuf;
	}
	const char *r = names_of(&l);
	listing_free(&l);
	return r;
}
