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

#endif
