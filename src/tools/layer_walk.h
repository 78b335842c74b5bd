/* Reading a layer directory for `ovlfs export` and `ovlfs diff`: entries sorted by name, each
 * read relative to its directory's fd without following symlinks (a walk never leaves the
 * layer), and classified by the whiteout and opaque forms found in the wild. */
#ifndef OVLFS_LAYER_WALK_H
#define OVLFS_LAYER_WALK_H

#include "engine/format.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

enum lw_kind {
	LW_OBJECT,   /* a file, directory, link, ... of the layer */
	LW_WHITEOUT, /* hides `hidden` below: char 0/0, an xattr whiteout, or `.wh.<hidden>` */
	LW_OPQ_MARK, /* a `.wh..wh..opq` entry: its directory is opaque */
	LW_META,     /* another `.wh..wh.*` name (aufs bookkeeping): not content */
};

struct lw_entry {
	char *name;
	const char *hidden; /* LW_WHITEOUT: the name it hides (points into name) */
	enum lw_kind kind;
	struct stat st;
};

struct lw_dir {
	struct lw_entry *e; /* sorted by name (bytes) */
	size_t n;
	bool opaque; /* hides everything below: a mark or a `.wh..wh..opq` entry */
};

/* Reads and classifies the upper-layer directory open at dfd (O_RDONLY|O_DIRECTORY).
 * 0 or -errno. */
int lw_read_upper_dir(int dfd, struct lw_dir *out);
void lw_dir_free(struct lw_dir *d);
/* Whether the upper directory d holds name as an object or a whiteout in either form. */
bool lw_dir_hides(const struct lw_dir *d, const char *name);

/* Sorted names of the directory open at dfd (no "." and ".."). 0 or -errno. */
int lw_list_names(int dfd, char ***names, size_t *n);
void lw_free_names(char **names, size_t n);

/* Opens dfd/name as a directory without following a symlink. fd or -errno. */
int lw_open_dir(int dfd, const char *name);

/* getxattr / listxattr of dfd/name, not following a final symlink. Size or -errno. */
long lw_getxattr(int dfd, const char *name, const char *xname, void *buf, size_t size);
long lw_listxattr(int dfd, const char *name, char *buf, size_t size);

/* The value of xname on dfd/name in a malloc'd buffer (*val, *len). 0 or -errno. */
int lw_getxattr_alloc(int dfd, const char *name, const char *xname, char **val, size_t *len);

/* The kernel's reading of a lower directory's mark, as ovlfs mounts it: overlay.opaque read
 * with size 1, 'y' (opaque), 'x' (may hold xattr whiteouts) or 0. */
int lw_lower_opaque(int dfd, const char *name);
/* A kernel 6.7+ xattr whiteout: zero-size regular file with trusted.overlay.whiteout. */
bool lw_is_xwhiteout(int dfd, const char *name, const struct stat *st);

/* The lower layers' directories of one path, top first, as a mount merges them. */
struct lw_ldir {
	int fd;
	size_t layer; /* 0: the top lower layer */
	bool xwh;     /* marked opaque="x": may hold xattr whiteouts */
};

struct lw_stack {
	struct lw_ldir *d;
	size_t n;
};

void lw_stack_free(struct lw_stack *s);
/* Sorted, distinct names of every directory of the stack (free with lw_free_names). 0 or
 * -errno. */
int lw_stack_names(const struct lw_stack *l, char ***out, size_t *nout);
/* strcmp of two char * (qsort, bsearch). */
int lw_cmp_names(const void *a, const void *b);

/* The redirect of dfd/name (overlay.redirect, trusted or user), checked as the kernel checks
 * it: NUL-terminated in *out (free it) and 1; 0 if none; -EINVAL for an invalid one (empty,
 * a '/' in a relative one, an empty, "." or ".." component, longer than PATH_MAX). */
int lw_read_redirect(int dfd, const char *name, char **out);
/* Whether dfd/name carries overlay.origin (trusted or user): copied up by an overlay, or
 * (the upper root) mounted with the index. */
bool lw_has_origin(int dfd, const char *name);
/* Whether dfd/name carries overlay.metacopy (trusted or user). */
bool lw_is_metacopy(int dfd, const char *name);

struct lw_found {
	struct lw_stack dirs; /* a directory: its merged layers */
	int pfd;	      /* a non-directory: its directory (owned, -1 if none) */
	char *name;	      /* and its name there */
	struct stat st;	      /* the object on top */
	int datafd;	      /* a metacopy file: its data, open (owned), else -1 */
};

/* Looks up `name` below the merged lower directory `parent` as the kernel's lookup does:
 * whiteouts, opaque directories, xattr whiteouts and redirects in the lower layers are
 * followed; `redirect` (an upper directory's, or a metacopy file's, checked) replaces the
 * name, an absolute one resolved from `roots` (every layer's root, top first). metacopy:
 * the upper object is a metacopy file whose data is wanted (f->datafd). Every path is walked
 * one component at a time beneath the layer roots, never through a symlink. 0 absent,
 * 1 a non-directory, 2 a directory, -errno. lw_found_free frees *f in every case. */
int lw_lookup(const struct lw_stack *parent, const struct lw_stack *roots, const char *name,
	      const char *redirect, bool metacopy, struct lw_found *f);
void lw_found_free(struct lw_found *f);

#endif
