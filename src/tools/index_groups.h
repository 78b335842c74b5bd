/* The kernel's inode index as `ovlfs export` and `ovlfs diff` read it. A mount with the
 * index (ovlfs's default, the kernel's index=on) copies a lower file with several names up
 * once, into <workdir>/index/<hex of its origin record>, and links only the names changed
 * into the upper layer: the group's other names stay lower, yet show the index entry. An
 * upper layer alone is then not the whole change, so the tools read the index too and give
 * those names as changed, with the entry's contents and as one hard-link group. */
#ifndef OVLFS_INDEX_GROUPS_H
#define OVLFS_INDEX_GROUPS_H

#include "layer_walk.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

struct ig_index;

/* The index for a tool's reading of the upper layer open at ufd (named upper): read from
 * workdir when given (*out NULL when it is empty); refused (-1, logged) without one where
 * the upper layer was mounted with the index, or without lower layers where it holds
 * entries, since names would be missed. 0 or -1. */
int ig_load(const char *tool, const char *upper, int ufd, const char *workdir,
	    const struct lw_stack *roots, struct ig_index **out);

/* Reads <workdir>/index for the lower layers roots (top first); *out NULL when it holds no
 * entry. Lower layers holding a member are walked once here. 0, or -1 logged as `tool`. */
int ig_open(const char *tool, const char *workdir, const struct lw_stack *roots,
	    struct ig_index **out);
void ig_free(struct ig_index *ix);

/* The index entry shown by the lower non-directory pfd/name (st): 1 with its directory
 * (*edfd), name (*entry) and stat (*est, st_nlink at least 2 so that the group's names
 * stay one), 0 when it is in no group, -errno. */
int ig_member(struct ig_index *ix, int pfd, const char *name, const struct stat *st, int *edfd,
	      const char **entry, struct stat *est);

/* A name the lower layers show below an upper directory that a group touches: a
 * directory holding members (entry NULL; f->dirs its layers), or a member (f the lower
 * name; edfd/entry/est its index entry). */
struct ig_name {
	char *name;
	struct lw_found f;
	int edfd;
	const char *entry;
	struct stat est;
};

/* Those names of the merged lower directory low that the upper directory d (NULL: none)
 * neither holds nor whites out, sorted. 0 or -errno. */
int ig_names(struct ig_index *ix, const struct lw_stack *roots, const struct lw_stack *low,
	     const struct lw_dir *d, struct ig_name **out, size_t *nout);
void ig_names_free(struct ig_name *g, size_t n);

/* Called by ig_walk for each such name, a directory before its contents, with its path
 * ("a/b", no leading '/'). 0 goes on; anything else stops the walk with it. */
typedef int (*ig_visit_fn)(void *ctx, const char *path, const struct ig_name *g);

/* Visits, depth first in name order, the names ig_names gives at path (plen bytes of a
 * buffer of cap) and below. 0, a visitor's value, or -errno. */
int ig_walk(struct ig_index *ix, const struct lw_stack *roots, const struct lw_stack *low,
	    const struct lw_dir *d, char *path, size_t plen, size_t cap, ig_visit_fn visit,
	    void *ctx);

#endif
