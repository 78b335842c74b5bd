/* The libfuse API level the front end is written against: included before any libfuse
 * header, so that every front-end file sees the same one. */
#ifndef OVLFS_FUSE_VERSION_H
#define OVLFS_FUSE_VERSION_H

#define FUSE_USE_VERSION 312

#endif
