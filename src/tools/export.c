/* `ovlfs export UPPERDIR [-o FILE|-] [-z]`: an upper layer as an OCI image layer tarball.
 * Entries in sorted order (reproducible output); whiteouts in every form become `.wh.<name>`,
 * opaque directories get a `.wh..wh..opq` entry first; overlay-private xattrs are left out
 * and a caller's escaped trusted.overlay.overlay.X is written as trusted.overlay.X. */
#include "subcommands.h"
#include "layer_walk.h"
#include "cli/log.h"
#include "tar_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static const char export_usage[] =
    "usage: ovlfs export UPPERDIR [-o FILE|-] [-z]\n"
    "Writes the upper layer UPPERDIR as an OCI layer tarball (POSIX tar) to FILE or to\n"
    "standard output. -z compresses it with gzip.\n";

struct link_slot {
	dev_t dev;
	ino_t ino;
	char *path; /* NULL: free slot */
};

struct exporter {
	const char *upper;
	struct tar_writer *tw;
	const char *out_name;
	dev_t out_dev; /* the archive itself, when written inside the upper layer */
	ino_t out_ino;
	bool out_is_file;
	struct link_slot *links; /* first path of each multiply-linked inode */
	size_t nlinks, links_cap;
};

/* A failed write of the archive: named as such, once. */
static int out_fail(struct exporter *x, int r)
{
	if (r == -ENOMEM)
		ovl_log(LOG_ERR, "export: out of memory");
	else
		ovl_log(LOG_ERR, "export: cannot write the archive to %s: %s", x->out_name,
			strerror(-r));
	return -1;
}

static int in_fail(struct exporter *x, const char *path, const char *what, int r)
{
	ovl_log(LOG_ERR, "export: cannot %s '%s/%s': %s", what, x->upper, path, strerror(-r));
	return -1;
}

static size_t slot_of(const struct exporter *x, dev_t dev, ino_t ino)
{
	size_t h = (size_t)((ino * 0x9e3779b97f4a7c15ULL) ^ dev) & (x->links_cap - 1);

	while (x->links[h].path && (x->links[h].dev != dev || x->links[h].ino != ino))
		h = (h + 1) & (x->links_cap - 1);
	return h;
}

/* The path first written for (dev, ino), or NULL after recording `path` as it. */
static int link_lookup(struct exporter *x, const struct stat *st, const char *path,
		       const char **first)
{
	*first = NULL;
	if (x->nlinks * 2 >= x->links_cap) {
		struct exporter old = *x;
		x->links_cap = x->links_cap ? x->links_cap * 2 : 64;
		x->links = calloc(x->links_cap, sizeof(*x->links));
		if (!x->links)
			return -ENOMEM;
		for (size_t i = 0; i < old.links_cap; i++)
			if (old.links[i].path)
				x->links[slot_of(x, old.links[i].dev, old.links[i].ino)] =
				    old.links[i];
		free(old.links);
	}
	size_t h = slot_of(x, st->st_dev, st->st_ino);
	if (x->links[h].path) {
		*first = x->links[h].path;
		return 0;
	}
	if (!(x->links[h].path = strdup(path)))
		return -ENOMEM;
	x->links[h].dev = st->st_dev;
	x->links[h].ino = st->st_ino;
	x->nlinks++;
	return 0;
}

static int cmp_xattr(const void *a, const void *b)
{
	return strcmp(((const struct tar_xattr *)a)->name, ((const struct tar_xattr *)b)->name);
}

static void free_xattrs(struct tar_xattr *xa, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((void *)xa[i].name);
		free((void *)xa[i].value);
	}
	free(xa);
}

/* The xattr name as it goes into the layer, or NULL for the overlay's own marks. */
static char *exported_xattr_name(const char *n)
{
	/* A caller's escaped trusted.overlay.X goes in as itself; every other name in an overlay
	 * namespace is left out, whichever mode wrote the layer. */
	if (ovl_xattr_is_escaped(n, false)) {
		char *s = malloc(strlen(n) + 1);
		if (s)
			ovl_xattr_unescape(n, false, s);
		return s;
	}
	if (ovl_xattr_in_overlay_ns(n))
		return NULL;
	return strdup(n);
}

/* The exported xattrs of dfd/name, sorted by name. 0 or -errno. */
static int read_xattrs(int dfd, const char *name, struct tar_xattr **out, size_t *nout)
{
	struct tar_xattr *xa = NULL;
	size_t n = 0;
	char *list = NULL;
	long len;
	int r = 0;

	*out = NULL;
	*nout = 0;
	for (;;) {
		len = lw_listxattr(dfd, name, NULL, 0);
		if (len == -ENOTSUP || len == 0)
			return 0;
		if (len < 0)
			return (int)len;
		free(list);
		if (!(list = malloc((size_t)len)))
			return -ENOMEM;
		len = lw_listxattr(dfd, name, list, (size_t)len);
		if (len != -ERANGE)
			break;
	}
	if (len < 0) {
		free(list);
		return (int)len;
	}
	xa = calloc((size_t)len, sizeof(*xa)); /* at most one per byte */
	if (!xa)
		r = -ENOMEM;
	for (char *p = list; !r && p < list + len; p += strlen(p) + 1) {
		char *ename, *val;
		size_t vlen;
		if (!*p)
			continue;
		if (!(ename = exported_xattr_name(p)))
			continue;
		r = lw_getxattr_alloc(dfd, name, p, &val, &vlen);
		if (r == -ENODATA) { /* removed since the listing */
			r = 0;
			free(ename);
			continue;
		}
		if (r) {
			free(ename);
			break;
		}
		xa[n++] = (struct tar_xattr){.name = ename, .value = val, .size = vlen};
	}
	free(list);
	if (r) {
		free_xattrs(xa, n);
		return r;
	}
	if (n)
		qsort(xa, n, sizeof(*xa), cmp_xattr);
	*out = xa;
	*nout = n;
	return 0;
}

/* Copies the data of regular file dfd/name, exactly st->st_size bytes. */
static int write_content(struct exporter *x, int dfd, const char *name, const char *path,
			 const struct stat *st)
{
	static char buf[128 * 1024];
	uint64_t left = (uint64_t)st->st_size;
	struct stat fst;
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	int r = 0;

	if (fd < 0)
		return in_fail(x, path, "open", -errno);
	if (fstat(fd, &fst) < 0 || fst.st_ino != st->st_ino || !S_ISREG(fst.st_mode)) {
		close(fd);
		return in_fail(x, path, "read", -ESTALE);
	}
	while (left && !r) {
		ssize_t n = read(fd, buf, left < sizeof(buf) ? left : sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			r = in_fail(x, path, "read", -errno);
		else if (n == 0)
			r = in_fail(x, path, "read all of (it shrank while being read)", -EIO);
		else if ((r = tar_write_data(x->tw, buf, (size_t)n)) < 0)
			r = out_fail(x, r);
		else
			left -= (uint64_t)n;
	}
	close(fd);
	if (!r && (r = tar_end_entry(x->tw)) < 0)
		r = out_fail(x, r);
	return r;
}

static int export_dir(struct exporter *x, int dfd, char *path, size_t plen, size_t cap);

/* One object of the layer: header, data, and for a directory what it holds. */
static int export_object(struct exporter *x, int dfd, const struct lw_entry *e, char *path,
			 size_t plen, size_t cap)
{
	const struct stat *st = &e->st;
	struct tar_entry t = {.path = path,
			      .mode = st->st_mode & 07777,
			      .uid = st->st_uid,
			      .gid = st->st_gid,
			      .mtime = st->st_mtim.tv_sec};
	char *target = NULL;
	int r;

	if (st->st_dev == x->out_dev && st->st_ino == x->out_ino && x->out_is_file)
		return 0; /* the archive being written */
	if (S_ISSOCK(st->st_mode)) {
		ovl_log(LOG_WARNING, "export: '%s/%s' is a socket, which tar cannot hold: left out",
			x->upper, path);
		return 0;
	}
	if (!S_ISDIR(st->st_mode) && st->st_nlink > 1) {
		const char *first;
		if ((r = link_lookup(x, st, path, &first)) < 0)
			return out_fail(x, r);
		if (first) {
			t.type = TAR_LINK;
			t.linkname = first;
			if ((r = tar_write_header(x->tw, &t)) < 0)
				return out_fail(x, r);
			return 0;
		}
	}
	if (S_ISREG(st->st_mode)) {
		t.type = TAR_REG;
		t.size = (uint64_t)st->st_size;
	} else if (S_ISDIR(st->st_mode)) {
		t.type = TAR_DIR;
	} else if (S_ISLNK(st->st_mode)) {
		size_t sz = (size_t)st->st_size + 1 > 4096 ? (size_t)st->st_size + 1 : 4096;
		ssize_t n;
		t.type = TAR_SYMLINK;
		if (!(target = malloc(sz)))
			return out_fail(x, -ENOMEM);
		n = readlinkat(dfd, e->name, target, sz);
		if (n < 0 || (size_t)n >= sz) {
			free(target);
			return in_fail(x, path, "read the symlink", n < 0 ? -errno : -ESTALE);
		}
		target[n] = '\0';
		t.linkname = target;
	} else if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) {
		t.type = S_ISCHR(st->st_mode) ? TAR_CHR : TAR_BLK;
		t.devmajor = major(st->st_rdev);
		t.devminor = minor(st->st_rdev);
	} else if (S_ISFIFO(st->st_mode)) {
		t.type = TAR_FIFO;
	} else {
		return 0;
	}
	struct tar_xattr *xa;
	r = read_xattrs(dfd, e->name, &xa, &t.nxattrs);
	if (r) {
		free(target);
		return in_fail(x, path, "read the xattrs of", r);
	}
	t.xattrs = xa;
	r = tar_write_header(x->tw, &t);
	free_xattrs(xa, t.nxattrs);
	free(target);
	if (r < 0)
		return out_fail(x, r);
	if (t.type == TAR_REG)
		return write_content(x, dfd, e->name, path, st);
	if (t.type == TAR_DIR) {
		int cfd = lw_open_dir(dfd, e->name);
		if (cfd < 0)
			return in_fail(x, path, "open", cfd);
		r = export_dir(x, cfd, path, plen, cap);
		close(cfd);
	}
	return r;
}

/* What a directory's listing turns into: its entries renamed as they go into the layer. */
struct item {
	char *out;		  /* name in the layer */
	const struct lw_entry *e; /* NULL: the opaque marker without a `.wh..wh..opq` entry */
};

static int cmp_items(const void *a, const void *b)
{
	const struct item *x = a, *y = b;
	int c = strcmp(x->out, y->out);
	/* equal names (two whiteouts of one name): keep the listing order, the first wins */
	return c ? c : (x->e > y->e) - (x->e < y->e);
}

/* A whiteout or the opaque marker: an empty file with the source's owner and time. */
static int write_marker(struct exporter *x, const char *path, const struct stat *st, mode_t mode)
{
	struct tar_entry t = {.path = path, .type = TAR_REG, .mode = mode};
	int r;

	if (st) {
		t.uid = st->st_uid;
		t.gid = st->st_gid;
		t.mtime = st->st_mtim.tv_sec;
	}
	if ((r = tar_write_header(x->tw, &t)) < 0 || (r = tar_end_entry(x->tw)) < 0)
		return out_fail(x, r);
	return 0;
}

static int export_dir(struct exporter *x, int dfd, char *path, size_t plen, size_t cap)
{
	struct lw_dir d;
	struct item *items;
	const struct stat *opq_st = NULL;
	size_t n = 0;
	int r;

	/* A directory renamed with redirect_dir=on holds only its changes; the rest is at its
	 * old path below, which an OCI layer cannot say: refused rather than lost. */
	if (lw_getxattr(dfd, ".", OVL_XATTR_PREFIX OVL_X_REDIRECT, NULL, 0) >= 0 ||
	    lw_getxattr(dfd, ".", OVL_UXATTR_PREFIX OVL_X_REDIRECT, NULL, 0) >= 0) {
		ovl_log(LOG_ERR,
			"export: '%s/%s' is a directory renamed with redirect_dir=on "
			"(overlay.redirect): an OCI layer cannot express it (rename with "
			"-o redirect_dir=off to copy directories instead)",
			x->upper, plen ? path : ".");
		return -1;
	}
	r = lw_read_upper_dir(dfd, &d);
	if (r)
		return in_fail(x, plen ? path : ".", "read the directory", r);
	items = calloc(d.n + 1, sizeof(*items));
	if (!items) {
		lw_dir_free(&d);
		return out_fail(x, -ENOMEM);
	}
	for (size_t i = 0; i < d.n && !r; i++) {
		const struct lw_entry *e = &d.e[i];
		if (e->kind == LW_OPQ_MARK)
			opq_st = &e->st;
		if (e->kind == LW_WHITEOUT) {
			if (asprintf(&items[n].out, OVL_WH_PREFIX "%s", e->hidden) < 0)
				r = -ENOMEM;
			else
				items[n++].e = e;
		} else if (e->kind == LW_OBJECT) {
			if (!(items[n].out = strdup(e->name)))
				r = -ENOMEM;
			else
				items[n++].e = e;
		}
	}
	if (r) {
		r = out_fail(x, r);
		goto out;
	}
	qsort(items, n, sizeof(*items), cmp_items);
	/* The opaque marker goes first: consumers apply it before the layer's entries. */
	if (d.opaque) {
		struct stat dst;
		if (!opq_st) { /* a mark, not an entry: the directory's owner and time */
			if (fstat(dfd, &dst) < 0) {
				r = in_fail(x, plen ? path : ".", "stat", -errno);
				goto out;
			}
			dst.st_mode = 0644;
			opq_st = &dst;
		}
		snprintf(path + plen, cap - plen, "%s%s", plen ? "/" : "", OVL_WH_OPAQUE);
		if ((r = write_marker(x, path, opq_st, opq_st->st_mode & 07777)))
			goto out;
	}
	for (size_t i = 0; i < n && !r; i++) {
		const struct lw_entry *e = items[i].e;
		size_t len = strlen(items[i].out);
		if (i && !strcmp(items[i].out, items[i - 1].out))
			continue; /* `x` as char 0/0 and `.wh.x` both: one whiteout */
		if (plen + len + 2 > cap) {
			r = in_fail(x, items[i].out, "export (path too long)", -ENAMETOOLONG);
			break;
		}
		snprintf(path + plen, cap - plen, "%s%s", plen ? "/" : "", items[i].out);
		size_t clen = plen + len + (plen ? 1 : 0);
		if (e->kind == LW_WHITEOUT)
			r = write_marker(x, path, &e->st, e->st.st_mode & 07777);
		else
			r = export_object(x, dfd, e, path, clen, cap);
	}
out:
	path[plen] = '\0';
	for (size_t i = 0; i < n; i++)
		free(items[i].out);
	free(items);
	lw_dir_free(&d);
	return r;
}

/* Where the archive goes: stdout, an existing non-regular file (a device, a pipe) written in
 * place, or a temporary file beside FILE renamed over it once complete. */
struct output {
	int fd;
	char *tmp; /* the temporary name, NULL when writing in place */
};

static int open_output(const char *name, struct output *o)
{
	struct stat st;
	char *copy, *dir, *base;
	mode_t mask;

	o->tmp = NULL;
	o->fd = -1;
	if (!name || !strcmp(name, "-")) {
		if (isatty(STDOUT_FILENO)) {
			ovl_log(LOG_ERR, "export: refusing to write a tar archive to a terminal "
					 "(use -o FILE or a pipe)");
			return -1;
		}
		o->fd = STDOUT_FILENO;
		return 0;
	}
	if (stat(name, &st) == 0 && S_ISDIR(st.st_mode)) {
		ovl_log(LOG_ERR, "export: cannot write the archive to '%s': %s", name,
			strerror(EISDIR));
		return -1;
	}
	if (stat(name, &st) == 0 && !S_ISREG(st.st_mode)) {
		o->fd = open(name, O_WRONLY | O_TRUNC | O_CLOEXEC);
		if (o->fd < 0) {
			ovl_log(LOG_ERR, "export: cannot open '%s': %s", name, strerror(errno));
			return -1;
		}
		return 0;
	}
	if (!(copy = strdup(name)) || !(dir = strdup(name))) {
		free(copy);
		ovl_log(LOG_ERR, "export: out of memory");
		return -1;
	}
	base = basename(copy);
	if (asprintf(&o->tmp, "%s/.%s.XXXXXX", dirname(dir), base) < 0)
		o->tmp = NULL;
	free(copy);
	free(dir);
	if (!o->tmp) {
		ovl_log(LOG_ERR, "export: out of memory");
		return -1;
	}
	o->fd = mkostemp(o->tmp, O_CLOEXEC);
	if (o->fd < 0) {
		ovl_log(LOG_ERR, "export: cannot create '%s': %s", name, strerror(errno));
		free(o->tmp);
		o->tmp = NULL;
		return -1;
	}
	/* mkstemp makes it 0600; an archive gets the usual 0666 less the umask */
	mask = umask(0);
	umask(mask);
	if (fchmod(o->fd, 0666 & ~mask) < 0) {
		ovl_log(LOG_ERR, "export: cannot set the mode of '%s': %s", o->tmp,
			strerror(errno));
		return -1;
	}
	return 0;
}

/* Success: the temporary file becomes FILE. Failure: it is removed. 0 or -1. */
static int close_output(const char *name, struct output *o, bool ok)
{
	int r = 0;

	if (o->tmp && ok && fsync(o->fd) < 0) {
		ovl_log(LOG_ERR, "export: cannot write the archive to '%s': %s", name,
			strerror(errno));
		ok = false;
	}
	if (o->fd >= 0 && o->fd != STDOUT_FILENO && close(o->fd) < 0 && ok) {
		ovl_log(LOG_ERR, "export: cannot write the archive to '%s': %s", name,
			strerror(errno));
		ok = false;
	}
	if (o->tmp && ok && rename(o->tmp, name) < 0) {
		ovl_log(LOG_ERR, "export: cannot rename '%s' to '%s': %s", o->tmp, name,
			strerror(errno));
		ok = false;
	}
	if (o->tmp && !ok && unlink(o->tmp) < 0)
		ovl_log(LOG_ERR, "export: cannot remove '%s': %s", o->tmp, strerror(errno));
	free(o->tmp);
	o->tmp = NULL;
	if (!ok)
		r = -1;
	return r;
}

static int usage_error(const char *fmt, const char *arg)
{
	char msg[512];

	snprintf(msg, sizeof(msg), fmt, arg);
	ovl_log(LOG_ERR, "export: %s (usage: ovlfs export UPPERDIR [-o FILE|-] [-z])", msg);
	return 1;
}

int ovl_export_main(int argc, char **argv)
{
	const char *upper = NULL, *out_name = NULL;
	bool gzip = false, dashdash = false;
	struct exporter x = {0};
	struct output o;
	char *path, *quoted = NULL;
	int ufd, r;
	const size_t cap = 1 << 16;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (dashdash || a[0] != '-' || !a[1]) {
			if (upper)
				return usage_error("unexpected argument '%s'", a);
			upper = a;
		} else if (!strcmp(a, "--")) {
			dashdash = true;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			return fputs(export_usage, stdout) < 0 || fflush(stdout) ? 1 : 0;
		} else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
			if (++i == argc)
				return usage_error("%s needs a file name", a);
			out_name = argv[i];
		} else if (!strncmp(a, "-o", 2)) {
			out_name = a + 2;
		} else if (!strcmp(a, "-z") || !strcmp(a, "--gzip")) {
			gzip = true;
		} else {
			return usage_error("unknown option '%s'", a);
		}
	}
	if (!upper)
		return usage_error("%s", "no upper directory given");
	x.upper = upper;
	ufd = open(upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ufd < 0) {
		if (errno == ENOTDIR)
			ovl_log(LOG_ERR, "export: the upper layer '%s' is not a directory", upper);
		else
			ovl_log(LOG_ERR, "export: cannot open the upper layer '%s': %s", upper,
				strerror(errno));
		return 1;
	}
	if (out_name && strcmp(out_name, "-")) {
		if (asprintf(&quoted, "'%s'", out_name) < 0) {
			ovl_log(LOG_ERR, "export: out of memory");
			close(ufd);
			return 1;
		}
		x.out_name = quoted;
	} else {
		x.out_name = "standard output";
	}
	if (open_output(out_name, &o) < 0) {
		close_output(out_name, &o, false);
		close(ufd);
		free(quoted);
		return 1;
	}
	struct stat ost;
	if (fstat(o.fd, &ost) == 0 && S_ISREG(ost.st_mode)) {
		x.out_dev = ost.st_dev;
		x.out_ino = ost.st_ino;
		x.out_is_file = true;
	}
	path = calloc(1, cap);
	r = path ? tar_writer_new(o.fd, gzip, &x.tw) : -ENOMEM;
	if (r < 0)
		r = out_fail(&x, r);
	if (!r)
		r = export_dir(&x, ufd, path, 0, cap);
	if (!r) {
		r = tar_writer_finish(x.tw);
		if (r < 0)
			r = out_fail(&x, r);
	} else if (x.tw) {
		tar_writer_abort(x.tw);
	}
	close(ufd);
	free(path);
	for (size_t i = 0; i < x.links_cap; i++)
		free(x.links[i].path);
	free(x.links);
	if (close_output(out_name, &o, r == 0) < 0)
		r = -1;
	free(quoted);
	return r ? 1 : 0;
}
