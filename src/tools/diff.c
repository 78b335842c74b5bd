/* `ovlfs diff UPPERDIR [LOWERDIR...]`: the changes an upper layer makes, one line each, sorted
 * by path, as `podman diff` prints them: `A /path` added, `C /path` changed, `D /path` deleted.
 *
 * With lower layers (top first) every upper object is compared with the lower stack as ovlfs
 * merges it: C if the path is visible below, else A; a whiteout is D if it hides something;
 * below an opaque upper directory every lower entry the upper does not put back is D.
 * Without lower layers the upper alone decides: a whiteout is D; an object carrying
 * overlay.origin (written at copy-up by the kernel) is C; so is a directory that is opaque
 * (made over a deleted name) or holds a whiteout or a C entry (its path must exist below);
 * anything else is A. */
#include "subcommands.h"
#include "layer_walk.h"
#include "cli/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char diff_usage[] =
    "usage: ovlfs diff UPPERDIR [LOWERDIR...]\n"
    "Lists the changes of the upper layer UPPERDIR over the lower layers (top first):\n"
    "'A /path' added, 'C /path' changed, 'D /path' deleted, sorted by path.\n";

struct change {
	char kind;
	char *path;
};

struct differ {
	const char *upper;
	bool have_lowers;
	struct change *ch;
	size_t n, cap;
};

/* A merged lower directory: the layers' directories of one path, top first. */
struct lower_dir {
	int fd;
	bool xwh; /* marked opaque="x": may hold xattr whiteouts */
};

struct lset {
	struct lower_dir *d;
	size_t n;
};

static void lset_free(struct lset *l)
{
	for (size_t i = 0; i < l->n; i++)
		close(l->d[i].fd);
	free(l->d);
	l->d = NULL;
	l->n = 0;
}

/* path: relative to the upper layer ("" or "/a/b"); name: "" or an entry in it */
static int fail(struct differ *x, const char *path, const char *name, const char *what, int r)
{
	ovl_log(LOG_ERR, "diff: cannot %s '%s%s%s%s': %s", what, x->upper, path, name[0] ? "/" : "",
		name, strerror(-r));
	return -1;
}

static int add_change(struct differ *x, char kind, const char *dir, const char *name)
{
	if (x->n == x->cap) {
		struct change *c =
		    realloc(x->ch, (x->cap = x->cap ? 2 * x->cap : 256) * sizeof(*c));
		if (!c)
			return fail(x, "", "", "list the changes of", -ENOMEM);
		x->ch = c;
	}
	if (asprintf(&x->ch[x->n].path, "%s/%s", dir, name) < 0)
		return fail(x, "", "", "list the changes of", -ENOMEM);
	x->ch[x->n++].kind = kind;
	return 0;
}

/* Looks `name` up in the merged lower directory l, as ovlfs's lookup does: 0 absent (or
 * whited out), 1 a non-directory, 2 a directory (*out: its merged layers). -errno on error. */
static int lower_lookup(const struct lset *l, const char *name, struct lset *out)
{
	int kind = 0;

	out->d = NULL;
	out->n = 0;
	for (size_t i = 0; i < l->n; i++) {
		struct stat st;
		if (fstatat(l->d[i].fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT || errno == ENAMETOOLONG)
				continue;
			lset_free(out);
			return -errno;
		}
		if (ovl_is_whiteout_stat(&st) ||
		    (l->d[i].xwh && lw_is_xwhiteout(l->d[i].fd, name, &st)))
			break;
		if (!S_ISDIR(st.st_mode)) {
			/* a non-directory is the object on top; below a directory it ends the merge
			 */
			if (!kind)
				kind = 1;
			break;
		}
		struct lower_dir *nd = realloc(out->d, (out->n + 1) * sizeof(*nd));
		int fd = nd ? lw_open_dir(l->d[i].fd, name) : -ENOMEM;
		if (nd)
			out->d = nd;
		if (fd < 0) {
			lset_free(out);
			return fd;
		}
		int op = lw_lower_opaque(l->d[i].fd, name);
		out->d[out->n++] = (struct lower_dir){.fd = fd, .xwh = op == OVL_OPAQUE_XWHITEOUTS};
		kind = 2;
		if (op == OVL_OPAQUE_YES)
			break;
	}
	return kind;
}

struct lname {
	char *name;
	size_t layer;
	bool hidden;
};

static int cmp_lname(const void *a, const void *b)
{
	const struct lname *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : (x->layer > y->layer) - (x->layer < y->layer);
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const struct lw_entry *)a)->name, ((const struct lw_entry *)b)->name);
}

/* Reports D for every name visible in the merged lower directory l that the upper
 * directory d does not hold as an object (d hides them all: it or an ancestor is opaque). */
static int report_hidden(struct differ *x, const struct lset *l, const struct lw_dir *d,
			 const char *dir)
{
	struct lname *all = NULL;
	size_t n = 0;
	int r = 0;

	for (size_t i = 0; i < l->n && !r; i++) {
		char **names;
		size_t k;
		if ((r = lw_list_names(l->d[i].fd, &names, &k)) < 0)
			break;
		struct lname *na = realloc(all, (n + k + 1) * sizeof(*na));
		if (!na) {
			lw_free_names(names, k);
			r = -ENOMEM;
			break;
		}
		all = na;
		for (size_t j = 0; j < k; j++) {
			struct stat st;
			bool wh = false;
			if (fstatat(l->d[i].fd, names[j], &st, AT_SYMLINK_NOFOLLOW) == 0)
				wh = ovl_is_whiteout_stat(&st) ||
				     (l->d[i].xwh && lw_is_xwhiteout(l->d[i].fd, names[j], &st));
			all[n++] = (struct lname){.name = names[j], .layer = i, .hidden = wh};
		}
		free(names);
	}
	if (r) {
		for (size_t i = 0; i < n; i++)
			free(all[i].name);
		free(all);
		return fail(x, dir, "", "read the lower layers' directory below", r);
	}
	if (n)
		qsort(all, n, sizeof(*all), cmp_lname);
	for (size_t i = 0; i < n && !r; i++) {
		if (i && !strcmp(all[i].name, all[i - 1].name))
			continue; /* the top-most occurrence decides */
		if (all[i].hidden)
			continue;
		struct lw_entry key = {.name = all[i].name};
		const struct lw_entry *u = bsearch(&key, d->e, d->n, sizeof(*d->e), cmp_entry);
		if (!u || u->kind != LW_OBJECT)
			r = add_change(x, 'D', dir, all[i].name);
	}
	for (size_t i = 0; i < n; i++)
		free(all[i].name);
	free(all);
	return r;
}

static bool has_origin(int dfd, const char *name)
{
	return lw_getxattr(dfd, name, OVL_XATTR_PREFIX OVL_X_ORIGIN, NULL, 0) >= 0 ||
	       lw_getxattr(dfd, name, OVL_UXATTR_PREFIX OVL_X_ORIGIN, NULL, 0) >= 0;
}

/* The upper directory open at dfd, at path `dir` ("" for the root), over the merged lower
 * directory l. hidden: an ancestor is opaque. *below: (without lowers) whether its contents
 * show that the directory exists below. *opaque: its own mark. */
static int walk(struct differ *x, int dfd, const char *dir, const struct lset *l, bool hidden,
		bool *below, bool *opaque)
{
	struct lw_dir d;
	int r = lw_read_upper_dir(dfd, &d);

	*below = false;
	if (r)
		return fail(x, dir, "", "read the directory", r);
	*opaque = d.opaque;
	hidden = hidden || d.opaque;
	for (size_t i = 0; i < d.n && !r; i++) {
		const struct lw_entry *e = &d.e[i];
		struct lset cl = {0};
		int kind = 0;

		if (e->kind == LW_WHITEOUT) {
			*below = true;
			if (!x->have_lowers)
				r = add_change(x, 'D', dir, e->hidden);
			else if (!hidden && (kind = lower_lookup(l, e->hidden, &cl)) > 0)
				r = add_change(x, 'D', dir, e->hidden);
			else if (kind < 0)
				r = fail(x, dir, e->hidden, "look up below", kind);
			lset_free(&cl);
			continue;
		}
		if (e->kind != LW_OBJECT)
			continue;
		if (x->have_lowers && (kind = lower_lookup(l, e->name, &cl)) < 0) {
			r = fail(x, dir, e->name, "look up below", kind);
			break;
		}
		bool changed = x->have_lowers ? kind > 0 : has_origin(dfd, e->name);
		if (S_ISDIR(e->st.st_mode)) {
			char *sub;
			bool cbelow = false, copaque = false;
			int cfd = lw_open_dir(dfd, e->name);
			if (cfd < 0) {
				lset_free(&cl);
				r = fail(x, dir, e->name, "open", cfd);
				break;
			}
			if (asprintf(&sub, "%s/%s", dir, e->name) < 0) {
				r = fail(x, dir, e->name, "walk", -ENOMEM);
			} else {
				r = walk(x, cfd, sub, &cl, hidden, &cbelow, &copaque);
				free(sub);
			}
			close(cfd);
			if (!x->have_lowers)
				changed = changed || cbelow || copaque;
		}
		lset_free(&cl);
		if (!r) {
			r = add_change(x, changed ? 'C' : 'A', dir, e->name);
			*below = *below || changed;
		}
	}
	if (!r && x->have_lowers && hidden && l->n)
		r = report_hidden(x, l, &d, dir);
	lw_dir_free(&d);
	return r;
}

static int cmp_change(const void *a, const void *b)
{
	const struct change *x = a, *y = b;
	int c = strcmp(x->path, y->path);
	return c ? c : x->kind - y->kind;
}

int ovl_diff_main(int argc, char **argv)
{
	struct differ x = {0};
	struct lset roots = {0};
	const char *upper = NULL;
	bool dashdash = false, below, opaque;
	int ufd = -1, r = 0;

	roots.d = calloc((size_t)argc, sizeof(*roots.d));
	if (!roots.d) {
		ovl_log(LOG_ERR, "diff: out of memory");
		return 1;
	}
	for (int i = 1; i < argc && !r; i++) {
		const char *a = argv[i];
		if (!dashdash && !strcmp(a, "--")) {
			dashdash = true;
		} else if (!dashdash && (!strcmp(a, "-h") || !strcmp(a, "--help"))) {
			lset_free(&roots);
			return fputs(diff_usage, stdout) < 0 || fflush(stdout) ? 1 : 0;
		} else if (!dashdash && a[0] == '-' && a[1]) {
			ovl_log(LOG_ERR,
				"diff: unknown option '%s' (usage: ovlfs diff UPPERDIR "
				"[LOWERDIR...])",
				a);
			r = -1;
		} else if (!upper) {
			upper = a;
		} else {
			int fd = open(a, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (fd < 0) {
				if (errno == ENOTDIR)
					ovl_log(LOG_ERR,
						"diff: the lower layer '%s' is not a directory", a);
				else
					ovl_log(LOG_ERR,
						"diff: cannot open the lower layer '%s': %s", a,
						strerror(errno));
				r = -1;
				break;
			}
			int op = lw_lower_opaque(fd, ".");
			roots.d[roots.n++] =
			    (struct lower_dir){.fd = fd, .xwh = op == OVL_OPAQUE_XWHITEOUTS};
		}
	}
	if (!r && !upper) {
		ovl_log(LOG_ERR, "diff: no upper directory given (usage: ovlfs diff UPPERDIR "
				 "[LOWERDIR...])");
		r = -1;
	}
	if (!r) {
		ufd = open(upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (ufd < 0) {
			if (errno == ENOTDIR)
				ovl_log(LOG_ERR, "diff: the upper layer '%s' is not a directory",
					upper);
			else
				ovl_log(LOG_ERR, "diff: cannot open the upper layer '%s': %s",
					upper, strerror(errno));
			r = -1;
		}
	}
	x.upper = upper;
	x.have_lowers = roots.n > 0;
	if (!r)
		r = walk(&x, ufd, "", &roots, false, &below, &opaque);
	if (!r) {
		if (x.n)
			qsort(x.ch, x.n, sizeof(*x.ch), cmp_change);
		for (size_t i = 0; i < x.n; i++) {
			/* one line per path: an object and a whiteout of its name show the object
			 */
			if (i && !strcmp(x.ch[i].path, x.ch[i - 1].path))
				continue;
			printf("%c %s\n", x.ch[i].kind, x.ch[i].path);
		}
		if (fflush(stdout) != 0 || ferror(stdout)) {
			ovl_log(LOG_ERR, "diff: cannot write to standard output: %s",
				strerror(errno));
			r = -1;
		}
	}
	for (size_t i = 0; i < x.n; i++)
		free(x.ch[i].path);
	free(x.ch);
	lset_free(&roots);
	if (ufd >= 0)
		close(ufd);
	return r ? 1 : 0;
}
