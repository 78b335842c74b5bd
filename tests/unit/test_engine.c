/*
 * Unit tests of the overlay engine (engine.h), driven without a mount. Every test builds its
 * layers under a private temporary directory, opens an ovl_fs on them, and checks the results
 * both through the engine and directly in the layers. Run as root: trusted.* xattrs and mknod
 * of whiteouts are needed.
 *
 * Usage: test_engine [substring]   (runs only the tests whose name contains substring)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "engine/engine.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------ */
/* Checks                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static atomic_int n_passed, n_failed;
static const char *cur_test = "(setup)";

static bool check_(bool ok, const char *what, int line)
{
	if (ok) {
		atomic_fetch_add(&n_passed, 1);
	} else {
		atomic_fetch_add(&n_failed, 1);
		fprintf(stderr, "FAIL %s (line %d): %s\n", cur_test, line, what);
	}
	return ok;
}

/* " (-ENOENT)" for a small negative value, "" otherwise. Main thread only. */
static const char *errname_of(long long v)
{
	static char bufs[8][48];
	static int next;
	char *b = bufs[next++ & 7];

	if (v >= 0 || v < -4095)
		return "";
	const char *s = strerrorname_np((int)-v);
	snprintf(b, 48, " (-%s)", s ? s : "?");
	return b;
}

static bool check_int_(long long got, long long want, const char *what, int line)
{
	bool ok = got == want;

	if (!check_(ok, what, line))
		fprintf(stderr, "    got  %lld%s\n    want %lld%s\n", got, errname_of(got), want,
			errname_of(want));
	return ok;
}

static bool check_str_(const char *got, const char *want, const char *what, int line)
{
	bool ok = got && want && strcmp(got, want) == 0;

	if (!check_(ok, what, line))
		fprintf(stderr, "    got  '%s'\n    want '%s'\n", got ? got : "(null)",
			want ? want : "(null)");
	return ok;
}

#define CHECK(cond) check_((cond), #cond, __LINE__)
#define CHECK_INT(got, want)                                                                       \
	check_int_((long long)(got), (long long)(want), #got " == " #want, __LINE__)
#define CHECK_STR(got, want) check_str_((got), (want), #got " == " #want, __LINE__)

/* A broken test environment (not an engine failure): give up. */
static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "test_engine: setup failed in %s: ", cur_test);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (%s)\n", strerror(errno));
	exit(2);
}

/* ------------------------------------------------------------------------------------------ */
/* Environments: temporary layers and an ovl_fs on them                                        */
/* ------------------------------------------------------------------------------------------ */

static char g_base[PATH_MAX];
static int g_env_counter;

struct env {
	char dir[PATH_MAX];
	char lower[3][PATH_MAX];
	char upper[PATH_MAX];
	char work[PATH_MAX];
	int nlower;
	bool has_upper;
	struct ovl_fs *fs;
};

/* Every test names its environment `e`. */
#define UP e.upper
#define LO1 e.lower[0]
#define LO2 e.lower[1]
#define LO3 e.lower[2]
#define FS e.fs

static const struct ovl_cred root_cred = {.uid = 0, .gid = 0};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void rm_tree(const char *path)
{
	nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS);
}

static void remove_base(void)
{
	if (g_base[0])
		rm_tree(g_base);
}

/* snprintf that gives up on truncation. */
static void __attribute__((format(printf, 3, 4))) fmt(char *buf, size_t size, const char *f, ...)
{
	va_list ap;

	va_start(ap, f);
	int n = vsnprintf(buf, size, f, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= size)
		die("path too long");
}

static void xmkdir(const char *path, mode_t mode)
{
	if (mkdir(path, mode) < 0)
		die("mkdir %s", path);
}

static void env_init(struct env *e, int nlower, bool upper)
{
	memset(e, 0, sizeof(*e));
	fmt(e->dir, sizeof(e->dir), "%s/t%03d", g_base, ++g_env_counter);
	xmkdir(e->dir, 0755);
	e->nlower = nlower;
	for (int i = 0; i < nlower; i++) {
		fmt(e->lower[i], sizeof(e->lower[i]), "%s/lower%d", e->dir, i + 1);
		xmkdir(e->lower[i], 0755);
	}
	e->has_upper = upper;
	if (upper) {
		fmt(e->upper, sizeof(e->upper), "%s/upper", e->dir);
		fmt(e->work, sizeof(e->work), "%s/work", e->dir);
		xmkdir(e->upper, 0755);
		xmkdir(e->work, 0755);
	}
}

static int env_open(struct env *e, bool readonly)
{
	const char *lowers[3];
	struct ovl_fs_params p = {
	    .lowerdirs = lowers,
	    .nlower = e->nlower,
	    .upperdir = e->has_upper ? e->upper : NULL,
	    .workdir = e->has_upper ? e->work : NULL,
	    .readonly = readonly,
	};

	for (int i = 0; i < e->nlower; i++)
		lowers[i] = e->lower[i];
	return ovl_fs_new(&p, &e->fs);
}

static bool env_mount(struct env *e)
{
	return CHECK_INT(env_open(e, false), 0);
}

/* Destroys the fs, checks no temporary object was left in the work directory, removes all. */
static void env_fini(struct env *e)
{
	char path[PATH_MAX + 8];

	if (e->fs)
		ovl_fs_destroy(e->fs);
	e->fs = NULL;
	snprintf(path, sizeof(path), "%s/work", e->work);
	DIR *d = e->has_upper ? opendir(path) : NULL;
	if (d) {
		struct dirent *de;
		int left = 0;
		while ((de = readdir(d))) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			fprintf(stderr, "    left in work dir: %s\n", de->d_name);
			left++;
		}
		closedir(d);
		CHECK_INT(left, 0); /* work directory clean after the operations */
	}
	rm_tree(e->dir);
}

/* ------------------------------------------------------------------------------------------ */
/* Layer helpers: build and inspect layer contents directly                                    */
/* ------------------------------------------------------------------------------------------ */

/* "<layer>/<rel>" in a small ring of buffers. */
static const char *lp(const char *layer, const char *rel)
{
	static char bufs[8][PATH_MAX];
	static int next;
	char *b = bufs[next++ & 7];

	if (snprintf(b, PATH_MAX, "%s/%s", layer, rel) >= PATH_MAX)
		die("path too long");
	return b;
}

static void mkd(const char *layer, const char *rel, mode_t mode)
{
	xmkdir(lp(layer, rel), mode);
}

static void mkfm(const char *layer, const char *rel, const char *data, mode_t mode)
{
	const char *p = lp(layer, rel);
	int fd = open(p, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, mode);

	if (fd < 0)
		die("create %s", p);
	size_t len = strlen(data);
	if (write(fd, data, len) != (ssize_t)len)
		die("write %s", p);
	close(fd);
}

static void mkf(const char *layer, const char *rel, const char *data)
{
	mkfm(layer, rel, data, 0644);
}

static void mkwh(const char *layer, const char *rel)
{
	if (mknod(lp(layer, rel), S_IFCHR | 0600, makedev(0, 0)) < 0)
		die("whiteout %s", rel);
}

static void mksym(const char *layer, const char *rel, const char *target)
{
	if (symlink(target, lp(layer, rel)) < 0)
		die("symlink %s", rel);
}

static void setx(const char *layer, const char *rel, const char *name, const char *value)
{
	if (lsetxattr(lp(layer, rel), name, value, strlen(value), 0) < 0)
		die("setxattr %s %s", rel, name);
}

static void set_times(const char *layer, const char *rel, time_t sec, long nsec)
{
	struct timespec ts[2] = {{.tv_sec = sec - 1000, .tv_nsec = 0},
				 {.tv_sec = sec, .tv_nsec = nsec}};

	if (utimensat(AT_FDCWD, lp(layer, rel), ts, AT_SYMLINK_NOFOLLOW) < 0)
		die("utimensat %s", rel);
}

/* lstat in a layer: 0 or -errno. */
static int lx(const char *layer, const char *rel, struct stat *st)
{
	struct stat tmp;

	return lstat(lp(layer, rel), st ? st : &tmp) < 0 ? -errno : 0;
}

static bool is_whiteout(const char *layer, const char *rel)
{
	struct stat st;

	return lx(layer, rel, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

/* An xattr value in a layer as a string, or "<-ENODATA>" and the like. */
static const char *getx(const char *layer, const char *rel, const char *name)
{
	static char bufs[8][256];
	static int next;
	char *b = bufs[next++ & 7];
	ssize_t n = lgetxattr(lp(layer, rel), name, b, 255);

	if (n < 0)
		snprintf(b, 256, "<-%s>", strerrorname_np(errno));
	else
		b[n] = '\0';
	return b;
}

/* A layer file's contents, or "<-ENOENT>" and the like. */
static const char *cat(const char *layer, const char *rel)
{
	static char bufs[8][4096];
	static int next;
	char *b = bufs[next++ & 7];
	int fd = open(lp(layer, rel), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0) {
		snprintf(b, 4096, "<-%s>", strerrorname_np(errno));
		return b;
	}
	ssize_t n = read(fd, b, 4095);
	close(fd);
	b[n < 0 ? 0 : n] = '\0';
	return b;
}

/* ------------------------------------------------------------------------------------------ */
/* Engine helpers: paths are relative to the overlay root; every lookup is forgotten            */
/* ------------------------------------------------------------------------------------------ */

/* Drops one lookup (the root is never looked up by these helpers). */
static void put(struct ovl_fs *fs, struct ovl_node *node)
{
	if (node && node != ovl_root(fs))
		ovl_forget(fs, node, 1);
}

/* Looks up a slash-separated path ("" is the root). *out holds one lookup: put() it. */
static int walk(struct ovl_fs *fs, const char *path, struct ovl_node **out, struct stat *st)
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

static int lookup_st(struct ovl_fs *fs, const char *path, struct stat *st)
{
	struct ovl_node *n;
	int err = walk(fs, path, &n, st);

	if (!err)
		put(fs, n);
	return err;
}

static int lookup_err(struct ovl_fs *fs, const char *path)
{
	return lookup_st(fs, path, NULL);
}

/* "a/b/c" -> parent "a/b", name "c". */
static const char *split(const char *path, char *parent, size_t size)
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
static const char *e_cat(struct ovl_fs *fs, const char *path)
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
static int e_write(struct ovl_fs *fs, const char *path, int flags, const char *data, off_t off)
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

static int e_create_as(struct ovl_fs *fs, const char *path, mode_t mode, const char *data,
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

static int e_create(struct ovl_fs *fs, const char *path, mode_t mode, const char *data)
{
	return e_create_as(fs, path, mode, data, &root_cred);
}

static int e_mkdir(struct ovl_fs *fs, const char *path, mode_t mode)
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

static int e_mknod(struct ovl_fs *fs, const char *path, mode_t mode, dev_t rdev)
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

static int e_symlink(struct ovl_fs *fs, const char *path, const char *target)
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

static int e_remove(struct ovl_fs *fs, const char *path, bool dir)
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

static int e_unlink(struct ovl_fs *fs, const char *path)
{
	return e_remove(fs, path, false);
}

static int e_rmdir(struct ovl_fs *fs, const char *path)
{
	return e_remove(fs, path, true);
}

static int e_rename(struct ovl_fs *fs, const char *from, const char *to, unsigned flags)
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

static int e_link(struct ovl_fs *fs, const char *from, const char *to, struct stat *st)
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

static int e_copy_up(struct ovl_fs *fs, const char *path)
{
	struct ovl_node *n;
	int err = walk(fs, path, &n, NULL);

	if (err)
		return err;
	err = ovl_copy_up(fs, n);
	put(fs, n);
	return err;
}

static int e_setattr(struct ovl_fs *fs, const char *path, int to_set, const struct stat *attr,
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
static const char *e_getx(struct ovl_fs *fs, const char *path, const char *name)
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

static int e_setx(struct ovl_fs *fs, const char *path, const char *name, const char *value,
		  int flags)
{
	struct ovl_node *n;
	int err = walk(fs, path, &n, NULL);

	if (err)
		return err;
	err = ovl_setxattr(fs, n, name, value, strlen(value), flags);
	put(fs, n);
	return err;
}

static int e_removex(struct ovl_fs *fs, const char *path, const char *name)
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
static const char *join_names(char *list, size_t len)
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
static const char *e_listx(struct ovl_fs *fs, const char *path)
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
/* Directory listings                                                                          */
/* ------------------------------------------------------------------------------------------ */

struct dent {
	char *name;
	uint64_t ino;
	unsigned type;
	off_t next;
};

struct listing {
	struct dent *v;
	size_t n, cap;
	size_t limit; /* accept at most this many entries (0: no limit) */
};

static int collect(void *ctx, const char *name, uint64_t ino, unsigned type, off_t next)
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

static void listing_free(struct listing *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int list_dir(struct ovl_fs *fs, const char *path, struct listing *l)
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

static const struct dent *find_dent(const struct listing *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i].name, name) == 0)
			return &l->v[i];
	return NULL;
}

static int count_name(const struct listing *l, const char *name)
{
	int c = 0;

	for (size_t i = 0; i < l->n; i++)
		c += strcmp(l->v[i].name, name) == 0;
	return c;
}

/* The entries but . and .., sorted and space-separated (ring buffer). */
static const char *names_of(const struct listing *l)
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
static const char *e_ls(struct ovl_fs *fs, const char *path)
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

/* ------------------------------------------------------------------------------------------ */
/* Lookup and stacking                                                                         */
/* ------------------------------------------------------------------------------------------ */

static void test_lookup_topdown(void)
{
	struct env e;
	struct stat st;

	env_init(&e, 2, true);
	mkf(UP, "a", "upper-a");
	mkf(LO1, "a", "lower1-a");
	mkf(LO2, "a", "lower2-a");
	mkf(LO1, "b", "lower1-b");
	mkf(LO2, "b", "lower2-bb");
	mkf(LO2, "c", "lower2-ccc");
	mkd(UP, "d", 0755);
	mkd(LO1, "d", 0755);
	mkd(LO2, "d", 0755);
	mkf(LO1, "d/x", "L1x");
	mkf(LO2, "d/x", "L2-x");
	mkf(LO2, "d/y", "L2-y");
	if (!env_mount(&e))
		goto out;

	CHECK_STR(e_cat(FS, "a"), "upper-a");
	CHECK_STR(e_cat(FS, "b"), "lower1-b");
	CHECK_STR(e_cat(FS, "c"), "lower2-ccc");
	CHECK_STR(e_cat(FS, "d/x"), "L1x");
	CHECK_STR(e_cat(FS, "d/y"), "L2-y");
	CHECK_INT(lookup_st(FS, "b", &st), 0);
	CHECK_INT(st.st_size, strlen("lower1-b"));
	CHECK(S_ISREG(st.st_mode));
	CHECK_INT(lookup_st(FS, "d/x", &st), 0);
	CHECK_INT(st.st_size, strlen("L1x"));
	CHECK_INT(lookup_err(FS, "nope"), -ENOENT);
	CHECK_INT(lookup_err(FS, "d/nope"), -ENOENT);
	/* Nothing was written to upper by reading. */
	CHECK_INT(lx(UP, "b", NULL), -ENOENT);
	CHECK_INT(lx(UP, "d/x", NULL), -ENOENT);
out:
	env_fini(&e);
}

/* Lookups with lent directory fds (readdirplus) answer as plain lookups do, in a merged
 * directory with whiteouts, and stay right after the directory is copied up and renamed. */
static void test_lookup_lent_fds(void)
{
	struct env e;
	struct ovl_node *d = NULL, *n;
	struct stat st, st2;

	env_init(&e, 2, true);
	mkd(UP, "d", 0755);
	mkd(LO1, "d", 0755);
	mkd(LO2, "d", 0755);
	mkf(UP, "d/u", "upper");
	mkf(LO1, "d/x", "L1x");
	mkf(LO2, "d/x", "L2-x");
	mkf(LO2, "d/y", "L2-y");
	mkwh(UP, "d/gone");
	mkf(LO2, "d/gone", "hidden");
	mkd(LO1, "m", 0755);
	mkf(LO1, "m/a", "ma");
	if (!env_mount(&e))
		goto out;
	CHECK_INT(walk(FS, "d", &d, &st), 0);
	struct ovl_dirfds *fds = ovl_dirfds_open(FS, d);
	CHECK(fds != NULL);
	const char *names[] = {"u", "x", "y", "gone", "nope"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		int a = ovl_lookup_in(FS, d, names[i], fds, &n, &st);
		if (a == 0)
			ovl_forget(FS, n, 1);
		int b = ovl_lookup(FS, d, names[i], &n, &st2);
		if (b == 0)
			ovl_forget(FS, n, 1);
		CHECK_INT(a, b);
		if (a == 0 && b == 0) {
			CHECK_INT(st.st_ino, st2.st_ino);
			CHECK_INT(st.st_size, st2.st_size);
		}
	}
	ovl_dirfds_close(fds);
	put(FS, d);
	d = NULL;

	/* A lower-only directory: fds lent before its copy-up and rename. */
	CHECK_INT(walk(FS, "m", &d, &st), 0);
	fds = ovl_dirfds_open(FS, d);
	CHECK_INT(e_create(FS, "m/new", 0644, "n"), 0); /* copies m up */
	CHECK_INT(e_rename(FS, "m", "m2", 0), 0);
	if (CHECK_INT(ovl_lookup_in(FS, d, "a", fds, &n, &st), 0)) {
		CHECK_INT(st.st_size, 2);
		ovl_forget(FS, n, 1);
	}
	if (CHECK_INT(ovl_lookup_in(FS, d, "new", fds, &n, &st), 0)) {
		CHECK_INT(st.st_size, 1);
		ovl_forget(FS, n, 1);
	}
	ovl_dirfds_close(fds);
out:
	put(FS, d);
	env_fini(&e);
}

static void test_whiteout_hides(void)
{
	struct env e;

	env_init(&e, 2, true);
	mkwh(UP, "a");
	mkf(LO1, "a", "hidden");
	mkwh(LO1, "b"); /* a whiteout in a lower layer hides the layers below it */
	mkf(LO2, "b", "hidden");
	mkwh(UP, "c"); /* a whiteout hides a whole directory */
	mkd(LO1, "c", 0755);
	mkf(LO1, "c/x", "hidden");
	mkd(UP, "d", 0755);
	mkd(LO1, "d", 0755);
	mkwh(UP, "d/x");
	mkf(LO1, "d/x", "hidden");
	mkf(LO1, "d/y", "visible");
	mkf(LO2, "keep", "k");
	if (!env_mount(&e))
		goto out;

	CHECK_INT(lookup_err(FS, "a"), -ENOENT);
	CHECK_INT(lookup_err(FS, "b"), -ENOENT);
	CHECK_INT(lookup_err(FS, "c"), -ENOENT);
	CHECK_INT(lookup_err(FS, "c/x"), -ENOENT);
	CHECK_INT(lookup_err(FS, "d/x"), -ENOENT);
	CHECK_STR(e_cat(FS, "d/y"), "visible");
	CHECK_STR(e_ls(FS, ""), "d keep");
	CHECK_STR(e_ls(FS, "d"), "y");
out:
	env_fini(&e);
}

/* OCI whiteouts (.wh.<name>, .wh..wh..opq) and fuse-overlayfs's opaque mark, in lower and
 * upper layers; looked up before and after a listing (which caches "no .wh. here"). */
static void test_oci_whiteouts(void)
{
	struct env e;

	env_init(&e, 2, true);
	mkf(UP, ".wh.a", "");
	mkf(LO1, "a", "hidden");
	mkf(LO1, ".wh.b", ""); /* hides b below */
	mkf(LO2, "b", "hidden");
	mkf(LO1, "c", "same layer wins");
	mkf(LO1, ".wh.c", "");
	mkf(LO2, "c", "below");
	mkd(LO1, "o", 0755);
	mkf(LO1, "o/.wh..wh..opq", "");
	mkf(LO1, "o/top", "t");
	mkd(LO2, "o", 0755);
	mkf(LO2, "o/low", "hidden");
	mkd(UP, "f", 0755);
	setx(UP, "f", "user.fuseoverlayfs.opaque", "y");
	mkd(LO2, "f", 0755);
	mkf(LO2, "f/low", "hidden");
	mkf(LO2, "keep", "k");
	if (!env_mount(&e))
		goto out;

	for (int pass = 0; pass < 2; pass++) {
		CHECK_INT(lookup_err(FS, "a"), -ENOENT);
		CHECK_INT(lookup_err(FS, "b"), -ENOENT);
		CHECK_INT(lookup_err(FS, ".wh.a"), -ENOENT);
		CHECK_STR(e_cat(FS, "c"), "same layer wins");
		CHECK_INT(lookup_err(FS, "o/low"), -ENOENT);
		CHECK_INT(lookup_err(FS, "f/low"), -ENOENT);
		CHECK_STR(e_ls(FS, ""), "c f keep o");
		CHECK_STR(e_ls(FS, "o"), "top");
		CHECK_STR(e_ls(FS, "f"), "");
	}
	CHECK_INT(e_create(FS, ".wh.x", 0644, ""), -EINVAL);
	CHECK_INT(e_mkdir(FS, ".wh.x", 0755), -EINVAL);
	CHECK_INT(e_rename(FS, "c", ".wh.c", 0), -EINVAL);
	CHECK_INT(e_create(FS, "a", 0644, "new"), 0); /* over the .wh. file: it goes */
	CHECK_STR(e_cat(FS, "a"), "new");
	CHECK_INT(lx(UP, ".wh.a", NULL), -ENOENT);
out:
	env_fini(&e);
}

static int env_mount_fmt(struct env *e, bool userxattr, int whiteout)
{
	const char *lowers[3];
	struct ovl_fs_params p = {
	    .lowerdirs = lowers,
	    .nlower = e->nlower,
	    .upperdir = e->upper,
	    .workdir = e->work,
	    .userxattr = userxattr,
	    .whiteout = whiteout,
	};

	for (int i = 0; i < e->nlower; i++)
		lowers[i] = e->lower[i];
	return CHECK_INT(ovl_fs_new(&p, &e->fs), 0);
}

/* -o whiteout=file,userxattr: the rootless format, written and read back. */
static void test_file_whiteouts(void)
{
	struct env e;
	struct stat st;

	env_init(&e, 1, true);
	mkf(LO1, "a", "A");
	mkf(LO1, "b", "B");
	mkd(LO1, "d", 0755);
	mkf(LO1, "d/x", "X");
	mkd(LO1, "m", 0755);
	mkf(LO1, "m/y", "Y");
	if (!env_mount_fmt(&e, true, OVL_WHITEOUT_FILE))
		goto out;

	CHECK_INT(e_unlink(FS, "a"), 0);
	CHECK_INT(lx(UP, ".wh.a", &st), 0);
	CHECK(S_ISREG(st.st_mode) && st.st_size == 0);
	CHECK_INT(lx(UP, "a", NULL), -ENOENT);
	CHECK_INT(e_write(FS, "b", O_WRONLY, "b", 0), 0);
	CHECK_INT(e_unlink(FS, "b"), 0); /* copied up: replaced by a .wh. file */
	CHECK_INT(lx(UP, "b", NULL), -ENOENT);
	CHECK_INT(lx(UP, ".wh.b", NULL), 0);
	CHECK_INT(e_unlink(FS, "d/x"), 0);
	CHECK_INT(e_rmdir(FS, "d"), 0);
	CHECK_INT(lx(UP, ".wh.d", NULL), 0);
	CHECK_INT(lx(UP, "d", NULL), -ENOENT);
	CHECK_INT(e_mkdir(FS, "d", 0755), 0);
	CHECK_STR(getx(UP, "d", "user.overlay.opaque"), "y");
	CHECK_INT(lx(UP, "d/.wh..wh..opq", NULL), 0);
	CHECK_INT(lx(UP, ".wh.d", NULL), -ENOENT);
	CHECK_INT(e_rename(FS, "m", "n", 0), 0);
	CHECK_INT(lx(UP, ".wh.m", NULL), 0);
	CHECK_INT(lx(UP, "n/.wh..wh..opq", NULL), 0);
	CHECK_STR(e_ls(FS, ""), "d n");
	CHECK_STR(e_ls(FS, "n"), "y");
	CHECK_STR(e_ls(FS, "d"), "");
	CHECK_STR(getx(UP, ".", "user.overlay.ovlfs"), "whiteout=file");
	ovl_fs_destroy(FS);
	FS = NULL;
	/* Default options: the record keeps userxattr and file whiteouts. */
	if (!env_mount_fmt(&e, false, OVL_WHITEOUT_AUTO))
		goto out;
	CHECK_STR(e_ls(FS, ""), "d n");
	CHECK_STR(e_ls(FS, "d"), "");
	CHECK_STR(e_listx(FS, "d"), "");
	CHECK_INT(e_unlink(FS, "n/y"), 0);
	CHECK_INT(lx(UP, "n/y", NULL), -ENOENT); /* n is opaque: no whiteout needed */
	CHECK_INT(e_unlink(FS, "d"), -EISDIR);
out:
	env_fini(&e);
}

/* D45, D46: a non-directory ends the merge; a directory below it is not seen. */
static void test_nondir_hides_dir(void)
{
	struct env e;
	struct listing l;
	struct stat st;

	env_init(&e, 2, true);
	mkf(UP, "x", "file");
	mkd(LO1, "x", 0755);
	mkf(LO1, "x/c", "hidden");
	mkf(LO1, "y", "file-y");
	mkd(LO2, "y", 0755);
	mkf(LO2, "y/z", "hidden");
	mkd(UP, "w", 0755);
	mkf(UP, "w/own", "o");
	mkf(LO1, "w", "a file between");
	mkd(LO2, "w", 0755);
	mkf(LO2, "w/hidden", "h");
	mkd(UP, "w/sub", 0755);
	if (!env_mount(&e))
		goto out;

	CHECK_INT(lookup_st(FS, "x", &st), 0);
	CHECK(S_ISREG(st.st_mode));
	CHECK_INT(lookup_err(FS, "x/c"), -ENOTDIR);
	CHECK_STR(e_cat(FS, "x"), "file");
	CHECK_INT(lookup_st(FS, "y", &st), 0);
	CHECK(S_ISREG(st.st_mode));
	CHECK_INT(lookup_err(FS, "y/z"), -ENOTDIR);
	CHECK_INT(list_dir(FS, "", &l), 0);
	const struct dent *dx = find_dent(&l, "x"), *dy = find_dent(&l, "y");
	CHECK(dx && dx->type == DT_REG);
	CHECK(dy && dy->type == DT_REG);
	listing_free(&l);
	CHECK_STR(e_ls(FS, "w"), "own sub");
	CHECK_INT(lookup_err(FS, "w/hidden"), -ENOENT);
	/* w merges nothing: upper only, so its real link count (2 + one subdirectory). */
	CHECK_INT(lookup_st(FS, "w", &st), 0);
	CHECK_INT(st.st_nlink, 3);
out:
	env_fini(&e);
}

static void test_merge_three_layers(void)
{
	struct env e;

	env_init(&e, 3, true);
	mkd(UP, "m", 0755);
	mkd(LO1, "m", 0755);
	mkd(LO2, "m", 0755);
	mkd(LO3, "m", 0755);
	mkf(UP, "m/u", "U");
	mkf(UP, "m/same", "U-same");
	mkf(LO1, "m/l1", "L1");
	mkf(LO1, "m/same", "L1-same");
	mkd(LO1, "m/s1", 0755);
	mkf(LO2, "m/l2", "L2");
	mkf(LO2, "m/same", "L2-same");
	mkd(LO2, "m/s1", 0755);
	mkf(LO2, "m/s1/deep", "deep");
	mkd(LO2, "m/s2", 0755);
	mkf(LO3, "m/l3", "L3");
	mkd(LO3, "m/s1", 0755);
	mkf(LO3, "m/s1/deeper", "deeper");
	mkd(LO3, "n", 0755); /* in lower layers only */
	mkd(LO2, "n", 0755);
	mkf(LO2, "n/a", "A");
	mkf(LO3, "n/b", "B");
	if (!env_mount(&e))
		goto out;

	CHECK_STR(e_ls(FS, "m"), "l1 l2 l3 s1 s2 same u");
	CHECK_STR(e_cat(FS, "m/same"), "U-same");
	CHECK_STR(e_cat(FS, "m/l1"), "L1");
	CHECK_STR(e_cat(FS, "m/l2"), "L2");
	CHECK_STR(e_cat(FS, "m/l3"), "L3");
	CHECK_STR(e_ls(FS, "m/s1"), "deep deeper"); /* s1 merges L1 (empty), L2 and L3 */
	CHECK_STR(e_cat(FS, "m/s1/deeper"), "deeper");
	CHECK_STR(e_ls(FS, "n"), "a b");
	CHECK_STR(e_cat(FS, "n/b"), "B");
	CHECK_STR(e_ls(FS, ""), "m n");
out:
	env_fini(&e);
}

static void test_opaque_y(void)
{
	struct env e;

	env_init(&e, 2, true);
	mkd(UP, "o", 0755);
	setx(UP, "o", "trusted.overlay.opaque", "y");
	mkf(UP, "o/u", "U");
	mkd(LO1, "o", 0755);
	mkf(LO1, "o/l", "hidden");
	mkd(LO1, "p", 0755);
	setx(LO1, "p", "trusted.overlay.opaque", "y");
	mkf(LO1, "p/l1", "L1");
	mkd(LO2, "p", 0755);
	mkf(LO2, "p/l2", "hidden");
	mkd(UP, "q", 0755);
	mkf(UP, "q/u", "U");
	mkd(LO1, "q", 0755);
	setx(LO1, "q", "trusted.overlay.opaque", "y");
	mkf(LO1, "q/l1", "L1");
	mkd(LO2, "q", 0755);
	mkf(LO2, "q/l2", "hidden");
	if (!env_mount(&e))
		goto out;

	CHECK_STR(e_ls(FS, "o"), "u");
	CHECK_INT(lookup_err(FS, "o/l"), -ENOENT);
	CHECK_STR(e_ls(FS, "p"), "l1");
	CHECK_INT(lookup_err(FS, "p/l2"), -ENOENT);
	CHECK_STR(e_ls(FS, "q"), "l1 u"); /* merging stops after the opaque L1 directory */
	CHECK_INT(lookup_err(FS, "q/l2"), -ENOENT);
	CHECK_STR(e_cat(FS, "q/l1"), "L1");
out:
	env_fini(&e);
}

/* The opaque value is read with size 1: "yes" (or "n") is not opaque. */
static void test_opaque_yes(void)
{
	struct env e;
	struct stat st;

	env_init(&e, 2, true);
	mkd(UP, "o", 0755);
	setx(UP, "o", "trusted.overlay.opaque", "yes");
	mkf(UP, "o/u", "U");
	mkd(LO1, "o", 0755);
	mkf(LO1, "o/l", "L");
	mkd(LO1, "p", 0755);
	setx(LO1, "p", "trusted.overlay.opaque", "yes");
	mkf(LO1, "p/l1", "L1");
	mkd(LO2, "p", 0755);
	mkf(LO2, "p/l2", "L2");
	mkd(LO1, "n", 0755);
	setx(LO1, "n", "trusted.overlay.opaque", "n");
	mkd(LO2, "n", 0755);
	mkf(LO2, "n/l2", "L2");
	if (!env_mount(&e))
		goto out;

	CHECK_STR(e_ls(FS, "o"), "l u");
	CHECK_STR(e_cat(FS, "o/l"), "L");
	CHECK_STR(e_ls(FS, "p"), "l1 l2");
	CHECK_STR(e_cat(FS, "p/l2"), "L2");
	CHECK_STR(e_ls(FS, "n"), "l2");
	CHECK_INT(lookup_st(FS, "o", &st), 0);
	CHECK_INT(st.st_nlink, 1); /* merged */
out:
	env_fini(&e);
}

/* D48: in a lower directory marked opaque="x", a zero-size regular file carrying
 * trusted.overlay.whiteout is a whiteout. */
static void test_xwhiteout(void)
{
	struct env e;
	struct stat st;

	env_init(&e, 2, true);
	mkd(UP, "d", 0755);
	mkf(UP, "d/u", "U");
	mkd(LO1, "d", 0755);
	setx(LO1, "d", "trusted.overlay.opaque", "x");
	mkf(LO1, "d/f", "");
	setx(LO1, "d/f", "trusted.overlay.whiteout", "y");
	mkf(LO1, "d/g", "not empty");
	setx(LO1, "d/g", "trusted.overlay.whiteout", "y"); /* not zero-size: a file */
	mkf(LO1, "d/k", "");				   /* no xattr: a file */
	mkd(LO2, "d", 0755);
	mkf(LO2, "d/f", "hidden");
	mkf(LO2, "d/h", "below an x dir"); /* "x" is not opaque */
	/* Not marked "x": the same file is an ordinary empty file. */
	mkd(LO1, "e", 0755);
	mkf(LO1, "e/f", "");
	setx(LO1, "e/f", "trusted.overlay.whiteout", "y");
	mkd(LO2, "e", 0755);
	mkf(LO2, "e/f", "below");
	/* "x" on an upper directory is ignored. */
	mkd(UP, "z", 0755);
	setx(UP, "z", "trusted.overlay.opaque", "x");
	mkf(UP, "z/f", "");
	setx(UP, "z/f", "trusted.overlay.whiteout", "y");
	mkd(LO1, "z", 0755);
	mkf(LO1, "z/f", "below");
	mkf(LO1, "z/other", "o");
	/* The lower root itself marked "x". */
	setx(LO1, ".", "trusted.overlay.opaque", "x");
	mkf(LO1, "rootwh", "");
	setx(LO1, "rootwh", "trusted.overlay.whiteout", "y");
	mkf(LO2, "rootwh", "hidden");
	if (!env_mount(&e))
		goto out;

	CHECK_INT(lookup_err(FS, "d/f"), -ENOENT);
	CHECK_STR(e_ls(FS, "d"), "g h k u");
	CHECK_STR(e_cat(FS, "d/g"), "not empty");
	CHECK_STR(e_cat(FS, "d/h"), "below an x dir");
	CHECK_INT(lookup_st(FS, "d/k", &st), 0);
	CHECK_INT(st.st_size, 0);
	CHECK_INT(lookup_st(FS, "e/f", &st), 0);
	CHECK_INT(st.st_size, 0);
	CHECK_STR(e_ls(FS, "e"), "f");
	CHECK_INT(lookup_st(FS, "z/f", &st), 0);
	CHECK(S_ISREG(st.st_mode));
	CHECK_INT(st.st_size, 0);
	CHECK_STR(e_ls(FS, "z"), "f other");
	CHECK_INT(lookup_err(FS, "rootwh"), -ENOENT);
	CHECK_STR(e_ls(FS, ""), "d e z");
out:
	env_fini(&e);
}

/* D38: a merged directory has nlink 1; one in a single layer its real count. */
static void test_dir_nlink(void)
{
	struct env e;
	struct stat st;

	env_init(&e, 2, true);
	mkd(UP, "m", 0755);
	mkd(UP, "m/a", 0755);
	mkd(LO1, "m", 0755);
	mkd(LO1, "s", 0755);
	mkd(LO1, "s/c1", 0755);
	mkd(UP, "t", 0755);
	mkd(UP, "t/c", 0755);
	mkd(UP, "t/c2", 0755);
	mkd(LO1, "r", 0755);
	mkd(LO2, "r", 0755);
	mkd(LO2, "r/x", 0755);
	if (!env_mount(&e))
		goto out;

	CHECK_INT(lookup_st(FS, "m", &st), 0);
	CHECK_INT(st.st_nlink, 1);
	CHECK_INT(lookup_st(FS, "r", &st), 0);
	CHECK_INT(st.st_nlink, 1);
	CHECK_INT(lookup_st(FS, "s", &st), 0);
	CHECK_INT(st.st_nlink, 3);
	CHECK_INT(lookup_st(FS, "t", &st), 0);
	CHECK_INT(st.st_nlink, 4);
	CHECK_INT(lookup_st(FS, "", &st), 0); /* the root merges all layers */
	CHECK_INT(st.st_nlink, 1);
out:
	env_fini(&e);
}

/* ------------------------------------------------------------------------------------------ */
/* Inode numbers                                                                               */
/* ------------------------------------------------------------------------------------------ */

struct ino_rec {
	char path[256];
	uint64_t ino;
};

struct ino_set {
	struct ino_rec v[256];
	size_t n;
};

static const struct ino_rec *ino_find_path(const struct ino_set *s, const char *path)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i].path, path) == 0)
			return &s->v[i];
	return NULL;
}

/* Walks the tree: d_ino == st_ino and d_type matches for every entry, "." and ".." carry
 * the directory's and the parent's numbers, and every number is unique. */
static void check_tree_inos(struct ovl_fs *fs, const char *path, uint64_t parent_ino,
			    struct ino_set *set)
{
	struct listing l;
	struct stat dst;

	if (!CHECK_INT(lookup_st(fs, path, &dst), 0))
		return;
	if (!CHECK_INT(list_dir(fs, path, &l), 0)) {
		listing_free(&l);
		return;
	}
	CHECK_INT(count_name(&l, "."), 1);
	CHECK_INT(count_name(&l, ".."), 1);
	const struct dent *dot = find_dent(&l, "."), *dotdot = find_dent(&l, "..");
	if (dot)
		CHECK_INT(dot->ino, dst.st_ino);
	if (dotdot)
		CHECK_INT(dotdot->ino, parent_ino);
	for (size_t i = 0; i < l.n; i++) {
		const struct dent *d = &l.v[i];
		char child[256];
		struct stat st;

		if (strcmp(d->name, ".") == 0 || strcmp(d->name, "..") == 0)
			continue;
		snprintf(child, sizeof(child), "%s%s%s", path, *path ? "/" : "", d->name);
		if (!CHECK_INT(lookup_st(fs, child, &st), 0))
			continue;
		if (!CHECK_INT(d->ino, st.st_ino))
			fprintf(stderr, "    entry %s\n", child);
		if (!CHECK_INT(d->type, IFTODT(st.st_mode)))
			fprintf(stderr, "    entry %s\n", child);
		for (size_t j = 0; j < set->n; j++)
			if (set->v[j].ino == st.st_ino && !CHECK(false))
				fprintf(stderr, "    %s and %s share st_ino %llu\n", set->v[j].path,
					child, (unsigned long long)st.st_ino);
		if (set->n < 256) {
			snprintf(set->v[set->n].path, sizeof(set->v[0].path), "%s", child);
			set->v[set->n++].ino = st.st_ino;
		}
		if (S_ISDIR(st.st_mode))
			check_tree_inos(fs, child, dst.st_ino, set);
	}
	listing_free(&l);
}

static void build_ino_tree(struct env *e)
{
	const char *up = e->upper, *l1 = e->lower[0], *l2 = e->lower[1];

	mkf(up, "f1", "1");
	mkd(up, "d1", 0755);
	mkf(up, "d1/g1", "g");
	mkd(up, "m", 0755);
	mkf(up, "m/u", "u");
	mkf(up, "m/shadow", "upper shadow");
	mkd(l1, "m", 0755);
	mkf(l1, "m/l1", "l1");
	mkf(l1, "m/shadow", "lower shadow");
	mkd(l1, "m/sub", 0755);
	mkf(l1, "m/sub/x", "x");
	mksym(l1, "m/link", "l1");
	mkf(l1, "f2", "2");
	mkd(l1, "only1", 0755);
	mkf(l1, "only1/y", "y");
	mkd(l2, "m", 0755);
	mkf(l2, "m/l2", "l2");
	mkd(l2, "m/sub", 0755);
	mkf(l2, "m/sub/z", "z");
	mkf(l2, "f3", "3");
	mkd(l2, "deep", 0755);
	mkd(l2, "deep/a", 0755);
	mkd(l2, "deep/a/b", 0755);
	mkf(l2, "deep/a/b/c", "c");
	if (mkfifo(lp(l2, "fifo"), 0644) < 0)
		die("mkfifo");
}

static void test_ino_consistency(void)
{
	struct env e;
	struct ino_set before = {0}, after = {0};
	struct stat root;

	env_init(&e, 2, true);
	build_ino_tree(&e);
	if (!env_mount(&e))
		goto out;
	CHECK_INT(lookup_st(FS, "", &root), 0);
	check_tree_inos(FS, "", root.st_ino, &before);
	CHECK(before.n >= 20);

	/* Copy everything up (files, directories, a symlink, a fifo) and compare: the same
	 * numbers, in lookup and in readdir. */
	for (size_t i = 0; i < before.n; i++)
		CHECK_INT(e_copy_up(FS, before.v[i].path), 0);
	CHECK_INT(lx(UP, "deep/a/b/c", NULL), 0);
	CHECK_INT(lx(UP, "fifo", NULL), 0);
	check_tree_inos(FS, "", root.st_ino, &after);
	CHECK_INT(after.n, before.n);
	for (size_t i = 0; i < before.n; i++) {
		const struct ino_rec *r = ino_find_path(&after, before.v[i].path);
		if (CHECK(r != NULL) && !CHECK_INT(r->ino, before.v[i].ino))
			fprintf(stderr, "    %s changed st_ino with copy-up\n", r->path);
	}
out:
	env_fini(&e);
}

/* st_ino of a copied-up file stays, both on the live node and after it is forgotten. */
static void test_copyup_ino_stable(void)
{
	struct env e;
	struct ovl_node *n;
	struct stat st0, st;
	struct listing l;

	env_init(&e, 1, true);
	mkf(LO1, "f", "data");
	mkd(LO1, "d", 0755);
	mkf(LO1, "d/g", "g");
	if (!env_mount(&e))
		goto out;

	if (CHECK_INT(walk(FS, "f", &n, &st0), 0)) {
		CHECK_INT(ovl_copy_up(FS, n), 0);
		CHECK_INT(ovl_getattr(FS, n, &st), 0);
		CHECK_INT(st.st_ino, st0.st_ino);
		put(FS, n);
	}
	CHECK_INT(lx(UP, "f", NULL), 0);
	CHECK_INT(lookup_st(FS, "f", &st), 0); /* a fresh node now: found in upper */
	CHECK_INT(st.st_ino, st0.st_ino);
	CHECK_INT(list_dir(FS, "", &l), 0);
	const struct dent *df = find_dent(&l, "f");
	CHECK(df && df->ino == st0.st_ino);
	listing_free(&l);

	/* Written through an open handle; and a directory. */
	struct stat g0, d0;
	CHECK_INT(lookup_st(FS, "d/g", &g0), 0);
	CHECK_INT(lookup_st(FS, "d", &d0), 0);
	CHECK_INT(e_write(FS, "d/g", O_WRONLY, "G", 0), 0);
	CHECK_INT(lookup_st(FS, "d/g", &st), 0);
	CHECK_INT(st.st_ino, g0.st_ino);
	CHECK_INT(lookup_st(FS, "d", &st), 0);
	CHECK_INT(st.st_ino, d0.st_ino);
out:
	env_fini(&e);
}

/* ------------------------------------------------------------------------------------------ */
/* readdir                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* Reads dir from off into l (appending). */
static int read_from(struct ovl_fs *fs, struct ovl_dir *d, off_t off, struct listing *l)
{
	return ovl_readdir(fs, d, off, collect, l);
}

static void test_readdir_merged(void)
{
	struct env e;
	struct listing all, part;
	struct ovl_node *n;
	struct ovl_dir *d;

	env_init(&e, 2, true);
	mkd(UP, "m", 0755);
	mkf(UP, "m/a", "upper file over a lower dir");
	mkf(UP, "m/t", "upper file over a lower dir");
	mkwh(UP, "m/wh");
	mkd(LO1, "m", 0755);
	mkf(LO1, "m/b", "b");
	mkd(LO1, "m/t", 0755);
	mkf(LO1, "m/wh", "hidden");
	mksym(LO1, "m/c", "b");
	mkwh(LO1, "m/gone");
	mkd(LO2, "m", 0755);
	mkd(LO2, "m/d", 0755);
	mkd(LO2, "m/a", 0755);
	mkf(LO2, "m/b", "hidden by L1's b");
	mkf(LO2, "m/gone", "hidden");
	if (mkfifo(lp(LO2, "m/e"), 0644) < 0)
		die("mkfifo");
	if (mknod(lp(LO2, "m/cdev"), S_IFCHR | 0644, makedev(1, 3)) < 0)
		die("mknod");
	if (!env_mount(&e))
		goto out;

	if (!CHECK_INT(walk(FS, "m", &n, NULL), 0))
		goto out;
	if (!CHECK_INT(ovl_opendir(FS, n, &d), 0)) {
		put(FS, n);
		goto out;
	}
	memset(&all, 0, sizeof(all));
	CHECK_INT(read_from(FS, d, 0, &all), 0);
	CHECK_STR(names_of(&all), "a b c cdev d e t");
	CHECK_INT(all.n, 9);
	CHECK_INT(count_name(&all, "."), 1);
	CHECK_INT(count_name(&all, ".."), 1);
	const struct dent *x;
	CHECK((x = find_dent(&all, "a")) && x->type == DT_REG); /* the first occurrence's type */
	CHECK((x = find_dent(&all, "t")) && x->type == DT_REG);
	CHECK((x = find_dent(&all, "b")) && x->type == DT_REG);
	CHECK((x = find_dent(&all, "c")) && x->type == DT_LNK);
	CHECK((x = find_dent(&all, "d")) && x->type == DT_DIR);
	CHECK((x = find_dent(&all, "e")) && x->type == DT_FIFO);
	CHECK((x = find_dent(&all, "cdev")) && x->type == DT_CHR);
	CHECK((x = find_dent(&all, ".")) && x->type == DT_DIR);

	/* Resuming at any entry's next offset gives exactly the entries after it. */
	for (size_t k = 0; k < all.n; k++) {
		memset(&part, 0, sizeof(part));
		CHECK_INT(read_from(FS, d, all.v[k].next, &part), 0);
		bool same = part.n == all.n - k - 1;
		for (size_t i = 0; same && i < part.n; i++)
			same = strcmp(part.v[i].name, all.v[k + 1 + i].name) == 0 &&
			       part.v[i].next == all.v[k + 1 + i].next;
		if (!CHECK(same))
			fprintf(stderr, "    resuming after entry %zu (%s) gave %zu entries\n", k,
				all.v[k].name, part.n);
		listing_free(&part);
	}
	/* Paging as a kernel buffer would: the callback refuses the entry that does not fit,
	 * and the next call resumes from the last accepted entry's offset. */
	struct listing pages = {0};
	off_t off = 0;
	for (int guard = 0; guard < 64; guard++) {
		memset(&part, 0, sizeof(part));
		part.limit = 2;
		CHECK_INT(read_from(FS, d, off, &part), 0);
		for (size_t i = 0; i < part.n; i++)
			collect(&pages, part.v[i].name, part.v[i].ino, part.v[i].type,
				part.v[i].next);
		size_t got = part.n;
		if (got)
			off = part.v[got - 1].next;
		listing_free(&part);
		if (got == 0)
			break;
	}
	bool same = pages.n == all.n;
	for (size_t i = 0; same && i < pages.n; i++)
		same = strcmp(pages.v[i].name, all.v[i].name) == 0;
	CHECK(same);
	listing_free(&pages);
	listing_free(&all);
	ovl_releasedir(FS, d);
	put(FS, n);
out:
	env_fini(&e);
}

/* A merged directory m (upper and lower) holding x, y and z below; n is its node. */
static bool mount_xyz(struct env *env, struct ovl_node **n)
{
	env_init(env, 1, true);
	mkd(env->upper, "m", 0755);
	mkd(env->lower[0], "m", 0755);
	mkf(env->lower[0], "m/x", "x");
	mkf(env->lower[0], "m/y", "y");
	mkf(env->lower[0], "m/z", "z");
	return env_mount(env) && CHECK_INT(walk(env->fs, "m", n, NULL), 0);
}

/* D55: an open directory handle keeps its snapshot until it is read from offset 0 again. */
static void test_readdir_snapshot(void)
{
	struct env e;
	struct listing first, rest, again;
	struct ovl_node *n;
	struct ovl_dir *d, *d2;

	if (!mount_xyz(&e, &n))
		goto out;
	CHECK_INT(ovl_opendir(FS, n, &d), 0);
	CHECK_INT(ovl_opendir(FS, n, &d2), 0);

	memset(&first, 0, sizeof(first));
	first.limit = 3; /* ".", ".." and one entry */
	CHECK_INT(read_from(FS, d, 0, &first), 0);
	CHECK_INT(first.n, 3);
	CHECK_INT(e_create(FS, "m/new", 0644, "n"), 0);
	CHECK_INT(e_unlink(FS, "m/y"), 0);

	memset(&rest, 0, sizeof(rest));
	CHECK_INT(read_from(FS, d, first.v[first.n - 1].next, &rest), 0);
	CHECK_INT(first.n + rest.n, 5); /* ., .., x, y, z: the old snapshot */
	CHECK_INT(count_name(&rest, "new"), 0);
	CHECK_INT(count_name(&first, "y") + count_name(&rest, "y"), 1);

	memset(&again, 0, sizeof(again));
	CHECK_INT(read_from(FS, d, 0, &again), 0); /* rewound: a fresh snapshot */
	CHECK_STR(names_of(&again), "new x z");
	listing_free(&again);
	/* A handle first read after the change sees it. */
	memset(&again, 0, sizeof(again));
	CHECK_INT(read_from(FS, d2, 0, &again), 0);
	CHECK_STR(names_of(&again), "new x z");

	listing_free(&first);
	listing_free(&rest);
	listing_free(&again);
	ovl_releasedir(FS, d);
	ovl_releasedir(FS, d2);
	put(FS, n);
out:
	env_fini(&e);
}

/* Reads without a handle (the kernel's zero-message opendir): a reader that started before
 * a change keeps its listing even after another reader started over; a told offset read
 * again after the end (the listing let go) gives the same entries. */
static void test_readdir_node(void)
{
	struct env e;
	struct listing first, rest, other, again;
	struct ovl_node *n;

	if (!mount_xyz(&e, &n))
		goto out;

	memset(&first, 0, sizeof(first));
	first.limit = 3; /* ".", ".." and one entry */
	CHECK_INT(ovl_readdir_node(FS, n, 0, collect, &first), 0);
	CHECK_INT(first.n, 3);
	CHECK_INT(e_create(FS, "m/new", 0644, "n"), 0);
	CHECK_INT(e_unlink(FS, "m/y"), 0);
	memset(&other, 0, sizeof(other));
	CHECK_INT(ovl_readdir_node(FS, n, 0, collect, &other), 0);
	CHECK_STR(names_of(&other), "new x z");

	memset(&rest, 0, sizeof(rest));
	CHECK_INT(ovl_readdir_node(FS, n, first.v[first.n - 1].next, collect, &rest), 0);
	CHECK_INT(first.n + rest.n, 5); /* ., .., x, y, z: the first reader's listing */
	CHECK_INT(count_name(&rest, "new"), 0);
	CHECK_INT(count_name(&first, "y") + count_name(&rest, "y"), 1);
	CHECK(first.v[2].next > 0 && first.v[2].next < (1LL << 31)); /* fits 32-bit d_off */

	/* The end, then the told offset again: a fresh merge of the unchanged directory. */
	off_t told = other.v[2].next;
	struct listing tail;
	memset(&tail, 0, sizeof(tail));
	CHECK_INT(ovl_readdir_node(FS, n, told, collect, &tail), 0);
	memset(&again, 0, sizeof(again));
	CHECK_INT(ovl_readdir_node(FS, n, other.v[other.n - 1].next, collect, &again), 0);
	CHECK_INT(again.n, 0);
	CHECK_INT(ovl_readdir_node(FS, n, told, collect, &again), 0);
	CHECK_STR(names_of(&again), names_of(&tail));
	CHECK_INT(again.n, 2);

	/* A reply that reached the end, a change, then a read from the middle (the kernel
	 * passed on part of the reply): still the listing from before the change. */
	struct listing whole, middle;
	memset(&whole, 0, sizeof(whole));
	CHECK_INT(ovl_readdir_node(FS, n, 0, collect, &whole), 0);
	CHECK_STR(names_of(&whole), "new x z");
	CHECK_INT(e_create(FS, "m/later", 0644, "l"), 0);
	memset(&middle, 0, sizeof(middle));
	CHECK_INT(ovl_readdir_node(FS, n, whole.v[2].next, collect, &middle), 0);
	CHECK_INT(count_name(&middle, "later"), 0);
	CHECK_INT(middle.n, 2);
	listing_free(&whole);
	listing_free(&middle);

	listing_free(&first);
	listing_free(&rest);
	listing_free(&other);
	listing_free(&tail);
	listing_free(&again);
	put(FS, n);
out:
	env_fini(&e);
}

/* ------------------------------------------------------------------------------------------ */
/* xattrs                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static void test_xattr_hidden_and_escaped(void)
{
	struct env e;
	struct ovl_node *n;

	env_init(&e, 1, true);
	mkf(LO1, "f", "data");
	setx(LO1, "f", "user.a", "1");
	setx(LO1, "f", "trusted.t", "2");
	setx(LO1, "f", "trusted.overlay.origin", "private");
	setx(LO1, "f", "trusted.overlay.impure", "y");
	setx(LO1, "f", "trusted.overlay.overlay.foo", "bar");
	mkd(UP, "d", 0755);
	setx(UP, "d", "trusted.overlay.opaque", "y");
	setx(UP, "d", "trusted.overlay.overlay.esc", "e");
	if (!env_mount(&e))
		goto out;

	CHECK_STR(e_getx(FS, "f", "user.a"), "1");
	CHECK_STR(e_getx(FS, "f", "trusted.t"), "2");
	CHECK_STR(e_getx(FS, "f", "trusted.overlay.foo"), "bar");
	CHECK_STR(e_getx(FS, "f", "trusted.overlay.origin"), "<-ENODATA>");
	CHECK_STR(e_getx(FS, "f", "trusted.overlay.impure"), "<-ENODATA>");
	/* The escaped name itself is escaped once more, so it is not found either. */
	CHECK_STR(e_getx(FS, "f", "trusted.overlay.overlay.foo"), "<-ENODATA>");
	CHECK_STR(e_listx(FS, "f"), "trusted.overlay.foo trusted.t user.a");
	CHECK_STR(e_getx(FS, "d", "trusted.overlay.opaque"), "<-ENODATA>");
	CHECK_STR(e_getx(FS, "d", "trusted.overlay.esc"), "e");
	CHECK_STR(e_listx(FS, "d"), "trusted.overlay.esc");

	if (CHECK_INT(walk(FS, "f", &n, NULL), 0)) {
		char buf[256];
		ssize_t need = ovl_listxattr(FS, n, NULL, 0, true);
		CHECK_INT(need, strlen("user.a trusted.t trusted.overlay.foo") + 1);
		CHECK_INT(ovl_listxattr(FS, n, buf, (size_t)need, true), need);
		CHECK_INT(ovl_listxattr(FS, n, buf, (size_t)need - 1, true), -ERANGE);
		CHECK_INT(ovl_getxattr(FS, n, "trusted.overlay.foo", NULL, 0), 3);
		CHECK_INT(ovl_getxattr(FS, n, "trusted.overlay.foo", buf, 2), -ERANGE);
		put(FS, n);
	}
	CHECK_INT(lx(UP, "f", NULL), -ENOENT); /* reading xattrs does not copy up */
out:
	env_fini(&e);
}

static void test_setxattr_escapes(void)
{
	struct env e;

	env_init(&e, 1, true);
	mkd(LO1, "d", 0755);
	mkf(LO1, "d/f", "data");
	if (!env_mount(&e))
		goto out;

	CHECK_INT(e_setx(FS, "d/f", "trusted.overlay.foo", "v1", 0), 0);
	CHECK_INT(lx(UP, "d/f", NULL), 0); /* copied up */
	CHECK_STR(cat(UP, "d/f"), "data");
	CHECK_STR(getx(UP, "d/f", "trusted.overlay.overlay.foo"), "v1");
	CHECK_STR(getx(UP, "d/f", "trusted.overlay.foo"), "<-ENODATA>");
	CHECK_STR(getx(LO1, "d/f", "trusted.overlay.overlay.foo"), "<-ENODATA>");
	CHECK_STR(e_getx(FS, "d/f", "trusted.overlay.foo"), "v1");
	CHECK_INT(e_setx(FS, "d/f", "user.k", "u", 0), 0);
	CHECK_STR(getx(UP, "d/f", "user.k"), "u");
	CHECK_STR(e_listx(FS, "d/f"), "trusted.overlay.foo user.k");
	CHECK_INT(e_setx(FS, "d/f", "user.k", "again", XATTR_CREATE), -EEXIST);
	CHECK_INT(e_removex(FS, "d/f", "trusted.overlay.foo"), 0);
	CHECK_STR(getx(UP, "d/f", "trusted.overlay.overlay.foo"), "<-ENODATA>");
	CHECK_STR(e_listx(FS, "d/f"), "user.k");
	/* A directory: the escaped name goes on the upper copy; the directory stays merged. */
	CHECK_INT(e_setx(FS, "d", "trusted.overlay.opaque", "y", 0), 0);
	CHECK_STR(getx(UP, "d", "trusted.overlay.overlay.opaque"), "y");
	CHECK_STR(getx(UP, "d", "trusted.overlay.opaque"), "<-ENODATA>");
	CHECK_STR(e_cat(FS, "d/f"), "data");
out:
	env_fini(&e);
}

/* D32: removexattr of an absent name gives ENODATA and copies nothing up. */
static void test_removexattr_absent(void)
{
	struct env e;

	env_init(&e, 1, true);
	mkd(LO1, "d", 0755);
	mkf(LO1, "d/f", "data");
	setx(LO1, "d/f", "user.a", "1");
	if (!env_mount(&e))
		goto out;

	CHECK_INT(e_removex(FS, "d/f", "user.nope"), -ENODATA);
	CHECK_INT(e_removex(FS, "d/f", "trusted.overlay.nope"), -ENODATA);
	CHECK_INT(e_removex(FS, "d", "user.nope"), -ENODATA);
	CHECK_INT(lx(UP, "d", NULL), -ENOENT);
	CHECK_INT(lx(UP, "d/f", NULL), -ENOENT);

	CHECK_INT(e_removex(FS, "d/f", "user.a"), 0);
	CHECK_INT(lx(UP, "d/f", NULL), 0);
	CHECK_STR(getx(UP, "d/f", "user.a"), "<-ENODATA>");
	CHECK_STR(getx(LO1, "d/f", "user.a"), "1");
	CHECK_STR(e_getx(FS, "d/f", "user.a"), "<-ENODATA>");
out:
	env_fini(&e);
}

/* ------------------------------------------------------------------------------------------ */
/* Copy-up                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static bool same_time(struct timespec a, struct timespec b)
{
	return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

/* D24: an O_RDWR open copies up data, mode (setuid too), owner, times and xattrs. */
static void test_copyup_on_write_open(void)
{
	struct env e;
	struct stat lst, ust;
	struct ovl_node *n;
	struct ovl_file *f;

	env_init(&e, 1, true);
	mkd(LO1, "d", 0755);
	mkf(LO1, "d/f", "0123456789");
	if (lchown(lp(LO1, "d/f"), 1234, 5678) < 0 || chmod(lp(LO1, "d/f"), 04755) < 0)
		die("chown/chmod");
	setx(LO1, "d/f", "user.k", "v");
	setx(LO1, "d/f", "trusted.t", "tv");
	setx(LO1, "d/f", "trusted.overlay.overlay.e", "ev");
	setx(LO1, "d/f", "trusted.overlay.origin", "private");
	set_times(LO1, "d/f", 1000000000, 123456789);
	mkf(LO1, "ro", "read only");
	if (lstat(lp(LO1, "d/f"), &lst) < 0)
		die("lstat");
	if (!env_mount(&e))
		goto out;

	/* A read-only open copies nothing. */
	CHECK_STR(e_cat(FS, "ro"), "read only");
	CHECK_INT(lx(UP, "ro", NULL), -ENOENT);

	if (!CHECK_INT(walk(FS, "d/f", &n, NULL), 0))
		goto out;
	if (CHECK_INT(ovl_open(FS, n, O_RDWR, &f), 0)) {
		if (CHECK_INT(lx(UP, "d/f", &ust), 0)) {
			CHECK(S_ISREG(ust.st_mode));
			CHECK_INT(ust.st_mode & 07777, 04755);
			CHECK_INT(ust.st_uid, 1234);
			CHECK_INT(ust.st_gid, 5678);
			CHECK_INT(ust.st_size, 10);
			CHECK(same_time(ust.st_mtim, lst.st_mtim));
			CHECK_INT(ust.st_mtim.tv_nsec, 123456789);
		}
		CHECK_STR(cat(UP, "d/f"), "0123456789");
		CHECK_STR(getx(UP, "d/f", "user.k"), "v");
		CHECK_STR(getx(UP, "d/f", "trusted.t"), "tv");
		CHECK_STR(getx(UP, "d/f", "trusted.overlay.overlay.e"), "ev");
		CHECK_STR(getx(UP, "d/f", "trusted.overlay.origin"), "<-ENODATA>");
		CHECK_INT(ovl_write(FS, f, "AB", 2, 0), 2);
		char buf[32] = {0};
		CHECK_INT(ovl_read(FS, f, buf, sizeof(buf) - 1, 0), 10);
		CHECK_STR(buf, "AB23456789");
		ovl_release(FS, f);
	}
	put(FS, n);
	CHECK_STR(cat(UP, "d/f"), "AB23456789");
	CHECK_STR(e_cat(FS, "d/f"), "AB23456789");
	/* The lower layer is intact. */
	CHECK_STR(cat(LO1, "d/f"), "0123456789");
	CHECK_STR(getx(LO1, "d/f", "user.k"), "v");
	CHECK_STR(getx(LO1, "d/f", "trusted.overlay.origin"), "private");
out:
	env_fini(&e);
}

/* Files the kernel never released (the daemon stopped while they were open) are closed and
 * freed by ovl_fs_destroy: no fd of a layer stays open, and LeakSanitizer sees no leak. */
static void test_destroy_closes_open_files(void)
{
	struct env e;
	struct ovl_node *n;
	struct ovl_file *f[3];
	int fds[3], opened = 0;

	env_init(&e, 1, true);
	mkf(LO1, "a", "lower");
	if (!env_mount(&e))
		goto out;
	if (!CHECK_INT(walk(FS, "a", &n, NULL), 0))
		goto out;
	for (int i = 0; i < 3; i++) {
		/* Read-only twice on the lower file, then a write open that copies it up. */
		if (!CHECK_INT(ovl_open(FS, n, i < 2 ? O_RDONLY : O_RDWR, &f[i]), 0))
			break;
		fds[opened++] = ovl_file_get_fd(FS, f[i]);
		ovl_file_put_fd(f[i]);
	}
	put(FS, n);
	ovl_fs_destroy(e.fs);
	e.fs = NULL;
	for (int i = 0; i < opened; i++)
		CHECK(fcntl(fds[i], F_GETFD) < 0 && errno == EBADF);
	CHECK_STR(cat(UP, "a"), "lower");
out:
	env_fini(&e);
}

/* The writeback cache's mtime: after a write of cached pages the layer file keeps the last
 * mtime a setattr gave it, not the time of the write; without such a setattr the write's
 * own time stays. */
static void test_keep_kernel_mtime(void)
{
	struct env e;
	struct stat st, attr = {.st_mtim = {.tv_sec = 1234567, .tv_nsec = 890}};
	struct ovl_node *n;
	struct ovl_file *f;

	env_init(&e, 1, true);
	mkf(LO1, "k", "lower k");
	mkf(LO1, "w", "lower w");
	if (!env_mount(&e))
		goto out;
	if (CHECK_INT(walk(FS, "k", &n, NULL), 0)) {
		if (CHECK_INT(ovl_open(FS, n, O_RDWR, &f), 0)) {
			CHECK_INT(ovl_setattr(FS, n, f, OVL_SET_MTIME, &attr, &st), 0);
			CHECK_INT(ovl_write(FS, f, "K", 1, 0), 1);
			CHECK_INT(ovl_file_keep_kernel_mtime(FS, f), 0);
			ovl_release(FS, f);
		}
		put(FS, n);
	}
	if (CHECK_INT(lx(UP, "k", &st), 0))
		CHECK(same_time(st.st_mtim, attr.st_mtim));
	CHECK_STR(cat(UP, "k"), "Kower k");
	if (CHECK_INT(walk(FS, "w", &n, NULL), 0)) {
		if (CHECK_INT(ovl_open(FS, n, O_RDWR, &f), 0)) {
			CHECK_INT(ovl_write(FS, f, "W", 1, 0), 1);
			CHECK_INT(ovl_file_keep_kernel_mtime(FS, f), 0);
			ovl_release(FS, f);
		}
		put(FS, n);
	}
	if (CHECK_INT(lx(UP, "w", &st), 0))
		CHECK(st.st_mtim.tv_sec > attr.st_mtim.tv_sec);
out:
	env_fini(&e);
}

/* D25, D26: O_TRUNC copies up an empty file, even with O_RDONLY. */
static void test_copyup_trunc(void)
{
	struct env e;
	struct stat st;

	env_init(&e, 1, true);
	mkf(LO1, "f", "hello");
	mkf(LO1, "g", "world");
	if (chmod(lp(LO1, "g"), 0640) < 0)
		die("chmod");
	if (!env_mount(&e))
		goto out;

	CHECK_INT(e_write(FS, "f", O_WRONLY | O_TRUNC, "", 0), 0);
	CHECK_INT(lx(UP, "f", &st), 0);
	CHECK_INT(st.st_size, 0);
	CHECK_STR(e_cat(FS, "f"), "");
	CHECK_STR(cat(LO1, "f"), "hello");

	struct ovl_node *n;
	struct ovl_file *f;
	if (CHECK_INT(walk(FS, "g", &n, NULL), 0)) {
		if (CHECK_INT(ovl_open(FS, n, O_RDONLY | O_TRUNC, &f), 0))
			ovl_release(FS, f);
		put(FS, n);
	}
	CHECK_INT(lx(UP, "g", &st), 0);
	CHECK_INT(st.st_size, 0);
	CHECK_INT(st.st_mode & 07777, 0640);
	CHECK_STR(e_cat(FS, "g"), "");
	CHECK_STR(cat(LO1, "g"), "world");
out:
	env_fini(&e);
}

static void test_copyup_sparse(void)
{
	struct env e;
	struct stat lst, ust;
	const off_t mib = 1 << 20;
	char block[4096];

	env_init(&e, 1, true);
	int fd = open(lp(LO1, "s"), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
	if (fd < 0)
		die("create sparse");
	memset(block, 'A', sizeof(block));
	if (pwrite(fd, block, sizeof(block), 0) != (ssize_t)sizeof(block))
		die("pwrite");
	memset(block, 'B', sizeof(block));
	if (pwrite(fd, block, sizeof(block), 32 * mib) != (ssize_t)sizeof(block))
		die("pwrite");
	if (ftruncate(fd, 64 * mib) < 0 || fsync(fd) < 0)
		die("ftruncate");
	close(fd);
	if (lstat(lp(LO1, "s"), &lst) < 0)
		die("lstat");
	if (!env_mount(&e))
		goto out;

	CHECK_INT(e_copy_up(FS, "s"), 0);
	if (CHECK_INT(lx(UP, "s", &ust), 0)) {
		CHECK_INT(ust.st_size, 64 * mib);
		/* Holes stay holes: about as many blocks as the source, far fewer than 64 MiB. */
		if (!CHECK(ust.st_blocks <= lst.st_blocks + 16))
			fprintf(stderr, "    lower %lld blocks, upper %lld blocks\n",
				(long long)lst.st_blocks, (long long)ust.st_blocks);
	}
	struct ovl_node *n;
	struct ovl_file *f;
	char buf[4];
	if (CHECK_INT(walk(FS, "s", &n, NULL), 0)) {
		if (CHECK_INT(ovl_open(FS, n, O_RDONLY, &f), 0)) {
			CHECK_INT(ovl_read(FS, f, buf, 4, 0), 4);
			CHECK(memcmp(buf, "AAAA", 4) == 0);
			CHECK_INT(ovl_read(FS, f, buf, 4, 32 * mib + 100), 4);
			CHECK(memcmp(buf, "BBBB", 4) == 0);
			CHECK_INT(ovl_read(FS, f, buf, 4, 16 * mib), 4);
			CHECK(memcmp(buf, "\0\0\0\0", 4) == 0);
			CHECK_INT(ovl_read(FS, f, buf, 4, 64 * mib - 2), 2);
			ovl_release(FS, f);
		}
		put(FS, n);
	}
out:
	env_fini(&e);
}

/* D43: a read-only handle opened before the copy-up reads the new data afterwards. */
static void test_fd_follows_copy_up(void)
{
	struct env e;
	struct ovl_node *n;
	struct ovl_file *ro, *rw;
	char buf[32];

	env_init(&e, 1, true);
	mkf(LO1, "f", "old-data");
	if (!env_mount(&e))
		goto out;
	if (!CHECK_INT(walk(FS, "f", &n, NULL), 0))
		goto out;
	if (CHECK_INT(ovl_open(FS, n, O_RDONLY, &ro), 0)) {
		memset(buf, 0, sizeof(buf));
		CHECK_INT(ovl_read(FS, ro, buf, sizeof(buf) - 1, 0), 8);
		CHECK_STR(buf, "old-data");
		if (CHECK_INT(ovl_open(FS, n, O_RDWR, &rw), 0)) {
			CHECK_INT(ovl_write(FS, rw, "NEW", 3, 0), 3);
			memset(buf, 0, sizeof(buf));
			CHECK_INT(ovl_read(FS, ro, buf, sizeof(buf) - 1, 0), 8);
			CHECK_STR(buf, "NEW-data");
			CHECK_INT(ovl_write(FS, rw, "more", 4, 8), 4);
			ovl_release(FS, rw);
		}
		memset(buf, 0, sizeof(buf));
		CHECK_INT(ovl_read(FS, ro, buf, sizeof(buf) - 1, 0), 12);
		CHECK_STR(buf, "NEW-datamore");
		CHECK_INT(ovl_lseek(FS, ro, 0, SEEK_END), 12);
		ovl_release(FS, ro);
	}
	put(FS, n);
	CHECK_STR(cat(LO1, "f"), "old-data");
out:
	env_fini(&e);
}

/* D36: creating a/b/f where a/b is lower-only copies up a and a/b with their attributes. */
static void test_parent_chain_copy_up(void)
{
	struct env e;
	struct stat la, lb, ua, ub, st;

	env_init(&e, 1, true);
	mkd(LO1, "a", 0751);
	mkd(LO1, "a/b", 0710);
	mkf(LO1, "a/b/old", "old");
	mkf(LO1, "a/sibling", "s");
	if (lchown(lp(LO1, "a"), 11, 22) < 0 || lchown(lp(LO1, "a/b"), 33, 44) < 0)
		die("lchown");
	set_times(LO1, "a/b", 1100000000, 5);
	set_times(LO1, "a", 1200000000, 7);
	if (lstat(lp(LO1, "a"), &la) < 0 || lstat(lp(LO1, "a/b"), &lb) < 0)
		die("lstat");
	if (!env_mount(&e))
		goto out;

	CHECK_INT(e_create(FS, "a/b/f", 0600, "new"), 0);
	if (CHECK_INT(lx(UP, "a", &ua), 0)) {
		CHECK(S_ISDIR(ua.st_mode));
		CHECK_INT(ua.st_mode & 07777, 0751);
		CHECK_INT(ua.st_uid, 11);
		CHECK_INT(ua.st_gid, 22);
		CHECK(same_time(ua.st_mtim, la.st_mtim)); /* restored after b moved in */
	}
	if (CHECK_INT(lx(UP, "a/b", &ub), 0)) {
		CHECK(S_ISDIR(ub.st_mode));
		CHECK_INT(ub.st_mode & 07777, 0710);
		CHECK_INT(ub.st_uid, 33);
		CHECK_INT(ub.st_gid, 44);
	}
	CHECK_INT(lx(UP, "a/b/f", &st), 0);
	CHECK_INT(st.st_mode & 07777, 0600);
	CHECK_INT(lx(UP, "a/b/old", NULL), -ENOENT); /* a directory copy-up copies no children */
	CHECK_INT(lx(UP, "a/sibling", NULL), -ENOENT);
	CHECK_INT(lx(LO1, "a/b/f", NULL), -ENOENT);
	CHECK_STR(e_ls(FS, "a/b"), "f old");
	CHECK_STR(e_ls(FS, "a"), "b sibling");
	CHECK_STR(e_cat(FS, "a/b/f"), "new");
	/* The merged directory keeps its number through the copy-up. */
	CHECK_INT(lookup_st(FS, "a/b", &st), 0);
	CHECK_INT(st.st_ino, lb.st_ino);
	CHECK_INT(st.st_nlink, 1);
out:
	env_fini(&e);
}

/* D28, D27, D30, D37: setattr copies up first. */
static void test_setattr_copy_up(void)
{
	struct env e;
	struct stat lst, st, attr;
	char target[64];

	env_init(&e, 1, true);
	mkf(LO1, "f", "data");
	set_times(LO1, "f", 1300000000, 42);
	mkf(LO1, "g", "abcdefgh");
	mkf(LO1, "h", "h");
	mksym(LO1, "s", "target-of-s");
	if (lstat(lp(LO1, "f"), &lst) < 0)
		die("lstat");
	if (!env_mount(&e))
		goto out;

	memset(&attr, 0, sizeof(attr));
	attr.st_mode = 0600;
	CHECK_INT(e_setattr(FS, "f", OVL_SET_MODE, &attr, &st), 0);
	CHECK_INT(st.st_mode & 07777, 0600);
	CHECK_INT(st.st_ino, lst.st_ino);
	CHECK_INT(lx(UP, "f", &st), 0);
	CHECK_INT(st.st_mode & 07777, 0600);
	CHECK(same_time(st.st_mtim, lst.st_mtim));
	CHECK_INT(lx(LO1, "f", &st), 0);
	CHECK_INT(st.st_mode & 07777, 0644);

	attr.st_size = 4;
	CHECK_INT(e_setattr(FS, "g", OVL_SET_SIZE, &attr, &st), 0);
	CHECK_INT(st.st_size, 4);
	CHECK_STR(cat(UP, "g"), "abcd");
	CHECK_STR(cat(LO1, "g"), "abcdefgh");

	attr.st_atim = (struct timespec){.tv_sec = 1000, .tv_nsec = 1};
	attr.st_mtim = (struct timespec){.tv_sec = 2000, .tv_nsec = 2};
	CHECK_INT(e_setattr(FS, "h", OVL_SET_ATIME | OVL_SET_MTIME, &attr, &st), 0);
	CHECK_INT(lx(UP, "h", &st), 0);
	CHECK(same_time(st.st_atim, attr.st_atim));
	CHECK(same_time(st.st_mtim, attr.st_mtim));

	attr.st_uid = 1000;
	CHECK_INT(e_setattr(FS, "s", OVL_SET_UID, &attr, &st), 0);
	CHECK(S_ISLNK(st.st_mode));
	CHECK_INT(st.st_uid, 1000);
	ssize_t len = readlink(lp(UP, "s"), target, sizeof(target) - 1);
	CHECK_INT(len, strlen("target-of-s"));
	target[len < 0 ? 0 : len] = '\0';
	CHECK_STR(target, "target-of-s");
	struct ovl_node *n;
	if (CHECK_INT(walk(FS, "s", &n, NULL), 0)) {
		CHECK_INT(ovl_readlink(FS, n, target, sizeof(target)), strlen("target-of-s"));
		put(FS, n);
	}
out:
	env_fini(&e);
}

/* Ownership options (owner.c): a mapping shown and stored, chown refused before any copy-up
 * for an unmapped ID, override xattrs written by create, chmod and copy-up. */
static void test_owner_options(void)
{
	static struct ovl_owner_opts o; /* large: not on the stack */
	struct ovl_node *n, *root;
	struct stat st, attr;
	char err[256], val[64];
	struct env e;
	const char *lowers[1];

	memset(&o, 0, sizeof(o));
	CHECK_INT(ovl_owner_opt(&o, "uidmapping", "1000:0:1:100000:1:100", err, sizeof(err)), 0);
	CHECK_INT(ovl_owner_opt(&o, "gidmapping", "2000:0:1", err, sizeof(err)), 0);
	CHECK_INT(ovl_owner_opt(&o, "xattr_permissions", "2", err, sizeof(err)), 0);
	env_init(&e, 1, true);
	lowers[0] = LO1;
	mkf(LO1, "f", "data");
	if (lchown(lp(LO1, "f"), 100004, 2000) < 0)
		die("lchown");
	struct ovl_fs_params p = {
	    .lowerdirs = lowers, .nlower = 1, .upperdir = UP, .workdir = e.work, .owner = &o};
	if (!CHECK_INT(ovl_fs_new(&p, &e.fs), 0))
		goto out;
	CHECK_INT(walk(FS, "f", &n, &st), 0);
	CHECK_INT(st.st_uid, 5);
	CHECK_INT(st.st_gid, 0);
	put(FS, n);
	CHECK_INT(walk(FS, "", &root, &st), 0);
	CHECK_INT(st.st_uid, OVL_OVERFLOW_ID); /* the upper root is 0:0 on disk */

	memset(&attr, 0, sizeof(attr));
	attr.st_uid = 500; /* outside 1..100 */
	CHECK_INT(e_setattr(FS, "f", OVL_SET_UID, &attr, &st), -EINVAL);
	CHECK_INT(lx(UP, "f", &st), -ENOENT); /* refused before copy-up */
	attr.st_uid = 7;
	attr.st_mode = 0640;
	CHECK_INT(e_setattr(FS, "f", OVL_SET_UID | OVL_SET_MODE, &attr, &st), 0);
	CHECK_INT(st.st_uid, 7);
	CHECK_INT(st.st_mode & 07777, 0640);
	ssize_t len = lgetxattr(lp(UP, "f"), "user.containers.override_stat", val, sizeof(val) - 1);
	val[len < 0 ? 0 : len] = '\0';
	CHECK_STR(val, "100006:2000:0640:file");
	CHECK_INT(lx(UP, "f", &st), 0);
	CHECK_INT(st.st_uid, 0); /* the inode keeps the daemon's owner */
	CHECK_STR(e_getx(FS, "f", "user.containers.override_stat"), "<-ENODATA>");

	struct ovl_cred c = {.uid = 3, .gid = 0};
	CHECK_INT(ovl_mkdir(FS, root, "d", 0700, &c, &n, &st), 0);
	CHECK_INT(st.st_uid, 3);
	CHECK_INT(st.st_mode & 07777, 0700);
	put(FS, n);
	len = lgetxattr(lp(UP, "d"), "user.containers.override_stat", val, sizeof(val) - 1);
	val[len < 0 ? 0 : len] = '\0';
	CHECK_STR(val, "100002:2000:0700:dir");
	CHECK_INT(lx(UP, "d", &st), 0);
	CHECK_INT(st.st_mode & 07777, 0755);
	put(FS, root);
out:
	env_fini(&e);
}

/* D53 and other calls that must not copy up. */
static void test_no_copy_up_on_read(void)
{
	struct env e;
	struct ovl_node *n, *d;
	struct ovl_file *f;
	struct ovl_dir *dh;
	struct statvfs sv;

	env_init(&e, 1, true);
	mkd(LO1, "d", 0755);
	mkf(LO1, "d/f", "data");
	if (!env_mount(&e))
		goto out;
	if (CHECK_INT(walk(FS, "d/f", &n, NULL), 0)) {
		CHECK_INT(ovl_access(FS, n, R_OK | W_OK), 0);
		if (CHECK_INT(ovl_open(FS, n, O_RDONLY, &f), 0)) {
			CHECK_INT(ovl_fsync(FS, f, false), 0);
			CHECK_INT(ovl_fsync(FS, f, true), 0);
			ovl_release(FS, f);
		}
		CHECK_INT(ovl_opendir(FS, n, &dh), -ENOTDIR);
		put(FS, n);
	}
	if (CHECK_INT(walk(FS, "d", &d, NULL), 0)) {
		CHECK_INT(ovl_open(FS, d, O_RDONLY, &f), -EINVAL);
		CHECK_INT(ovl_open(FS, d, O_RDWR, &f), -EISDIR);
		put(FS, d);
	}
	CHECK_STR(e_ls(FS, "d"), "f");
	CHECK_INT(lx(UP, "d", NULL), -ENOENT);
	CHECK_INT(ovl_statfs(FS, &sv), 0);
	CHECK(sv.f_namemax >= 255);
	char longname[300];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	CHECK_INT(lookup_err(FS, longname), -ENAMETOOLONG);
out:
	env_fini(&e);
}

/* ------------------------------------------------------------------------------------------ */
/* Creating and removing                                                                       */
/* ------------------------------------------------------------------------------------------ */

static void test_create_over_whiteout(void)
{
	struct env e;
	struct stat st;
	struct ovl_node *n;
	struct ovl_file *f;

	env_init(&e, 1, true);
	mkwh(UP, "a");
	mkf(LO1, "a", "lower");
	mkf(LO1, "b", "lower b");
	if (!env_mount(&e))
		goto out;

	CHECK_INT(lookup_err(FS, "a"), -ENOENT);
	if (CHECK_INT(ovl_create(FS, ovl_root(FS), "a", 0640, O_RDWR, &root_cred, &n, &st, &f),
		      0)) {
		CHECK(S_ISREG(st.st_mode));
		CHECK_INT(st.st_mode & 07777, 0640);
		CHECK_INT(st.st_size, 0);
		CHECK_INT(ovl_write(FS, f, "new", 3, 0), 3);
		ovl_release(FS, f);
		put(FS, n);
	}
	CHECK_INT(lx(UP, "a", &st), 0);
	CHECK(S_ISREG(st.st_mode));
	CHECK_STR(e_cat(FS, "a"), "new");
	CHECK_STR(cat(LO1, "a"), "lower");
	CHECK_INT(e_create(FS, "a", 0644, NULL), -EEXIST);
	CHECK_INT(e_create(FS, "b", 0644, NULL), -EEXIST);
	CHECK_INT(lx(UP, "b", NULL), -ENOENT);
	/* New objects belong to the caller. */
	struct ovl_cred user = {.uid = 1000, .gid = 2000};
	CHECK_INT(e_create_as(FS, "mine", 0644, "m", &user), 0);
	CHECK_INT(lx(UP, "mine", &st), 0);
	CHECK_INT(st.st_uid, 1000);
	CHECK_INT(st.st_gid, 2000);
out:
	env_fini(&e);
}

/* The kernel's setuid rule for changes it leaves to the filesystem: a caller without
 * CAP_FSETID loses setuid, and setgid where the group may run the file or the caller is
 * outside its group; after an ACL, setgid only for a caller outside the group. */
static bool in_group_2000(void *ctx, gid_t gid)
{
	(void)ctx;
	return gid == 2000;
}

static mode_t drop_as(struct ovl_fs *fs, const char *path, const struct ovl_cred *cred, bool acl)
{
	struct ovl_node *n;
	struct stat st;

	if (walk(fs, path, &n, &st))
		return (mode_t)-1;
	int r =
	    acl ? ovl_drop_setgid_on_acl(fs, n, cred) : ovl_drop_setid_on_write(fs, n, NULL, cred);
	put(fs, n);
	if (r < 0 || lookup_st(fs, path, &st))
		return (mode_t)-1;
	return st.st_mode & 07777;
}

static void test_setid_dropped(void)
{
	struct env e;
	const struct ovl_cred root = {.uid = 0, .gid = 0};
	const struct ovl_cred user = {.uid = 1000, .gid = 1000};
	const struct ovl_cred member = {.uid = 1000, .gid = 1000, .in_group = in_group_2000};

	env_init(&e, 1, true);
	mkfm(LO1, "suid", "x", 06755);
	mkfm(UP, "sgid_noexec", "x", 02744);
	mkfm(UP, "sgid_noexec2", "x", 02744);
	mkfm(UP, "acl", "x", 02775);
	mkfm(UP, "acl2", "x", 02775);
	if (lchown(lp(UP, "sgid_noexec"), 0, 2000) || lchown(lp(UP, "sgid_noexec2"), 0, 2000) ||
	    lchown(lp(UP, "acl"), 0, 2000) || lchown(lp(UP, "acl2"), 0, 2000))
		die("lchown");
	/* (chown cleared setgid of the group-executable ones) */
	if (chmod(lp(UP, "acl"), 02775) || chmod(lp(UP, "acl2"), 02775))
		die("chmod");
	if (!env_mount(&e))
		goto out;
	CHECK_INT(drop_as(FS, "suid", &root, false), 06755);
	CHECK_INT(drop_as(FS, "suid", &user, false), 0755); /* copied up on the way */
	CHECK_INT(drop_as(FS, "sgid_noexec", &member, false), 02744);
	CHECK_INT(drop_as(FS, "sgid_noexec2", &user, false), 0744);
	CHECK_INT(drop_as(FS, "acl", &member, true), 02775);
	CHECK_INT(drop_as(FS, "acl2", &user, true), 0775);
out:
	env_fini(&e);
}

/* D4: a directory made over a whiteout is opaque, so nothing below shows through. */
static void test_mkdir_over_whiteout(void)
{
	struct env e;
	struct stat st;
	struct ovl_node *n;

	env_init(&e, 1, true);
	mkwh(UP, "d");
	mkd(LO1, "d", 0755);
	mkf(LO1, "d/x", "hidden");
	if (!env_mount(&e))
		goto out;

	if (CHECK_INT(ovl_mkdir(FS, ovl_root(FS), "d", 0750, &root_cred, &n, &st), 0)) {
		CHECK(S_ISDIR(st.st_mode));
		CHECK_INT(st.st_mode & 07777, 0750);
		put(FS, n);
	}
	CHECK_INT(lx(UP, "d", &st), 0);
	CHECK(S_ISDIR(st.st_mode));
	CHECK_STR(getx(UP, "d", "trusted.overlay.opaque"), "y");
	CHECK_STR(e_ls(FS, "d"), "");
	CHECK_INT(lookup_err(FS, "d/x"), -ENOENT);
	CHECK_INT(e_mkdir(FS, "d", 0755), -EEXIST);
	CHECK_INT(e_mkdir(FS, "fresh", 0755), 0);
	CHECK_INT(lx(UP, "fresh", &st), 0);
	CHECK(S_ISDIR(st.st_mode));
	CHECK_INT(e_create(FS, "d/in", 0644, "i"), 0);
	CHECK_STR(e_ls(FS, "d"), "in");
out:
	env_fini(&e);
}

/* D35: mknod of a whiteout-shaped device is refused; other nodes work. */
static void test_mknod(void)
{
	struct env e;
	struct stat st;

	env_init(&e, 1, true);
	if (!env_mount(&e))
		goto out;
	CHECK_INT(e_mknod(FS, "wh", S_IFCHR | 0644, makedev(0, 0)), -EPERM);
	CHECK_INT(lx(UP, "wh", NULL), -ENOENT);
	CHECK_INT(e_mknod(FS, "null", S_IFCHR | 0666, makedev(1, 3)), 0);
	if (CHECK_INT(lx(UP, "null", &st), 0)) {
		CHECK(S_ISCHR(st.st_mode));
		CHECK_INT(st.st_rdev, makedev(1, 3));
	}
	CHECK_INT(lookup_st(FS, "null", &st), 0);
	CHECK(S_ISCHR(st.st_mode));
	CHECK_INT(e_mknod(FS, "fifo", S_IFIFO | 0600, 0), 0);
	CHECK_INT(lookup_st(FS, "fifo", &st), 0);
	CHECK(S_ISFIFO(st.st_mode));
	CHECK_INT(e_symlink(FS, "sym", "null"), 0);
	CHECK_INT(lookup_st(FS, "sym", &st), 0);
	CHECK(S_ISLNK(st.st_mode));
	CHECK_STR(e_ls(FS, ""), "fifo null sym");
out:
	env_fini(&e);
}

/* D5, D6, D7. */
static void test_unlink(void)
{
	struct env e;
	struct stat st;
	struct ovl_node *held;

	env_init(&e, 1, true);
	mkf(LO1, "a", "A");
	mkd(LO1, "d", 0755);
	mkf(LO1, "d/b", "B");
	mkf(LO1, "e", "E");
	mkd(LO1, "dir", 0755);
	if (!env_mount(&e))
		goto out;

	CHECK_INT(walk(FS, "a", &held, NULL), 0);
	CHECK_INT(e_unlink(FS, "a"), 0);
	CHECK(is_whiteout(UP, "a"));
	CHECK_INT(lookup_err(FS, "a"), -ENOENT);
	CHECK_STR(cat(LO1, "a"), "A");
	/* A node still referenced after its name went (as by an open fd): nlink 0. */
	CHECK_INT(ovl_getattr(FS, held, &st), 0);
	CHECK_INT(st.st_nlink, 0);
	put(FS, held);

	CHECK_INT(e_unlink(FS, "d/b"), 0);
	CHECK(is_whiteout(UP, "d/b"));
	CHECK_INT(lx(UP, "d", &st), 0);
	CHECK(S_ISDIR(st.st_mode));
	CHECK_STR(e_ls(FS, "d"), "");

	CHECK_INT(e_create(FS, "c", 0644, "C"), 0);
	CHECK_INT(e_unlink(FS, "c"), 0);
	CHECK_INT(lx(UP, "c", NULL), -ENOENT); /* pure upper: nothing left */
	CHECK_INT(lookup_err(FS, "c"), -ENOENT);

	CHECK_INT(e_write(FS, "e", O_WRONLY, "e", 0), 0);
	CHECK_INT(e_unlink(FS, "e"), 0);
	CHECK(is_whiteout(UP, "e"));
	CHECK_INT(lookup_err(FS, "e"), -ENOENT);

	CHECK_INT(e_unlink(FS, "missing"), -ENOENT);
	CHECK_INT(e_unlink(FS, "dir"), -EISDIR);
	CHECK_STR(e_ls(FS, ""), "d dir");
out:
	env_fini(&e);
}

/* D8 - D11. */
static void test_rmdir(void)
{
	struct env e;
	struct stat st;

	env_init(&e, 2, true);
	mkd(UP, "m", 0755);
	mkd(LO1, "m", 0755);
	mkf(LO1, "m/f", "f");
	mkd(LO1, "empty", 0755);
	mkd(LO1, "c", 0755);
	if (mknod(lp(LO1, "c/dev"), S_IFCHR | 0644, makedev(1, 3)) < 0)
		die("mknod");
	mkd(UP, "w", 0755);
	mkwh(UP, "w/x");
	mkd(LO1, "w", 0755);
	mkf(LO1, "w/x", "hidden");
	mkd(LO1, "q", 0755);
	mkd(LO2, "q", 0755);
	mkf(LO2, "q/z", "z");
	mkf(LO1, "file", "f");
	if (!env_mount(&e))
		goto out;

	CHECK_INT(e_rmdir(FS, "m"), -ENOTEMPTY);
	CHECK_INT(e_unlink(FS, "m/f"), 0);
	CHECK_INT(e_rmdir(FS, "m"), 0);
	CHECK(is_whiteout(UP, "m"));
	CHECK_INT(lookup_err(FS, "m"), -ENOENT);
	CHECK_INT(lx(LO1, "m/f", NULL), 0);

	CHECK_INT(e_rmdir(FS, "empty"), 0);
	CHECK(is_whiteout(UP, "empty"));
	CHECK_INT(e_rmdir(FS, "c"), -ENOTEMPTY); /* a char device other than 0/0 is an entry */
	CHECK_INT(e_rmdir(FS, "w"), 0);		 /* holds only a whiteout */
	CHECK(is_whiteout(UP, "w"));
	CHECK_INT(e_rmdir(FS, "q"), -ENOTEMPTY);
	CHECK_INT(e_unlink(FS, "q/z"), 0);
	CHECK_INT(e_rmdir(FS, "q"), 0);
	CHECK(is_whiteout(UP, "q"));
	CHECK_INT(e_rmdir(FS, "file"), -ENOTDIR);
	CHECK_INT(e_rmdir(FS, "missing"), -ENOENT);

	CHECK_INT(e_mkdir(FS, "p", 0755), 0);
	CHECK_INT(e_rmdir(FS, "p"), 0);
	CHECK_INT(lx(UP, "p", NULL), -ENOENT);
	/* mkdir over what rmdir left: opaque, empty. */
	CHECK_INT(e_mkdir(FS, "m", 0755), 0);
	CHECK_STR(e_ls(FS, "m"), "");
	CHECK_INT(lx(UP, "m", &st), 0);
	CHECK(S_ISDIR(st.st_mode));
	CHECK_STR(e_ls(FS, ""), "c file m");
out:
	env_fini(&e);
}

/* ------------------------------------------------------------------------------------------ */
/* rename                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static void test_rename_files(void)
{
	struct env e;
	struct stat st;

	env_init(&e, 1, true);
	mkf(LO1, "a", "A");
	mkf(LO1, "b", "B");
	mkf(LO1, "g", "G");
	mkf(LO1, "x", "X");
	mkf(LO1, "y", "Y");
	mkf(LO1, "p", "P");
	mkf(LO1, "q", "Q");
	mkf(LO1, "cu", "CU");
	mkwh(UP, "w");
	mkf(LO1, "w", "whited out");
	if (!env_mount(&e))
		goto out;

	/* D16: the source is copied up and renamed; a whiteout is left where it exists below. */
	CHECK_INT(e_rename(FS, "a", "na", 0), 0);
	CHECK_STR(cat(UP, "na"), "A");
	CHECK(is_whiteout(UP, "a"));
	CHECK_STR(cat(LO1, "a"), "A");
	CHECK_INT(lookup_err(FS, "a"), -ENOENT);
	CHECK_STR(e_cat(FS, "na"), "A");

	/* D17: over another lower file. */
	CHECK_INT(e_rename(FS, "b", "g", 0), 0);
	CHECK_STR(e_cat(FS, "g"), "B");
	CHECK_INT(lookup_err(FS, "b"), -ENOENT);
	CHECK(is_whiteout(UP, "b"));

	/* A copied-up file: the name still exists below. */
	CHECK_INT(e_write(FS, "cu", O_WRONLY, "cu", 0), 0);
	CHECK_INT(e_rename(FS, "cu", "cu2", 0), 0);
	CHECK(is_whiteout(UP, "cu"));
	CHECK_INT(lookup_err(FS, "cu"), -ENOENT);
	CHECK_STR(e_cat(FS, "cu2"), "cu");

	/* A pure upper file leaves nothing behind. */
	CHECK_INT(e_create(FS, "c", 0644, "C"), 0);
	CHECK_INT(e_rename(FS, "c", "c2", 0), 0);
	CHECK_INT(lx(UP, "c", NULL), -ENOENT);
	CHECK_STR(e_cat(FS, "c2"), "C");

	/* D19. */
	CHECK_INT(e_rename(FS, "x", "y", RENAME_NOREPLACE), -EEXIST);
	CHECK_STR(e_cat(FS, "x"), "X");
	CHECK_STR(e_cat(FS, "y"), "Y");
	CHECK_INT(lx(UP, "x", NULL), -ENOENT);
	CHECK_INT(e_rename(FS, "x", "w", RENAME_NOREPLACE), 0);
	CHECK_STR(e_cat(FS, "w"), "X");
	CHECK_INT(lookup_err(FS, "x"), -ENOENT);
	CHECK(is_whiteout(UP, "x"));

	/* D20. */
	CHECK_INT(e_rename(FS, "p", "q", RENAME_EXCHANGE), 0);
	CHECK_STR(e_cat(FS, "p"), "Q");
	CHECK_STR(e_cat(FS, "q"), "P");
	CHECK_INT(e_rename(FS, "p", "absent", RENAME_EXCHANGE), -ENOENT);
	CHECK_INT(e_rename(FS, "absent", "p", 0), -ENOENT);

	/* D21 and other flags. */
	CHECK_INT(e_rename(FS, "p", "p2", RENAME_WHITEOUT), -EINVAL);
	CHECK_INT(e_rename(FS, "p", "q", RENAME_NOREPLACE | RENAME_EXCHANGE), -EINVAL);
	CHECK_INT(e_rename(FS, "p", "p2", 1u << 7), -EINVAL);
	CHECK_INT(lookup_err(FS, "p2"), -ENOENT);

	/* Onto itself: nothing happens. */
	CHECK_INT(e_rename(FS, "y", "y", 0), 0);
	CHECK_STR(e_cat(FS, "y"), "Y");
	CHECK_INT(lookup_st(FS, "y", &st), 0);
	CHECK_STR(e_ls(FS, ""), "c2 cu2 g na p q w y");
out:
	env_fini(&e);
}

/* A node the kernel still holds (an open file) after rename replaced its name behaves like
 * one whose name was unlinked: its attributes stay, with nlink 0. */
static void test_rename_replaced_node(void)
{
	struct env e;
	struct ovl_node *held, *held2;
	struct stat st0, st;

	env_init(&e, 1, true);
	mkf(LO1, "a", "A");
	mkf(LO1, "b", "BB");
	mkf(LO1, "c", "C");
	if (!env_mount(&e))
		goto out;

	if (CHECK_INT(walk(FS, "b", &held, &st0), 0)) {
		CHECK_INT(e_rename(FS, "a", "b", 0), 0);
		CHECK_STR(e_cat(FS, "b"), "A");
		CHECK_INT(ovl_getattr(FS, held, &st), 0);
		CHECK(S_ISREG(st.st_mode));
		CHECK_INT(st.st_size, 2);
		CHECK_INT(st.st_ino, st0.st_ino);
		CHECK_INT(st.st_nlink, 0);
		put(FS, held);
	}
	/* The same for a name removed by unlink, for comparison. */
	if (CHECK_INT(walk(FS, "c", &held2, &st0), 0)) {
		CHECK_INT(e_unlink(FS, "c"), 0);
		CHECK_INT(ovl_getattr(FS, held2, &st), 0);
		CHECK(S_ISREG(st.st_mode));
		CHECK_INT(st.st_ino, st0.st_ino);
		CHECK_INT(st.st_nlink, 0);
		put(FS, held2);
	}
out:
	env_fini(&e);
}

static void test_rename_errors(void)
{
	struct env e;

	env_init(&e, 1, true);
	mkd(LO1, "D", 0755);
	mkd(LO1, "D/sub", 0755);
	mkd(LO1, "E", 0755);
	mkf(LO1, "E/e1", "e");
	mkd(LO1, "F", 0755);
	mkd(LO1, "G", 0755);
	mkf(LO1, "q", "Q");
	mkd(UP, "H", 0755);
	mkd(LO1, "H", 0755);
	mkf(LO1, "H/below", "b");
	if (!env_mount(&e))
		goto out;

	CHECK_INT(e_rename(FS, "D", "D/sub/inner", 0), -EINVAL);
	CHECK_INT(e_rename(FS, "D", "D/x", 0), -EINVAL);
	CHECK_INT(e_rename(FS, "q", "F", 0), -EISDIR);
	CHECK_INT(e_rename(FS, "F", "q", 0), -ENOTDIR);
	CHECK_INT(e_rename(FS, "F", "E", 0), -ENOTEMPTY);
	CHECK_INT(e_rename(FS, "F", "H", 0), -ENOTEMPTY); /* H's entries are below */
	CHECK_STR(e_ls(FS, ""), "D E F G H q");
	CHECK_STR(e_cat(FS, "E/e1"), "e");
	/* Onto an empty directory: replaces it. */
	CHECK_INT(e_rename(FS, "F", "G", 0), 0);
	CHECK_INT(lookup_err(FS, "F"), -ENOENT);
	CHECK_STR(e_ls(FS, "G"), "");
	CHECK_STR(e_ls(FS, ""), "D E G H q");
out:
	env_fini(&e);
}

/* gVisor's way (section A, rule 32): a merged directory renames; descendants are copied up,
 * the new name is opaque and a whiteout marks the source. */
static void test_rename_merged_dir(void)
{
	struct env e;
	struct ovl_node *held;
	struct stat st;

	env_init(&e, 2, true);
	mkd(UP, "m", 0755);
	mkf(UP, "m/u", "U");
	mkwh(UP, "m/wh");
	mkd(LO1, "m", 0755);
	mkf(LO1, "m/l", "L");
	mkf(LO1, "m/wh", "hidden");
	mkd(LO1, "m/sub", 0755);
	mkf(LO1, "m/sub/deep", "D");
	mksym(LO1, "m/sym", "l");
	mkd(LO2, "m", 0755);
	mkf(LO2, "m/l2", "L2");
	mkd(LO2, "m/sub", 0755);
	mkf(LO2, "m/sub/deeper", "DD");
	mkd(LO1, "k", 0755);
	mkf(LO1, "k/f", "kf");
	if (!env_mount(&e))
		goto out;

	CHECK_INT(walk(FS, "m/l", &held, NULL), 0);
	CHECK_INT(e_rename(FS, "m", "n", 0), 0);
	CHECK_INT(lookup_err(FS, "m"), -ENOENT);
	CHECK(is_whiteout(UP, "m"));
	if (CHECK_INT(lx(UP, "n", &st), 0)) {
		CHECK(S_ISDIR(st.st_mode));
		CHECK_STR(getx(UP, "n", "trusted.overlay.opaque"), "y");
	}
	CHECK_STR(cat(UP, "n/l"), "L");
	CHECK_STR(cat(UP, "n/l2"), "L2");
	CHECK_STR(cat(UP, "n/sub/deep"), "D");
	CHECK_STR(cat(UP, "n/sub/deeper"), "DD");
	CHECK_INT(lx(UP, "n/sym", &st), 0);
	CHECK(S_ISLNK(st.st_mode));
	CHECK_STR(e_ls(FS, "n"), "l l2 sub sym u");
	CHECK_STR(e_ls(FS, "n/sub"), "deep deeper");
	CHECK_INT(lookup_err(FS, "n/wh"), -ENOENT);
	CHECK_STR(e_cat(FS, "n/sub/deeper"), "DD");
	/* A node known before the rename follows it. */
	if (held) {
		struct ovl_file *f;
		char buf[8] = {0};
		CHECK_INT(ovl_getattr(FS, held, &st), 0);
		if (CHECK_INT(ovl_open(FS, held, O_RDWR, &f), 0)) {
			CHECK_INT(ovl_read(FS, f, buf, sizeof(buf) - 1, 0), 1);
			CHECK_STR(buf, "L");
			CHECK_INT(ovl_write(FS, f, "W", 1, 0), 1);
			ovl_release(FS, f);
		}
		CHECK_STR(cat(UP, "n/l"), "W");
		put(FS, held);
	}
	/* The lower layers are intact. */
	CHECK_STR(cat(LO1, "m/l"), "L");
	CHECK_STR(cat(LO2, "m/sub/deeper"), "DD");

	/* A lower-only directory. */
	CHECK_INT(e_rename(FS, "k", "k2", 0), 0);
	CHECK(is_whiteout(UP, "k"));
	CHECK_STR(getx(UP, "k2", "trusted.overlay.opaque"), "y");
	CHECK_STR(e_cat(FS, "k2/f"), "kf");
	CHECK_STR(e_ls(FS, ""), "k2 n");

	/* A pure upper directory into the renamed one and back. */
	CHECK_INT(e_mkdir(FS, "pu", 0755), 0);
	CHECK_INT(e_create(FS, "pu/f", 0644, "pf"), 0);
	CHECK_INT(e_rename(FS, "pu", "n/pu", 0), 0);
	CHECK_INT(lx(UP, "pu", NULL), -ENOENT);
	CHECK_STR(e_cat(FS, "n/pu/f"), "pf");
out:
	env_fini(&e);
}

/* ------------------------------------------------------------------------------------------ */
/* Hard links                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* D41, D42. */
static void test_link(void)
{
	struct env e;
	struct stat st, sa, sb, ua, ub, la;

	env_init(&e, 1, true);
	mkf(LO1, "a", "A");
	mkd(LO1, "d", 0755);
	mkf(LO1, "c", "C");
	mkwh(UP, "w");
	mkf(LO1, "w", "hidden");
	if (lstat(lp(LO1, "a"), &la) < 0)
		die("lstat");
	if (!env_mount(&e))
		goto out;

	if (CHECK_INT(e_link(FS, "a", "b", &st), 0))
		CHECK_INT(st.st_nlink, 2);
	CHECK_INT(lookup_st(FS, "a", &sa), 0);
	CHECK_INT(lookup_st(FS, "b", &sb), 0);
	CHECK_INT(sa.st_ino, sb.st_ino);
	CHECK_INT(sa.st_nlink, 2);
	CHECK_INT(sb.st_nlink, 2);
	if (CHECK_INT(lx(UP, "a", &ua), 0) && CHECK_INT(lx(UP, "b", &ub), 0)) {
		CHECK_INT(ua.st_ino, ub.st_ino);
		CHECK_INT(ua.st_nlink, 2);
	}
	CHECK_INT(lx(LO1, "b", NULL), -ENOENT);
	CHECK_INT(e_write(FS, "a", O_WRONLY, "Z", 0), 0);
	CHECK_STR(e_cat(FS, "b"), "Z");
	CHECK_STR(cat(LO1, "a"), "A");

	CHECK_INT(e_link(FS, "d", "d2", NULL), -EPERM);
	CHECK_INT(e_link(FS, "a", "c", NULL), -EEXIST);
	CHECK_INT(e_link(FS, "a", "w", NULL), 0); /* over a whiteout */
	CHECK_STR(e_cat(FS, "w"), "Z");
	CHECK_INT(lookup_st(FS, "w", &st), 0);
	CHECK_INT(st.st_nlink, 3);
	CHECK_INT(e_unlink(FS, "a"), 0);
	CHECK(is_whiteout(UP, "a"));
	CHECK_INT(lookup_st(FS, "b", &st), 0);
	CHECK_INT(st.st_nlink, 2);
out:
	env_fini(&e);
}

/* The other names of an upper hard-linked file (alias.c); lower links are not indexed. */
static void test_hard_link_aliases(void)
{
	struct env e;
	struct ovl_node *a = NULL, *b = NULL, *c = NULL, *l1 = NULL, *l2 = NULL, *out[4];

	env_init(&e, 1, true);
	mkf(UP, "a", "A");
	mkf(UP, "c", "C");
	mkf(LO1, "l1", "L");
	if (link(lp(UP, "a"), lp(UP, "b")) < 0 || link(lp(LO1, "l1"), lp(LO1, "l2")) < 0)
		die("link");
	if (!env_mount(&e))
		goto out;
	CHECK_INT(walk(FS, "a", &a, NULL), 0);
	CHECK_INT(walk(FS, "c", &c, NULL), 0);
	CHECK_INT(walk(FS, "l1", &l1, NULL), 0);
	CHECK_INT(walk(FS, "l2", &l2, NULL), 0);
	if (!a || !c || !l1 || !l2)
		goto put;
	CHECK_INT((int)ovl_node_aliases(FS, a, out, 4), 0); /* the other name is not known yet */
	if (!CHECK_INT(walk(FS, "b", &b, NULL), 0))
		goto put;
	if (CHECK_INT((int)ovl_node_aliases(FS, a, out, 4), 1))
		CHECK(out[0] == b);
	if (CHECK_INT((int)ovl_node_aliases(FS, b, out, 4), 1))
		CHECK(out[0] == a);
	CHECK_INT((int)ovl_node_aliases(FS, c, out, 4), 0);
	/* not indexed: a copy-up would break a lower link anyway */
	CHECK_INT((int)ovl_node_aliases(FS, l1, out, 4), 0);
	put(FS, b); /* forgotten: no longer an alias */
	b = NULL;
	CHECK_INT((int)ovl_node_aliases(FS, a, out, 4), 0);
	/* link() makes the source an alias even if it was seen with one name only */
	struct ovl_node *n;
	struct stat st;
	if (CHECK_INT(ovl_link(FS, c, ovl_root(FS), "c2", &n, &st), 0)) {
		if (CHECK_INT((int)ovl_node_aliases(FS, c, out, 4), 1))
			CHECK(out[0] == n);
		put(FS, n);
	}
put:
	for (struct ovl_node **p = (struct ovl_node *[]){a, b, c, l1, l2}, **end = p + 5; p < end;
	     p++)
		if (*p)
			put(FS, *p);
out:
	env_fini(&e);
}

/* ------------------------------------------------------------------------------------------ */
/* Read-only overlays and parameters                                                           */
/* ------------------------------------------------------------------------------------------ */

static void check_all_writes_erofs(struct ovl_fs *fs)
{
	struct ovl_node *f, *d, *n;
	struct ovl_file *h;
	struct stat st, attr;

	if (!CHECK_INT(walk(fs, "f", &f, NULL), 0))
		return;
	if (!CHECK_INT(walk(fs, "d", &d, NULL), 0)) {
		put(fs, f);
		return;
	}
	CHECK(ovl_is_readonly(fs));
	CHECK_INT(ovl_create(fs, d, "new", 0644, O_RDWR, &root_cred, &n, &st, &h), -EROFS);
	CHECK_INT(ovl_mkdir(fs, d, "nd", 0755, &root_cred, &n, &st), -EROFS);
	CHECK_INT(ovl_mknod(fs, d, "nn", S_IFIFO | 0644, 0, &root_cred, &n, &st), -EROFS);
	CHECK_INT(ovl_symlink(fs, d, "ns", "f", &root_cred, &n, &st), -EROFS);
	CHECK_INT(ovl_link(fs, f, d, "nl", &n, &st), -EROFS);
	CHECK_INT(ovl_unlink(fs, ovl_root(fs), "f"), -EROFS);
	CHECK_INT(ovl_unlink(fs, d, "x"), -EROFS);
	CHECK_INT(ovl_rmdir(fs, ovl_root(fs), "d"), -EROFS);
	CHECK_INT(ovl_rename(fs, ovl_root(fs), "f", ovl_root(fs), "f2", 0), -EROFS);
	CHECK_INT(ovl_open(fs, f, O_RDWR, &h), -EROFS);
	CHECK_INT(ovl_open(fs, f, O_WRONLY, &h), -EROFS);
	CHECK_INT(ovl_open(fs, f, O_RDONLY | O_TRUNC, &h), -EROFS);
	memset(&attr, 0, sizeof(attr));
	attr.st_mode = 0600;
	CHECK_INT(ovl_setattr(fs, f, NULL, OVL_SET_MODE, &attr, &st), -EROFS);
	CHECK_INT(ovl_setattr(fs, f, NULL, OVL_SET_SIZE, &attr, &st), -EROFS);
	CHECK_INT(ovl_setxattr(fs, f, "user.x", "1", 1, 0), -EROFS);
	CHECK_INT(ovl_removexattr(fs, f, "user.a"), -EROFS);
	CHECK_INT(ovl_copy_up(fs, f), -EROFS);
	CHECK_INT(ovl_access(fs, f, W_OK), -EROFS);
	CHECK_INT(ovl_access(fs, f, R_OK), 0);
	put(fs, d);
	put(fs, f);
	/* Reading works. */
	CHECK_STR(e_cat(fs, "f"), "F");
	CHECK_STR(e_ls(fs, "d"), "x y");
	CHECK_STR(e_getx(fs, "f", "user.a"), "1");
}

/* D50, A40. */
static void test_readonly(void)
{
	struct env e;
	struct ovl_fs *fs;

	/* No upper layer. */
	env_init(&e, 2, false);
	mkf(LO1, "f", "F");
	setx(LO1, "f", "user.a", "1");
	mkd(LO1, "d", 0755);
	mkf(LO1, "d/x", "x");
	mkd(LO2, "d", 0755);
	mkf(LO2, "d/y", "y");
	if (env_mount(&e))
		check_all_writes_erofs(FS);
	env_fini(&e);

	/* An upper layer, but mounted read-only: nothing is written, not even the work dir. */
	env_init(&e, 1, true);
	mkf(LO1, "f", "F");
	setx(LO1, "f", "user.a", "1");
	mkd(LO1, "d", 0755);
	mkf(LO1, "d/x", "x");
	mkf(LO1, "d/y", "y");
	if (CHECK_INT(env_open(&e, true), 0)) {
		check_all_writes_erofs(FS);
		CHECK_STR(e_ls(FS, ""), "d f");
		CHECK_INT(lx(e.work, "work", NULL), -ENOENT);
		CHECK_INT(lx(UP, "d", NULL), -ENOENT);
	}
	env_fini(&e);

	/* One lower layer alone mounts read-only. */
	env_init(&e, 1, false);
	mkf(LO1, "f", "F");
	if (CHECK_INT(env_open(&e, false), 0)) {
		CHECK(ovl_is_readonly(FS));
		CHECK_STR(e_cat(FS, "f"), "F");
		CHECK_INT(e_create(FS, "g", 0644, NULL), -EROFS);
	}
	env_fini(&e);

	/* Bad parameters. */
	env_init(&e, 1, true);
	const char *lowers[1] = {LO1};
	const char *missing[1] = {lp(e.dir, "no-such-dir")};
	struct ovl_fs_params p = {.lowerdirs = lowers, .nlower = 0};
	CHECK_INT(ovl_fs_new(&p, &fs), -EINVAL);
	p.nlower = 1;
	p.upperdir = UP; /* no workdir */
	CHECK_INT(ovl_fs_new(&p, &fs), -EINVAL);
	p.upperdir = NULL;
	p.lowerdirs = missing;
	CHECK_INT(ovl_fs_new(&p, &fs), -ENOENT);
	env_fini(&e);
}

/* ------------------------------------------------------------------------------------------ */
/* Concurrency                                                                                 */
/* ------------------------------------------------------------------------------------------ */

#define CONC_THREADS 4
#define CONC_OPS 3000
#define CONC_FILES 8
#define CONC_DIRS 3

static const char *const conc_files[CONC_FILES] = {"n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7"};
static const char *const conc_dirs[CONC_DIRS] = {"d0", "d1", "d2"};

struct conc {
	struct ovl_fs *fs;
	struct ovl_node *dir;
	unsigned seed;
	int unexpected;
	char first[160];
	long errs[8]; /* ENOENT, EEXIST, ESTALE, ENOTEMPTY, other */
};

static void conc_note(struct conc *c, const char *op, const char *name, int err)
{
	switch (err) {
	case 0:
		return;
	case -ENOENT:
		c->errs[0]++;
		return;
	case -EEXIST:
		c->errs[1]++;
		return;
	case -ESTALE: /* a node whose name went meanwhile: the kernel would look it up again */
		c->errs[2]++;
		return;
	case -ENOTEMPTY:
		c->errs[3]++;
		return;
	}
	c->errs[4]++;
	if (c->unexpected++ == 0)
		snprintf(c->first, sizeof(c->first), "%s %s: %d (%s)", op, name, err,
			 strerrorname_np(-err) ? strerrorname_np(-err) : "?");
}

/* An invariant broken under concurrency (not an error code). */
static void conc_fail(struct conc *c, const char *what, const char *name)
{
	c->errs[4]++;
	if (c->unexpected++ == 0)
		snprintf(c->first, sizeof(c->first), "%s %s", what, name);
}

static void *conc_thread(void *arg)
{
	struct conc *c = arg;
	struct ovl_fs *fs = c->fs;
	char buf[64];

	for (int i = 0; i < CONC_OPS; i++) {
		unsigned r = (unsigned)rand_r(&c->seed);
		const char *name = conc_files[r % CONC_FILES];
		const char *other = conc_files[(r >> 4) % CONC_FILES];
		const char *dname = conc_dirs[(r >> 8) % CONC_DIRS];
		struct ovl_node *n;
		struct ovl_file *f;
		struct ovl_dir *d;
		struct stat st;
		int err;

		switch ((r >> 12) % 10) {
		case 0: /* lookup */
			err = ovl_lookup(fs, c->dir, name, &n, &st);
			if (!err)
				ovl_forget(fs, n, 1);
			conc_note(c, "lookup", name, err);
			break;
		case 1: /* create */
			err = ovl_create(fs, c->dir, name, 0644, O_RDWR, &root_cred, &n, &st, &f);
			if (!err) {
				if (ovl_write(fs, f, "created", 7, 0) != 7)
					conc_note(c, "write-new", name, -EIO);
				ovl_release(fs, f);
				ovl_forget(fs, n, 1);
			}
			conc_note(c, "create", name, err);
			break;
		case 2: /* unlink */
			conc_note(c, "unlink", name, ovl_unlink(fs, c->dir, name));
			break;
		case 3: /* copy-up by open for write */
			err = ovl_lookup(fs, c->dir, name, &n, &st);
			if (!err) {
				err = ovl_open(fs, n, O_RDWR, &f);
				if (!err) {
					ssize_t w = ovl_write(fs, f, "w", 1, 0);
					ssize_t rd = ovl_read(fs, f, buf, sizeof(buf), 0);
					if (w != 1 || rd < 1)
						conc_note(c, "rw", name, w < 0 ? (int)w : -EIO);
					ovl_release(fs, f);
				}
				ovl_forget(fs, n, 1);
			}
			conc_note(c, "open-rw", name, err);
			break;
		case 4: /* getattr and read */
			err = ovl_lookup(fs, c->dir, name, &n, &st);
			if (!err) {
				mode_t type = st.st_mode & S_IFMT;
				err = ovl_getattr(fs, n, &st);
				/* A node's type never changes, whatever happens to its name. */
				if (!err && (st.st_mode & S_IFMT) != type)
					conc_fail(c, "getattr: type of node changed for", name);
				if (!err) {
					err = ovl_open(fs, n, O_RDONLY, &f);
					if (!err) {
						ssize_t rd = ovl_read(fs, f, buf, sizeof(buf), 0);
						if (rd < 0)
							conc_note(c, "read", name, (int)rd);
						ovl_release(fs, f);
					}
				}
				ovl_forget(fs, n, 1);
			}
			conc_note(c, "getattr/open-ro", name, err);
			break;
		case 5: /* rename */
			conc_note(c, "rename", name,
				  ovl_rename(fs, c->dir, name, c->dir, other, 0));
			break;
		case 6: /* mkdir / rmdir */
			if (r & 1) {
				err = ovl_mkdir(fs, c->dir, dname, 0755, &root_cred, &n, &st);
				if (!err)
					ovl_forget(fs, n, 1);
				conc_note(c, "mkdir", dname, err);
			} else {
				conc_note(c, "rmdir", dname, ovl_rmdir(fs, c->dir, dname));
			}
			break;
		case 7: /* readdir */
			err = ovl_opendir(fs, c->dir, &d);
			if (!err) {
				struct listing l = {0};
				err = ovl_readdir(fs, d, 0, collect, &l);
				for (size_t k = 0; !err && k < l.n; k++)
					if (count_name(&l, l.v[k].name) != 1)
						conc_fail(
						    c, "readdir: name listed twice:", l.v[k].name);
				if (!err && !find_dent(&l, ".."))
					conc_fail(c, "readdir: missing", "..");
				listing_free(&l);
				ovl_releasedir(fs, d);
			}
			conc_note(c, "readdir", ".", err);
			break;
		case 8: /* setxattr: a copy-up */
			err = ovl_lookup(fs, c->dir, name, &n, &st);
			if (!err) {
				err = ovl_setxattr(fs, n, "user.t", "1", 1, 0);
				ovl_forget(fs, n, 1);
			}
			conc_note(c, "setxattr", name, err);
			break;
		case 9: /* explicit copy-up */
			err = ovl_lookup(fs, c->dir, name, &n, &st);
			if (!err) {
				err = ovl_copy_up(fs, n);
				ovl_forget(fs, n, 1);
			}
			conc_note(c, "copy-up", name, err);
			break;
		}
	}
	return NULL;
}

static void watchdog(int sig)
{
	static const char msg[] = "test_engine: watchdog: the concurrency test hung (deadlock?)\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* nothing more to do */
	}
	abort();
}

static void test_concurrency(void)
{
	struct env e;
	struct conc c[CONC_THREADS];
	pthread_t th[CONC_THREADS];
	struct ovl_node *dir;
	struct stat st;
	struct listing l;

	env_init(&e, 2, true);
	mkd(LO1, "c", 0755);
	mkd(LO2, "c", 0755);
	mkf(LO1, "c/n0", "lower n0");
	mkf(LO1, "c/n1", "lower n1");
	mkf(LO2, "c/n2", "lower n2");
	mkf(LO2, "c/n3", "lower n3");
	mkd(LO2, "c/d0", 0755);
	if (!env_mount(&e))
		goto out;
	if (!CHECK_INT(walk(FS, "c", &dir, NULL), 0))
		goto out;

	signal(SIGALRM, watchdog);
	alarm(240);
	int started = 0;
	for (int i = 0; i < CONC_THREADS; i++) {
		memset(&c[i], 0, sizeof(c[i]));
		c[i].fs = FS;
		c[i].dir = dir;
		c[i].seed = 0x5eed0000u + (unsigned)i * 7919u;
		if (pthread_create(&th[i], NULL, conc_thread, &c[i]) != 0)
			break;
		started++;
	}
	CHECK_INT(started, CONC_THREADS);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	alarm(0);

	for (int i = 0; i < started; i++) {
		if (!CHECK_INT(c[i].unexpected, 0))
			fprintf(stderr, "    thread %d: first unexpected error: %s\n", i,
				c[i].first);
	}

	/* Afterwards the tree is consistent: what readdir lists can be looked up with the
	 * listed type, and no name that can be looked up is missing from readdir. */
	if (CHECK_INT(list_dir(FS, "c", &l), 0)) {
		for (size_t i = 0; i < l.n; i++) {
			char path[300];
			if (strcmp(l.v[i].name, ".") == 0 || strcmp(l.v[i].name, "..") == 0)
				continue;
			snprintf(path, sizeof(path), "c/%s", l.v[i].name);
			if (!CHECK_INT(lookup_st(FS, path, &st), 0)) {
				fprintf(stderr, "    listed but not found: %s\n", path);
				continue;
			}
			CHECK_INT(l.v[i].type, IFTODT(st.st_mode));
			CHECK_INT(l.v[i].ino, st.st_ino);
			if (S_ISREG(st.st_mode))
				CHECK(e_cat(FS, path)[0] != '<');
		}
		for (int i = 0; i < CONC_FILES + CONC_DIRS; i++) {
			const char *name =
			    i < CONC_FILES ? conc_files[i] : conc_dirs[i - CONC_FILES];
			char path[64];
			snprintf(path, sizeof(path), "c/%s", name);
			bool found = lookup_err(FS, path) == 0;
			if (!CHECK_INT(found, find_dent(&l, name) != NULL))
				fprintf(stderr, "    %s: lookup and readdir disagree\n", path);
		}
	}
	listing_free(&l);
	put(FS, dir);
out:
	env_fini(&e);
}

/* ------------------------------------------------------------------------------------------ */
/* Runner                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static const struct {
	const char *name;
	void (*fn)(void);
} tests[] = {
#define T(f)                                                                                       \
	{                                                                                          \
#f, f                                                                              \
	}
    T(test_lookup_topdown),
    T(test_setid_dropped),
    T(test_lookup_lent_fds),
    T(test_whiteout_hides),
    T(test_oci_whiteouts),
    T(test_file_whiteouts),
    T(test_nondir_hides_dir),
    T(test_merge_three_layers),
    T(test_opaque_y),
    T(test_opaque_yes),
    T(test_xwhiteout),
    T(test_dir_nlink),
    T(test_ino_consistency),
    T(test_copyup_ino_stable),
    T(test_readdir_merged),
    T(test_readdir_snapshot),
    T(test_readdir_node),
    T(test_xattr_hidden_and_escaped),
    T(test_setxattr_escapes),
    T(test_removexattr_absent),
    T(test_copyup_on_write_open),
    T(test_destroy_closes_open_files),
    T(test_copyup_trunc),
    T(test_keep_kernel_mtime),
    T(test_copyup_sparse),
    T(test_fd_follows_copy_up),
    T(test_parent_chain_copy_up),
    T(test_setattr_copy_up),
    T(test_owner_options),
    T(test_no_copy_up_on_read),
    T(test_create_over_whiteout),
    T(test_mkdir_over_whiteout),
    T(test_mknod),
    T(test_unlink),
    T(test_rmdir),
    T(test_rename_files),
    T(test_rename_replaced_node),
    T(test_rename_errors),
    T(test_rename_merged_dir),
    T(test_link),
    T(test_hard_link_aliases),
    T(test_readonly),
    T(test_concurrency),
#undef T
};

#ifndef __SANITIZE_ADDRESS__
/* Names the test that crashed (AddressSanitizer has its own, better report). */
static void crash_report(int sig)
{
	char msg[256];
	int n = snprintf(msg, sizeof(msg), "test_engine: crashed with signal %d in %s\n", sig,
			 cur_test);

	if (n > 0 && write(2, msg, (size_t)n) < 0) {
		/* nothing more to do */
	}
	signal(sig, SIG_DFL);
	raise(sig);
}
#endif

int main(int argc, char **argv)
{
	const char *filter = argc > 1 ? argv[1] : NULL;
	const char *tmp = getenv("TMPDIR");

	umask(0); /* as the daemon */
	if (geteuid() != 0)
		fprintf(stderr,
			"test_engine: warning: not root; trusted.* xattrs and mknod fail\n");
	snprintf(g_base, sizeof(g_base), "%s/ovlfs-engine-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(g_base)) {
		g_base[0] = '\0';
		die("mkdtemp");
	}
	atexit(remove_base);
#ifndef __SANITIZE_ADDRESS__
	signal(SIGSEGV, crash_report);
	signal(SIGBUS, crash_report);
#endif

	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		if (filter && !strstr(tests[i].name, filter))
			continue;
		int failed_before = atomic_load(&n_failed);
		cur_test = tests[i].name;
		tests[i].fn();
		int failed = atomic_load(&n_failed) - failed_before;
		printf("%-32s %s\n", tests[i].name, failed ? "FAILED" : "ok");
		fflush(stdout);
	}
	printf("engine: %d passed, %d failed\n", atomic_load(&n_passed), atomic_load(&n_failed));
	return atomic_load(&n_failed) ? 1 : 0;
}
