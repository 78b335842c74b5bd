/* Where `ovlfs export` writes its archive: stdout, an existing non-regular file (a device,
 * a pipe) written in place, or a temporary file beside FILE renamed over it once complete,
 * so that a failed export leaves nothing half-written. */
#ifndef OVLFS_ARCHIVE_OUT_H
#define OVLFS_ARCHIVE_OUT_H

#include <stdbool.h>

struct ovl_archive_out {
	int fd;
	char *tmp; /* the temporary name, NULL when writing in place */
};

/* name NULL or "-": stdout (not a terminal). 0, or -1 with one line logged. */
int ovl_archive_open(const char *name, struct ovl_archive_out *o);
/* ok: the temporary file becomes FILE; else it is removed. 0 or -1 (logged). */
int ovl_archive_close(const char *name, struct ovl_archive_out *o, bool ok);

#endif
