/* Hard-link groups of the kernel's inode index, for export and diff (index_groups.h).
 *
 * An index entry is named by the hex of an origin record (its layout: engine/format.h). A
 * lower name belongs to the group when
 * name_to_handle_at gives that handle on a filesystem with that UUID: handles are only
 * compared here, never opened, so the tools need no privilege for it. */
#include "index_groups.h"
#include "cli/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

struct ig_key {
	unsigned char type;
	unsigned char len; /* of fh */
	unsigned char fh[MAX_HANDLE_SZ];
	unsigned char uuid[16];
	char *entry;
};

struct ig_dirid {
	dev_t dev;
	ino_t ino;
};

struct ig_fs {
	dev_t dev;
	unsigned char uuid[16];
};

struct ig_index {
	int dfd; /* <workdir>/index */
	struct ig_key *keys;
	size_t nkeys;
	struct ig_dirid *dirs; /* lower directories with a member below them, sorted */
	size_t ndirs, dirs_cap;
	struct ig_fs *fs; /* the lower layers' filesystems */
	size_t nfs;
};

static const unsigned char null_uuid[16];

static int cmp_key(const void *a, const void *b)
{
	const struct ig_key *x = a, *y = b;
	if (x->type != y->type)
		return x->type < y->type ? -1 : 1;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return memcmp(x->fh, y->fh, x->len);
}

static int cmp_dirid(const void *a, const void *b)
{
	const struct ig_dirid *x = a, *y = b;
	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	return (x->ino > y->ino) - (x->ino < y->ino);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* The key an entry's name spells, or false for a name that is no origin record of ours
 * (the kernel's other entries, or damage: such an entry shows through no lower name). */
static bool parse_entry(const char *name, struct ig_key *k)
{
	unsigned char b[OVL_FH_HEADER + MAX_HANDLE_SZ];
	size_t n = strlen(name);

	if (n % 2 || n / 2 < OVL_FH_HEADER || n / 2 > sizeof(b))
		return false;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hexval(name[2 * i]), lo = hexval(name[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		b[i] = (unsigned char)(hi << 4 | lo);
	}
	n /= 2;
	if (ovl_origin_check(b, n) != 0 || b[2] != n)
		return false;
	k->type = b[4];
	memcpy(k->uuid, b + OVL_FH_UUID, 16);
	k->len = (unsigned char)(n - OVL_FH_HEADER);
	memcpy(k->fh, b + OVL_FH_HEADER, k->len);
	return true;
}

static const unsigned char *uuid_of_dev(const struct ig_index *ix, dev_t dev)
{
	for (size_t i = 0; i < ix->nfs; i++)
		if (ix->fs[i].dev == dev)
			return ix->fs[i].uuid;
	return NULL;
}

/* The index entry whose record names dfd/name (on a filesystem with uuid), or NULL. */
static const struct ig_key *find_key(const struct ig_index *ix, int dfd, const char *name,
				     const unsigned char *uuid)
{
	struct {
		struct file_handle fh;
		unsigned char bytes[MAX_HANDLE_SZ];
	} h = {.fh.handle_bytes = MAX_HANDLE_SZ};
	struct ig_key k;
	int mount_id;

	if (!uuid || name_to_handle_at(dfd, name, &h.fh, &mount_id, 0) < 0 ||
	    h.fh.handle_bytes > MAX_HANDLE_SZ || h.fh.handle_type < 0 || h.fh.handle_type > 0xff)
		return NULL;
	k.type = (unsigned char)h.fh.handle_type;
	k.len = (unsigned char)h.fh.handle_bytes;
	memcpy(k.fh, h.fh.f_handle, k.len);
	const struct ig_key *hit = bsearch(&k, ix->keys, ix->nkeys, sizeof(k), cmp_key);
	if (!hit)
		return NULL;
	/* equal handles from several filesystems: the one with this UUID (a null one is what
	 * uuid=off writes, and names the handle alone) */
	while (hit > ix->keys && !cmp_key(hit - 1, &k))
		hit--;
	for (; hit < ix->keys + ix->nkeys && !cmp_key(hit, &k); hit++)
		if (!memcmp(hit->uuid, uuid, 16) || !memcmp(hit->uuid, null_uuid, 16))
			return hit;
	return NULL;
}

static int add_dirs(struct ig_index *ix, const struct ig_dirid *ids, size_t n)
{
	if (ix->ndirs + n > ix->dirs_cap) {
		size_t cap = (ix->ndirs + n) * 2;
		struct ig_dirid *d = realloc(ix->dirs, cap * sizeof(*d));
		if (!d)
			return -ENOMEM;
		ix->dirs = d;
		ix->dirs_cap = cap;
	}
	memcpy(ix->dirs + ix->ndirs, ids, n * sizeof(*ids));
	ix->ndirs += n;
	return 0;
}

/* Records the ancestors (*anc, depth of them) of every member found below dfd. */
static int scan_dir(struct ig_index *ix, int dfd, const unsigned char *uuid, struct ig_dirid **anc,
		    size_t depth, size_t *anc_cap)
{
	char **names;
	size_t n;
	int r = lw_list_names(dfd, &names, &n);
	bool marked = false;

	if (r)
		return r;
	for (size_t i = 0; i < n && !r; i++) {
		struct stat st;
		if (fstatat(dfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = errno == ENOENT ? 0 : -errno;
			continue;
		}
		if (S_ISDIR(st.st_mode)) {
			int cfd = lw_open_dir(dfd, names[i]);
			if (cfd < 0) {
				r = cfd;
				break;
			}
			if (depth == *anc_cap) {
				struct ig_dirid *a = realloc(*anc, (*anc_cap *= 2) * sizeof(*a));
				if (!a) {
					close(cfd);
					r = -ENOMEM;
					break;
				}
				*anc = a;
			}
			(*anc)[depth] = (struct ig_dirid){st.st_dev, st.st_ino};
			r = scan_dir(ix, cfd, uuid, anc, depth + 1, anc_cap);
			close(cfd);
		} else if (!marked && st.st_nlink > 1 && find_key(ix, dfd, names[i], uuid)) {
			marked = true; /* once per directory is enough */
			r = add_dirs(ix, *anc, depth);
		}
	}
	lw_free_names(names, n);
	return r;
}

void ig_free(struct ig_index *ix)
{
	if (!ix)
		return;
	for (size_t i = 0; i < ix->nkeys; i++)
		free(ix->keys[i].entry);
	free(ix->keys);
	free(ix->dirs);
	free(ix->fs);
	if (ix->dfd >= 0)
		close(ix->dfd);
	free(ix);
}

static int read_entries(struct ig_index *ix)
{
	char **names;
	size_t n;
	int r = lw_list_names(ix->dfd, &names, &n);

	if (r)
		return r;
	ix->keys = calloc(n + 1, sizeof(*ix->keys));
	if (!ix->keys)
		r = -ENOMEM;
	for (size_t i = 0; i < n && !r; i++) {
		struct ig_key *k = &ix->keys[ix->nkeys];
		struct stat st;
		if (fstatat(ix->dfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
			r = errno == ENOENT ? 0 : -errno;
		else if (!S_ISDIR(st.st_mode) && !S_ISCHR(st.st_mode) && parse_entry(names[i], k)) {
			k->entry = names[i];
			names[i] = NULL;
			ix->nkeys++;
		}
	}
	lw_free_names(names, n);
	if (!r && ix->nkeys)
		qsort(ix->keys, ix->nkeys, sizeof(*ix->keys), cmp_key);
	return r;
}

/* The lower layers' filesystems, and the directories holding members in each. */
static int scan_lowers(struct ig_index *ix, const struct lw_stack *roots)
{
	size_t cap = 64;
	struct ig_dirid *anc = malloc(cap * sizeof(*anc));
	int r = anc ? 0 : -ENOMEM;

	ix->fs = calloc(roots->n + 1, sizeof(*ix->fs));
	if (!ix->fs)
		r = -ENOMEM;
	for (size_t i = 0; i < roots->n && !r; i++) {
		struct stat st;
		struct ovl_fsuuid u = {0};
		if (fstat(roots->d[i].fd, &st) < 0) {
			r = -errno;
			break;
		}
		if (!uuid_of_dev(ix, st.st_dev)) {
			struct ig_fs *f = &ix->fs[ix->nfs++];
			f->dev = st.st_dev;
			/* a filesystem without one puts a null UUID in its records */
			if (ioctl(roots->d[i].fd, OVL_IOC_GETFSUUID, &u) == 0 &&
			    u.len == sizeof(f->uuid))
				memcpy(f->uuid, u.uuid, sizeof(f->uuid));
		}
		anc[0] = (struct ig_dirid){st.st_dev, st.st_ino};
		r = scan_dir(ix, roots->d[i].fd, uuid_of_dev(ix, st.st_dev), &anc, 1, &cap);
	}
	free(anc);
	if (!r && ix->ndirs)
		qsort(ix->dirs, ix->ndirs, sizeof(*ix->dirs), cmp_dirid);
	return r;
}

int ig_open(const char *tool, const char *workdir, const struct lw_stack *roots,
	    struct ig_index **out)
{
	struct ig_index *ix;
	int wfd = open(workdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r;

	*out = NULL;
	if (wfd < 0) {
		ovl_log(LOG_ERR, "%s: cannot open the work directory '%s': %s", tool, workdir,
			strerror(errno));
		return -1;
	}
	if (!(ix = calloc(1, sizeof(*ix)))) {
		close(wfd);
		ovl_log(LOG_ERR, "%s: out of memory", tool);
		return -1;
	}
	ix->dfd = openat(wfd, "index", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	r = ix->dfd < 0 ? -errno : 0;
	close(wfd);
	if (r == -ENOENT) { /* never mounted with the index */
		ig_free(ix);
		return 0;
	}
	if (!r)
		r = read_entries(ix);
	if (!r && ix->nkeys)
		r = scan_lowers(ix, roots);
	if (r) {
		ovl_log(LOG_ERR, "%s: cannot read the index of the work directory '%s': %s", tool,
			workdir, strerror(-r));
		ig_free(ix);
		return -1;
	}
	if (ix->nkeys)
		*out = ix;
	else
		ig_free(ix);
	return 0;
}

int ig_member(struct ig_index *ix, int pfd, const char *name, const struct stat *st, int *edfd,
	      const char **entry, struct stat *est)
{
	if (S_ISDIR(st->st_mode) || st->st_nlink < 2)
		return 0;
	const struct ig_key *k = find_key(ix, pfd, name, uuid_of_dev(ix, st->st_dev));
	if (!k)
		return 0;
	if (fstatat(ix->dfd, k->entry, est, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	/* an entry of another type is stale: the mount shows the lower object, so do we */
	if ((est->st_mode & S_IFMT) != (st->st_mode & S_IFMT))
		return 0;
	if (est->st_nlink < 2)
		est->st_nlink = 2;
	*edfd = ix->dfd;
	*entry = k->entry;
	return 1;
}

static bool holds_members(const struct ig_index *ix, const struct lw_stack *dirs)
{
	for (size_t i = 0; i < dirs->n; i++) {
		struct stat st;
		if (fstat(dirs->d[i].fd, &st) < 0)
			continue;
		struct ig_dirid k = {st.st_dev, st.st_ino};
		if (bsearch(&k, ix->dirs, ix->ndirs, sizeof(k), cmp_dirid))
			return true;
	}
	return false;
}

void ig_names_free(struct ig_name *g, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(g[i].name);
		lw_found_free(&g[i].f);
	}
	free(g);
}

int ig_names(struct ig_index *ix, const struct lw_stack *roots, const struct lw_stack *low,
	     const struct lw_dir *d, struct ig_name **out, size_t *nout)
{
	struct ig_name *g = NULL;
	char **all;
	size_t na, n = 0;
	int r = lw_stack_names(low, &all, &na);

	*out = NULL;
	*nout = 0;
	if (r)
		return r;
	for (size_t i = 0; i < na && !r; i++) {
		struct ig_name cur = {.edfd = -1};
		if (d && lw_dir_hides(d, all[i]))
			continue;
		int kind = lw_lookup(low, roots, all[i], NULL, false, &cur.f);
		int m = 0;
		if (kind == 2)
			m = holds_members(ix, &cur.f.dirs);
		else if (kind == 1)
			m = ig_member(ix, cur.f.pfd, cur.f.name, &cur.f.st, &cur.edfd, &cur.entry,
				      &cur.est);
		else
			r = kind;
		if (m <= 0) {
			r = r ? r : m;
			lw_found_free(&cur.f);
			continue;
		}
		struct ig_name *ng = realloc(g, (n + 1) * sizeof(*g));
		if (!ng) {
			lw_found_free(&cur.f);
			r = -ENOMEM;
			break;
		}
		g = ng;
		cur.name = all[i];
		all[i] = NULL;
		g[n++] = cur;
	}
	lw_free_names(all, na);
	if (r) {
		ig_names_free(g, n);
		return r;
	}
	*out = g;
	*nout = n;
	return 0;
}

int ig_walk(struct ig_index *ix, const struct lw_stack *roots, const struct lw_stack *low,
	    const struct lw_dir *d, char *path, size_t plen, size_t cap, ig_visit_fn visit,
	    void *ctx)
{
	struct ig_name *g;
	size_t n;
	int r = ig_names(ix, roots, low, d, &g, &n);

	for (size_t i = 0; i < n && !r; i++) {
		size_t len = strlen(g[i].name);
		if (plen + len + 2 > cap) {
			r = -ENAMETOOLONG;
			break;
		}
		snprintf(path + plen, cap - plen, "%s%s", plen ? "/" : "", g[i].name);
		r = visit(ctx, path, &g[i]);
		if (!r && !g[i].entry)
			r = ig_walk(ix, roots, &g[i].f.dirs, NULL, path, plen + len + !!plen, cap,
				    visit, ctx);
		path[plen] = '\0';
	}
	ig_names_free(g, n);
	return r;
}

int ig_load(const char *tool, const char *upper, int ufd, const char *workdir,
	    const struct lw_stack *roots, struct ig_index **out)
{
	*out = NULL;
	if (!workdir) {
		/* the index's mark: the upper root's origin */
		if (!lw_has_origin(ufd, "."))
			return 0;
		ovl_log(LOG_ERR,
			"%s: '%s' was mounted with the index (its root carries overlay.origin): "
			"give its work directory with -w WORKDIR, where lower hard links changed "
			"through one name are recorded",
			tool, upper);
		return -1;
	}
	if (ig_open(tool, workdir, roots, out) < 0)
		return -1;
	if (*out && !roots->n) {
		ovl_log(LOG_ERR,
			"%s: the index of '%s' holds lower hard links changed through one name: "
			"give the lower layers too",
			tool, workdir);
		ig_free(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}
