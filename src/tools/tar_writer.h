/* A writer of POSIX tar archives (ustar headers, PAX extended headers where ustar falls
 * short), optionally gzip-compressed; used by `ovlfs export`. */
#ifndef OVLFS_TAR_WRITER_H
#define OVLFS_TAR_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum tar_type {
	TAR_REG = '0',
	TAR_LINK = '1',
	TAR_SYMLINK = '2',
	TAR_CHR = '3',
	TAR_BLK = '4',
	TAR_DIR = '5',
	TAR_FIFO = '6',
};

struct tar_xattr {
	const char *name;
	const void *value;
	size_t size;
};

struct tar_entry {
	const char *path; /* relative, without "./"; a directory gets its '/' added here */
	enum tar_type type;
	mode_t mode; /* permission bits (07777) */
	uint64_t uid, gid;
	int64_t mtime;	      /* seconds */
	uint64_t size;	      /* bytes of data that follow (TAR_REG only) */
	const char *linkname; /* TAR_LINK, TAR_SYMLINK */
	unsigned devmajor, devminor;
	const struct tar_xattr *xattrs; /* become SCHILY.xattr.<name> PAX records */
	size_t nxattrs;
};

struct tar_writer;

/* Writes to fd (not closed by the writer); gzip: compress the stream. 0 or -errno. */
int tar_writer_new(int fd, bool gzip, struct tar_writer **out);
/* A header (and a PAX header first when needed). The data of a TAR_REG entry follows
 * through tar_write_data, exactly e->size bytes, then tar_end_entry. */
int tar_write_header(struct tar_writer *tw, const struct tar_entry *e);
int tar_write_data(struct tar_writer *tw, const void *buf, size_t len);
int tar_end_entry(struct tar_writer *tw);
/* The end-of-archive blocks and the last flush; frees tw. 0 or the first -errno seen. */
int tar_writer_finish(struct tar_writer *tw);
/* Frees tw without finishing (after an error). */
void tar_writer_abort(struct tar_writer *tw);

#endif
