/* `ovlfs diff UPPERDIR [LOWERDIR...]`: the changes an upper layer makes, one line each, sorted
 * by path, as `podman diff` prints them: `A /path` added, `C /path` changed, `D /path` deleted.
 *
 * With lower layers (top first) every upper object is compared with the lower stack as ovlfs
 * merges it: C if the path is visible below, else A; a whiteout is D if it hides something;
 * below an opaque upper directory every lower entry the upper does not put back is D.
 * Without lower layers the upper alone decides: a whiteout is D; an object carrying
 * overlay.origin (written at copy-up by the kernel) is C; so is a directory that is opaque
 * (made over a deleted name) or holds a whiteout or a C entry (its path must exist below);
 * anything else is A. A directory the kernel renamed (overlay.redirect) is reported as
 * export writes it: whole at its new path (walk_merged); a metacopy file is C. */
#include "subcommands.h"
#include "layer_walk.h"
#include "index_groups.h"
#include "cli/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char diff_usage[] =
    "usage: ovlfs diff UPPERDIR [LOWERDIR...] [-w WORKDIR]\n"
    "Lists the changes of the upper layer UPPERDIR over the lower layers (top first):\n"
    "'A /path' added, 'C /path' changed, 'D /path' deleted, sorted by path. The work\n"
    "directory is needed when UPPERDIR was mounted with the index (ovlfs's default).\n";

struct change {
	char kind;
	char *path;
};

struct differ {
	const char *upper;
	bool have_lowers;
	struct lw_stack roots; /* the lower layers' roots, top first */
	struct ig_index *ix;   /* hard-link groups of the work directory's index, or NULL */
	struct change *ch;
	size_t n, cap;
};

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

/* Looks `name` (or the upper directory's redirect rd) up below the merged lower directory
 * l as the mount's lookup does: 0 absent (or whited out), 1 a non-directory, 2 a directory
 * (*out: its merged layers). -errno on error. */
static int lower_lookup(const struct differ *x, const struct lw_stack *l, const char *name,
			const char *rd, struct lw_stack *out)
{
	struct lw_found f;
	int kind = lw_lookup(l, &x->roots, name, rd, false, &f);

	*out = f.dirs;
	f.dirs = (struct lw_stack){0};
	lw_found_free(&f);
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
static int report_hidden(struct differ *x, const struct lw_stack *l, const struct lw_dir *d,
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

/* The upper directory's redirect, checked: 0 (*rd NULL: none, else owned) or -1 reported. */
static int read_redirect(struct differ *x, int dfd, const char *dir, const char *name, char **rd)
{
	int r = lw_read_redirect(dfd, name, rd);

	if (r == -EINVAL) {
		ovl_log(LOG_ERR,
			"diff: invalid redirect on '%s%s/%s' (empty, a \"..\" or empty "
			"component, or too long): refused",
			x->upper, dir, name);
		return -1;
	}
	return r < 0 ? fail(x, dir, name, "read the redirect of", r) : 0;
}

/* Whether the upper directory d holds name as an object or a whiteout in either form. */
static bool upper_has(const struct lw_dir *d, const char *name, bool object_only)
{
	for (size_t i = 0; i < d->n; i++) {
		if (d->e[i].kind == LW_OBJECT && !strcmp(d->e[i].name, name))
			return true;
		if (!object_only && d->e[i].kind == LW_WHITEOUT && !strcmp(d->e[i].hidden, name))
			return true;
	}
	return false;
}

/* Inside a redirected directory, written whole at its new path as export writes it: the
 * upper directory dfd (-1: none) over the lower directory it came from (content), compared
 * with what the lower layers hold at the new path (at): each entry of the merged contents
 * is C if its path is visible there, else A; what `at` holds beyond them is D. */
static int walk_merged(struct differ *x, int dfd, const struct lw_stack *content,
		       const struct lw_stack *at, const char *dir)
{
	struct lw_dir d = {0};
	char **names = NULL, **shown = NULL;
	size_t nn = 0, ns = 0;
	int r = dfd >= 0 ? lw_read_upper_dir(dfd, &d) : 0;

	if (r)
		return fail(x, dir, "", "read the directory", r);
	if (!d.opaque && (r = lw_stack_names(content, &names, &nn)) < 0) {
		lw_dir_free(&d);
		return fail(x, dir, "", "read the lower layers' directory of", r);
	}
	shown = calloc(d.n + nn + 1, sizeof(*shown));
	if (!shown)
		r = fail(x, dir, "", "walk", -ENOMEM);
	/* the merged entries: the upper's objects, then what shows from below */
	for (size_t i = 0; i < d.n + nn && !r; i++) {
		bool up = i < d.n;
		const char *name = up ? d.e[i].name : names[i - d.n];
		struct lw_stack cs = {0}, as = {0};
		char *sub = NULL, *rd = NULL;
		int ck = 0, ak, cfd = -1;

		if (up && d.e[i].kind != LW_OBJECT)
			continue;
		if (!up && upper_has(&d, name, false))
			continue;
		if (up && S_ISDIR(d.e[i].st.st_mode) && !d.opaque)
			r = read_redirect(x, dfd, dir, name, &rd);
		if (!r && (up ? S_ISDIR(d.e[i].st.st_mode) && !d.opaque : true))
			ck = lower_lookup(x, content, name, rd, &cs);
		free(rd);
		if (r || ck < 0) {
			r = r ? r : fail(x, dir, name, "look up below", ck);
			break;
		}
		if (!up && ck == 0)
			continue; /* whited out below */
		shown[ns++] = (char *)name;
		if ((ak = lower_lookup(x, at, name, NULL, &as)) < 0) {
			lw_stack_free(&cs);
			r = fail(x, dir, name, "look up below", ak);
			break;
		}
		if (up ? S_ISDIR(d.e[i].st.st_mode) : ck == 2) {
			if (up && (cfd = lw_open_dir(dfd, name)) < 0)
				r = fail(x, dir, name, "open", cfd);
			else if (asprintf(&sub, "%s/%s", dir, name) < 0)
				r = fail(x, dir, name, "walk", -ENOMEM);
			else
				r = walk_merged(x, cfd, &cs, &as, sub);
			free(sub);
			if (cfd >= 0)
				close(cfd);
		}
		lw_stack_free(&cs);
		lw_stack_free(&as);
		if (!r)
			r = add_change(x, ak > 0 ? 'C' : 'A', dir, name);
	}
	if (!r && at->n) { /* the new path hides what the lower layers hold there */
		char **below;
		size_t nb;
		if ((r = lw_stack_names(at, &below, &nb)) < 0) {
			r = fail(x, dir, "", "read the lower layers' directory of", r);
		} else {
			if (ns)
				qsort(shown, ns, sizeof(*shown), lw_cmp_names);
			for (size_t i = 0; i < nb && !r; i++) {
				struct lw_stack as = {0};
				if (ns &&
				    bsearch(&below[i], shown, ns, sizeof(*shown), lw_cmp_names))
					continue;
				int ak = lower_lookup(x, at, below[i], NULL, &as);
				lw_stack_free(&as);
				if (ak < 0)
					r = fail(x, dir, below[i], "look up below", ak);
				else if (ak > 0)
					r = add_change(x, 'D', dir, below[i]);
			}
			lw_free_names(below, nb);
		}
	}
	free(shown);
	lw_free_names(names, nn);
	lw_dir_free(&d);
	return r;
}

/* A redirected directory name at dir (its upper directory open at cfd, at: the lower layers
 * at its new path): its contents are those below at the redirect rd, resolved from the
 * parent's lower directory l (a relative rd) or the layer roots. */
static int walk_redirected(struct differ *x, int cfd, const struct lw_stack *l, bool hidden,
			   const char *name, const char *rd, const struct lw_stack *at,
			   const char *sub)
{
	struct lw_stack content = {0}, none = {0};
	/* below an opaque directory a relative redirect finds nothing, as in the kernel */
	int k = lower_lookup(x, hidden && rd[0] != '/' ? &none : l, name, rd, &content);

	if (k < 0)
		return fail(x, sub, "", "look up the redirect of", k);
	int r = walk_merged(x, cfd, &content, at, sub);
	lw_stack_free(&content);
	return r;
}

/* ig_walk's visitor: a lower name of a group changed through another name is changed. */
static int group_changed(void *ctx, const char *path, const struct ig_name *g)
{
	return g->entry && add_change(ctx, 'C', "", path) < 0 ? 1 : 0;
}

/* The group names the lower directory l shows at dir beside the upper directory d. */
static int report_groups(struct differ *x, const struct lw_stack *l, const struct lw_dir *d,
			 const char *dir)
{
	const size_t cap = 1 << 16;
	char *path = malloc(cap);
	int r;

	if (!path)
		return fail(x, dir, "", "walk", -ENOMEM);
	snprintf(path, cap, "%s", dir[0] ? dir + 1 : "");
	r = ig_walk(x->ix, &x->roots, l, d, path, strlen(path), cap, group_changed, x);
	free(path);
	if (r > 0) /* reported */
		return -1;
	return r < 0 ? fail(x, dir, "", "look up the index's names below", r) : 0;
}

/* The upper directory open at dfd, at path `dir` ("" for the root), over the merged lower
 * directory l. hidden: an ancestor is opaque. *below: (without lowers) whether its contents
 * show that the directory exists below. *opaque: its own mark. */
static int walk(struct differ *x, int dfd, const char *dir, const struct lw_stack *l, bool hidden,
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
		struct lw_stack cl = {0};
		int kind = 0;

		if (e->kind == LW_WHITEOUT) {
			*below = true;
			if (!x->have_lowers)
				r = add_change(x, 'D', dir, e->hidden);
			else if (!hidden && (kind = lower_lookup(x, l, e->hidden, NULL, &cl)) > 0)
				r = add_change(x, 'D', dir, e->hidden);
			else if (kind < 0)
				r = fail(x, dir, e->hidden, "look up below", kind);
			lw_stack_free(&cl);
			continue;
		}
		if (e->kind != LW_OBJECT)
			continue;
		if (x->have_lowers && (kind = lower_lookup(x, l, e->name, NULL, &cl)) < 0) {
			r = fail(x, dir, e->name, "look up below", kind);
			break;
		}
		bool changed = x->have_lowers
				   ? kind > 0
				   : lw_has_origin(dfd, e->name) ||
					 (S_ISREG(e->st.st_mode) && lw_is_metacopy(dfd, e->name));
		if (S_ISDIR(e->st.st_mode)) {
			char *sub, *rd = NULL;
			bool cbelow = false, copaque = false;
			int cfd = lw_open_dir(dfd, e->name);
			if (cfd < 0) {
				lw_stack_free(&cl);
				r = fail(x, dir, e->name, "open", cfd);
				break;
			}
			if (x->have_lowers && (r = read_redirect(x, dfd, dir, e->name, &rd)) < 0) {
				close(cfd);
				lw_stack_free(&cl);
				break;
			}
			if (asprintf(&sub, "%s/%s", dir, e->name) < 0) {
				r = fail(x, dir, e->name, "walk", -ENOMEM);
			} else if (rd) {
				r = walk_redirected(x, cfd, l, hidden, e->name, rd, &cl, sub);
				free(sub);
			} else {
				r = walk(x, cfd, sub, &cl, hidden, &cbelow, &copaque);
				free(sub);
			}
			free(rd);
			close(cfd);
			if (!x->have_lowers)
				changed = changed || cbelow || copaque;
		}
		lw_stack_free(&cl);
		if (!r) {
			r = add_change(x, changed ? 'C' : 'A', dir, e->name);
			*below = *below || changed;
		}
	}
	if (!r && x->have_lowers && hidden && l->n)
		r = report_hidden(x, l, &d, dir);
	if (!r && x->ix && !hidden && l->n)
		r = report_groups(x, l, &d, dir);
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
	struct lw_stack roots = {0};
	const char *upper = NULL, *workdir = NULL;
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
			lw_stack_free(&roots);
			return fputs(diff_usage, stdout) < 0 || fflush(stdout) ? 1 : 0;
		} else if (!dashdash && (!strcmp(a, "-w") || !strcmp(a, "--workdir"))) {
			if (++i == argc) {
				ovl_log(LOG_ERR, "diff: %s needs a directory", a);
				r = -1;
			} else {
				workdir = argv[i];
			}
		} else if (!dashdash && a[0] == '-' && a[1]) {
			ovl_log(LOG_ERR,
				"diff: unknown option '%s' (usage: ovlfs diff UPPERDIR "
				"[LOWERDIR...] [-w WORKDIR])",
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
			roots.d[roots.n] = (struct lw_ldir){
			    .fd = fd, .layer = roots.n, .xwh = op == OVL_OPAQUE_XWHITEOUTS};
			roots.n++;
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
	x.roots = roots;
	if (!r && ig_load("diff", upper, ufd, workdir, &roots, &x.ix) < 0)
		r = -1;
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
	ig_free(x.ix);
	lw_stack_free(&roots);
	if (ufd >= 0)
		close(ufd);
	return r ? 1 : 0;
}
