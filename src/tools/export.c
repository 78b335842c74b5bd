/* `ovlfs export UPPERDIR [LOWERDIR...] [-o FILE|-] [-z]`: an upper layer as an OCI image
 * layer tarball. Entries in sorted order (reproducible output); whiteouts in every form
 * become `.wh.<name>`, opaque directories get a `.wh..wh..opq` entry first; overlay-private
 * xattrs are left out and a caller's escaped trusted.overlay.overlay.X is written as
 * trusted.overlay.X. The kernel's redirected directories (overlay.redirect: the contents
 * stay in the lower layers at the old path) are written whole at their new path, opaque;
 * metacopy files (overlay.metacopy) get their data from below. Both need the lower layers,
 * and without them are refused. */
#include "subcommands.h"
#include "layer_walk.h"
#include "index_groups.h"
#include "cli/log.h"
#include "tar_writer.h"
#include "archive_out.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static const char export_usage[] =
    "usage: ovlfs export UPPERDIR [LOWERDIR...] [-w WORKDIR] [-o FILE|-] [-z]\n"
    "Writes the upper layer UPPERDIR as an OCI layer tarball (POSIX tar) to FILE or to\n"
    "standard output. -z compresses it with gzip. The lower layers (top first) are needed\n"
    "when UPPERDIR holds redirected directories or metacopy files. The work directory\n"
    "is needed when UPPERDIR was mounted with the index (ovlfs's default): lower hard\n"
    "links changed through one name are recorded there.\n";

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
	struct lw_stack roots;	 /* the lower layers' roots, top first (none: not given) */
	struct ig_index *ix;	 /* hard-link groups of the work directory's index, or NULL */
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

/* Copies the data of a regular file, exactly size bytes: from fd when >= 0 (a metacopy
 * file's data below), else from dfd/name, checked to be the object st describes. */
static int write_content(struct exporter *x, int dfd, const char *name, int fd, const char *path,
			 const struct stat *st, uint64_t size)
{
	static char buf[128 * 1024];
	uint64_t left = size;
	struct stat fst;
	bool own = fd < 0;
	int r = 0;

	if (own) {
		fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			return in_fail(x, path, "open", -errno);
		if (fstat(fd, &fst) < 0 || fst.st_ino != st->st_ino || !S_ISREG(fst.st_mode)) {
			close(fd);
			return in_fail(x, path, "read", -ESTALE);
		}
	} else if (lseek(fd, 0, SEEK_SET) < 0) {
		return in_fail(x, path, "read the data below of", -errno);
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
	if (own)
		close(fd);
	if (!r && (r = tar_end_entry(x->tw)) < 0)
		r = out_fail(x, r);
	return r;
}

/* One object: its header (metadata and xattrs of dfd/name) and a regular file's data, from
 * datafd when >= 0. A directory's contents are the caller's. 1: left out (the archive
 * itself, a socket, a later name of a hard link), 0 written, -1 failed. */
static int export_object(struct exporter *x, int dfd, const char *name, const struct stat *st,
			 int datafd, const char *path)
{
	struct tar_entry t = {.path = path,
			      .mode = st->st_mode & 07777,
			      .uid = st->st_uid,
			      .gid = st->st_gid,
			      .mtime = st->st_mtim.tv_sec};
	char *target = NULL;
	int r;

	if (st->st_dev == x->out_dev && st->st_ino == x->out_ino && x->out_is_file)
		return 1; /* the archive being written */
	if (S_ISSOCK(st->st_mode)) {
		ovl_log(LOG_WARNING, "export: '%s/%s' is a socket, which tar cannot hold: left out",
			x->upper, path);
		return 1;
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
			return 1;
		}
	}
	if (S_ISREG(st->st_mode)) {
		struct stat dst;
		t.type = TAR_REG;
		t.size = (uint64_t)st->st_size;
		if (datafd >= 0) { /* a metacopy file: the size is the data's */
			if (fstat(datafd, &dst) < 0)
				return in_fail(x, path, "stat the data below of", -errno);
			t.size = (uint64_t)dst.st_size;
		}
	} else if (S_ISDIR(st->st_mode)) {
		t.type = TAR_DIR;
	} else if (S_ISLNK(st->st_mode)) {
		size_t sz = (size_t)st->st_size + 1 > 4096 ? (size_t)st->st_size + 1 : 4096;
		ssize_t n;
		t.type = TAR_SYMLINK;
		if (!(target = malloc(sz)))
			return out_fail(x, -ENOMEM);
		n = readlinkat(dfd, name, target, sz);
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
		return 1;
	}
	struct tar_xattr *xa;
	r = read_xattrs(dfd, name, &xa, &t.nxattrs);
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
		return write_content(x, dfd, name, datafd, path, st, t.size);
	return 0;
}

/* What a directory's listing turns into: its entries renamed as they go into the layer. */
struct item {
	char *out;		  /* name in the layer */
	const struct lw_entry *e; /* an upper entry, or NULL: */
	struct lw_found *lf;	  /* an object of the lower layers only (merged directories) */
	struct ig_name *g;	  /* a lower name a hard-link group of the index touches */
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

/* Without the lower layers, a record export would have to resolve below. */
static int need_lowers(struct exporter *x, const char *what, const char *path)
{
	ovl_log(LOG_ERR, "%s holds %s (/%s): give the lower layers", x->upper, what, path);
	return -1;
}

static int export_tree(struct exporter *x, int dfd, const struct lw_stack *low, bool merged,
		       bool opq_first, char *path, size_t plen, size_t cap);

/* The names of the lower layers' merged directory `low` that the upper directory d (NULL:
 * none) neither holds nor whites out, looked up, added to items. 0 or -errno. */
static int add_lower_items(struct exporter *x, const struct lw_stack *low, const struct lw_dir *d,
			   struct item **items, size_t *n)
{
	char **all = NULL;
	size_t na = 0;
	int r = lw_stack_names(low, &all, &na);

	for (size_t i = 0; i < na && !r; i++) {
		if (d && lw_dir_hides(d, all[i]))
			continue;
		struct lw_found *f = calloc(1, sizeof(*f));
		if (!f) {
			r = -ENOMEM;
			break;
		}
		int kind = lw_lookup(low, &x->roots, all[i], NULL, false, f);
		if (kind <= 0) {
			lw_found_free(f);
			free(f);
			r = kind;
			continue;
		}
		struct item *ni = realloc(*items, (*n + 1) * sizeof(*ni));
		if (!ni) {
			lw_found_free(f);
			free(f);
			r = -ENOMEM;
			break;
		}
		*items = ni;
		ni[*n] = (struct item){.out = all[i], .lf = f};
		all[i] = NULL;
		(*n)++;
	}
	for (size_t i = 0; i < na; i++)
		free(all[i]);
	free(all);
	return r;
}

/* An upper entry's place below: its redirect (checked) and what the lower layers hold for
 * it. metacopy: a metacopy file, whose data is wanted. 0 or -1 (reported). */
static int upper_below(struct exporter *x, int dfd, const struct lw_entry *e,
		       const struct lw_stack *low, bool metacopy, const char *path,
		       bool *redirected, struct lw_found *f)
{
	char *rd = NULL;
	int r = lw_read_redirect(dfd, e->name, &rd);

	memset(f, 0, sizeof(*f));
	f->pfd = f->datafd = -1;
	*redirected = r > 0;
	if (r == -EINVAL) {
		ovl_log(LOG_ERR,
			"export: invalid redirect on '%s/%s' (empty, a \"..\" or empty "
			"component, or too long): refused",
			x->upper, path);
		return -1;
	}
	if (r < 0)
		return in_fail(x, path, "read the redirect of", r);
	if (!x->roots.n) {
		free(rd);
		if (metacopy)
			return need_lowers(x, "metacopy files", path);
		return *redirected && S_ISDIR(e->st.st_mode)
			   ? need_lowers(x, "redirected directories", path)
			   : 0;
	}
	r = lw_lookup(low, &x->roots, e->name, S_ISDIR(e->st.st_mode) || metacopy ? rd : NULL,
		      metacopy, f);
	free(rd);
	if (r < 0)
		return in_fail(x, path, "look up below", r);
	if (metacopy && f->datafd < 0) {
		ovl_log(LOG_ERR,
			"export: the data of the metacopy file '%s/%s' is not in the "
			"lower layers",
			x->upper, path);
		return -1;
	}
	return 0;
}

/* The upper directory dfd (-1: none) at path over the lower layers' merged directory low.
 * Not merged: the layer's own entries, whiteouts as `.wh.` files. merged (inside a
 * redirected directory, written whole): the upper's entries over low's, whiteouts applied.
 * opq_first: a `.wh..wh..opq` entry first (a redirected directory hides what the lower
 * image holds at its new path). */
static int export_tree(struct exporter *x, int dfd, const struct lw_stack *low, bool merged,
		       bool opq_first, char *path, size_t plen, size_t cap)
{
	struct lw_dir d = {0};
	struct item *items;
	struct ig_name *groups = NULL;
	size_t ngroups = 0;
	const struct stat *opq_st = NULL;
	struct stat dst;
	size_t n = 0;
	int r = dfd >= 0 ? lw_read_upper_dir(dfd, &d) : 0;

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
		if (e->kind == LW_WHITEOUT && !merged) {
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
	if (!r && merged && !d.opaque && low->n)
		r = add_lower_items(x, low, dfd >= 0 ? &d : NULL, &items, &n);
	/* The lower names of groups changed through another name: the index holds their
	 * change, the upper layer does not (dfd -1, not merged: only those, below a name). */
	if (!r && x->ix && !merged && !d.opaque && low->n &&
	    !(r = ig_names(x->ix, &x->roots, low, dfd >= 0 ? &d : NULL, &groups, &ngroups))) {
		struct item *ni = ngroups ? realloc(items, (n + ngroups) * sizeof(*ni)) : items;
		if (!ni)
			r = -ENOMEM;
		else
			items = ni;
		for (size_t i = 0; i < ngroups && !r; i++)
			items[n++] = (struct item){.out = groups[i].name, .g = &groups[i]};
	}
	if (r) {
		r = r == -ENOMEM ? out_fail(x, r) : in_fail(x, plen ? path : ".", "merge", r);
		goto out;
	}
	qsort(items, n, sizeof(*items), cmp_items);
	/* The opaque marker goes first: consumers apply it before the layer's entries. */
	if ((d.opaque && !merged) || opq_first) {
		if (!opq_st) { /* a mark, not an entry: the directory's owner and time */
			if (fstat(dfd >= 0 ? dfd : low->d[0].fd, &dst) < 0) {
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
		struct lw_found *lf = items[i].lf, uf;
		size_t len = strlen(items[i].out);
		bool redirected = false;
		if (i && !strcmp(items[i].out, items[i - 1].out))
			continue; /* `x` as char 0/0 and `.wh.x` both: one whiteout */
		if (plen + len + 2 > cap) {
			r = in_fail(x, items[i].out, "export (path too long)", -ENAMETOOLONG);
			break;
		}
		snprintf(path + plen, cap - plen, "%s%s", plen ? "/" : "", items[i].out);
		size_t clen = plen + len + (plen ? 1 : 0);
		if (e && e->kind == LW_WHITEOUT) {
			r = write_marker(x, path, &e->st, e->st.st_mode & 07777);
			continue;
		}
		if (items[i].g) {
			const struct ig_name *g = items[i].g;
			r = g->entry ? export_object(x, g->edfd, g->entry, &g->est, -1, path)
				     : export_object(x, g->f.dirs.d[0].fd, ".", &g->f.st, -1, path);
			if (r == 0 && !g->entry)
				r = export_tree(x, -1, &g->f.dirs, false, false, path, clen, cap);
			r = r > 0 ? 0 : r;
			continue;
		}
		if (lf) { /* from the lower layers: a directory's metadata is its top layer's */
			bool dir = lf->dirs.n > 0;
			int edfd;
			const char *entry;
			struct stat est;
			int m = dir || !x->ix ? 0
					      : ig_member(x->ix, lf->pfd, lf->name, &lf->st, &edfd,
							  &entry, &est);
			if (m > 0) /* a name of a group: the index entry shows */
				r = export_object(x, edfd, entry, &est, -1, path);
			else if (m < 0)
				r = in_fail(x, path, "look up in the index", m);
			else
				r = export_object(x, dir ? lf->dirs.d[0].fd : lf->pfd,
						  dir ? "." : lf->name, &lf->st, lf->datafd, path);
			if (r == 0 && dir)
				r = export_tree(x, -1, &lf->dirs, true, false, path, clen, cap);
			r = r > 0 ? 0 : r;
			continue;
		}
		bool mc = S_ISREG(e->st.st_mode) && lw_is_metacopy(dfd, e->name);
		if (!S_ISDIR(e->st.st_mode) && !mc) {
			r = export_object(x, dfd, e->name, &e->st, -1, path);
			r = r > 0 ? 0 : r;
			continue;
		}
		if ((r = upper_below(x, dfd, e, low, mc, path, &redirected, &uf)))
			continue;
		r = export_object(x, dfd, e->name, &e->st, uf.datafd, path);
		if (r == 0 && S_ISDIR(e->st.st_mode)) {
			int cfd = lw_open_dir(dfd, e->name);
			if (cfd < 0) {
				r = in_fail(x, path, "open", cfd);
			} else {
				/* below a redirect the directory is written whole */
				bool m = merged || redirected;
				r = export_tree(x, cfd, &uf.dirs, m, redirected && !merged, path,
						clen, cap);
				close(cfd);
			}
		}
		r = r > 0 ? 0 : r;
		lw_found_free(&uf);
	}
out:
	path[plen] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (!items[i].g) /* a group's name is its */
			free(items[i].out);
		if (items[i].lf) {
			lw_found_free(items[i].lf);
			free(items[i].lf);
		}
	}
	free(items);
	ig_names_free(groups, ngroups);
	lw_dir_free(&d);
	return r;
}

/* The lower layers' roots, top first: what redirects and metacopy files are resolved in. */
static int open_lowers(struct exporter *x, const char **lowers, size_t n)
{
	x->roots.d = calloc(n + 1, sizeof(*x->roots.d));
	if (!x->roots.d) {
		ovl_log(LOG_ERR, "export: out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		int fd = open(lowers[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0) {
			if (errno == ENOTDIR)
				ovl_log(LOG_ERR, "export: the lower layer '%s' is not a directory",
					lowers[i]);
			else
				ovl_log(LOG_ERR, "export: cannot open the lower layer '%s': %s",
					lowers[i], strerror(errno));
			lw_stack_free(&x->roots);
			return -1;
		}
		int op = lw_lower_opaque(fd, ".");
		x->roots.d[x->roots.n++] =
		    (struct lw_ldir){.fd = fd, .layer = i, .xwh = op == OVL_OPAQUE_XWHITEOUTS};
	}
	return 0;
}

static int usage_error(const char *fmt, const char *arg)
{
	char msg[512];

	snprintf(msg, sizeof(msg), fmt, arg);
	ovl_log(LOG_ERR,
		"export: %s (usage: ovlfs export UPPERDIR [LOWERDIR...] [-w WORKDIR] [-o FILE|-] "
		"[-z])",
		msg);
	return 1;
}

int ovl_export_main(int argc, char **argv)
{
	const char *upper = NULL, *out_name = NULL, *workdir = NULL;
	bool gzip = false, dashdash = false;
	struct exporter x = {0};
	struct ovl_archive_out o;
	char *path, *quoted = NULL;
	int ufd, r;
	const size_t cap = 1 << 16;
	const char **lowers = calloc((size_t)argc, sizeof(*lowers));
	size_t nlowers = 0;

	if (!lowers) {
		ovl_log(LOG_ERR, "export: out of memory");
		return 1;
	}

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (dashdash || a[0] != '-' || !a[1]) {
			if (upper)
				lowers[nlowers++] = a;
			else
				upper = a;
		} else if (!strcmp(a, "--")) {
			dashdash = true;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			free(lowers);
			return fputs(export_usage, stdout) < 0 || fflush(stdout) ? 1 : 0;
		} else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
			if (++i == argc)
				return free(lowers), usage_error("%s needs a file name", a);
			out_name = argv[i];
		} else if (!strncmp(a, "-o", 2)) {
			out_name = a + 2;
		} else if (!strcmp(a, "-z") || !strcmp(a, "--gzip")) {
			gzip = true;
		} else if (!strcmp(a, "-w") || !strcmp(a, "--workdir")) {
			if (++i == argc)
				return free(lowers), usage_error("%s needs a directory", a);
			workdir = argv[i];
		} else {
			return free(lowers), usage_error("unknown option '%s'", a);
		}
	}
	if (!upper) {
		free(lowers);
		return usage_error("%s", "no upper directory given");
	}
	x.upper = upper;
	if (open_lowers(&x, lowers, nlowers) < 0) {
		free(lowers);
		return 1;
	}
	free(lowers);
	ufd = open(upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ufd < 0) {
		if (errno == ENOTDIR)
			ovl_log(LOG_ERR, "export: the upper layer '%s' is not a directory", upper);
		else
			ovl_log(LOG_ERR, "export: cannot open the upper layer '%s': %s", upper,
				strerror(errno));
		lw_stack_free(&x.roots);
		return 1;
	}
	if (ig_load("export", upper, ufd, workdir, &x.roots, &x.ix) < 0) {
		close(ufd);
		lw_stack_free(&x.roots);
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
	if (ovl_archive_open(out_name, &o) < 0) {
		ovl_archive_close(out_name, &o, false);
		close(ufd);
		free(quoted);
		lw_stack_free(&x.roots);
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
		r = export_tree(&x, ufd, &x.roots, false, false, path, 0, cap);
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
	ig_free(x.ix);
	lw_stack_free(&x.roots);
	if (ovl_archive_close(out_name, &o, r == 0) < 0)
		r = -1;
	free(quoted);
	return r ? 1 : 0;
}
