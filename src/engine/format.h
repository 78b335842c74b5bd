/*
 * The on-disk overlay format, in one place for the engine and the layer tools (export,
 * diff): the names of the markers an overlay leaves in its layers and the pure checks on
 * them. No I/O and no engine state here: reading markers from a layer is the caller's
 * (formats.c for the engine, layer_walk.c for the tools).
 *
 * Forms read, all of them found in the wild:
 * - whiteouts: a character device 0/0 (the kernel's); a zero-size regular file carrying
 *   overlay.whiteout inside a directory marked overlay.opaque="x" (kernel 6.7+, for layers
 *   that cannot hold devices); a `.wh.<name>` file (OCI/Docker image layers);
 * - opaque directories: overlay.opaque="y"; user.fuseoverlayfs.opaque="y"; a `.wh..wh..opq`
 *   file inside (OCI).
 * The overlay.* markers live under trusted.overlay. (the kernel's default) or under
 * user.overlay. (the kernel's userxattr, ovlfs's rootless mode).
 */
#ifndef OVLFS_FORMAT_H
#define OVLFS_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/stat.h>

/* The overlay's xattr namespaces. */
#define OVL_XATTR_PREFIX "trusted.overlay."
#define OVL_UXATTR_PREFIX "user.overlay."
/* fuse-overlayfs's own namespace: its opaque mark is read, the whole prefix is hidden. */
#define OVL_FXATTR_PREFIX "user.fuseoverlayfs."

/* Marker names after either overlay prefix. */
#define OVL_X_OPAQUE "opaque"	  /* a directory: OVL_OPAQUE_YES or OVL_OPAQUE_XWHITEOUTS */
#define OVL_X_WHITEOUT "whiteout" /* a zero-size file: an xattr whiteout (kernel 6.7+) */
/* A caller's PREFIX.X is stored as PREFIX.overlay.X (kernel 6.7+), so that it can never be
 * taken for a marker. */
#define OVL_X_ESCAPE "overlay."
/* ovlfs's format record on the upper root (formats.c): OVL_FORMAT_WH_FILE or _CHARDEV. */
#define OVL_X_FORMAT "ovlfs"
/* Not used yet; named here for the identity and format work (issue #14): */
#define OVL_X_ORIGIN "origin"	  /* a copied-up object: file handle of its lower origin */
#define OVL_X_IMPURE "impure"	  /* a directory holding copied-up or moved entries */
#define OVL_X_NLINK "nlink"	  /* a hard link's link count relative to its origin */
#define OVL_X_UPPER "upper"	  /* an index entry: file handle of the upper object */
#define OVL_X_UUID "uuid"	  /* the upper root: the overlay's own uuid */
#define OVL_X_REDIRECT "redirect" /* a renamed merged directory: its path below */
/* The longest absolute redirect the kernel writes (its redirect_max module parameter's
 * default): a longer one makes it copy the directory up whole instead, as ovlfs does. */
#define OVL_REDIRECT_MAX 256
#define OVL_X_METACOPY "metacopy" /* a copy-up of metadata only: the data stays below */
#define OVL_X_PROTATTR "protattr" /* immutable and append-only flags, kept off the inode */

/* The full names of the markers ovlfs reads in each namespace. */
#define OVL_XATTR_OPAQUE OVL_XATTR_PREFIX OVL_X_OPAQUE
#define OVL_XATTR_WHITEOUT OVL_XATTR_PREFIX OVL_X_WHITEOUT
#define OVL_XATTR_ESCAPED OVL_XATTR_PREFIX OVL_X_ESCAPE
#define OVL_UXATTR_OPAQUE OVL_UXATTR_PREFIX OVL_X_OPAQUE
#define OVL_UXATTR_WHITEOUT OVL_UXATTR_PREFIX OVL_X_WHITEOUT
#define OVL_FXATTR_OPAQUE OVL_FXATTR_PREFIX OVL_X_OPAQUE

/* The values of overlay.opaque. */
#define OVL_OPAQUE_YES 'y'	  /* hides the layers below */
#define OVL_OPAQUE_XWHITEOUTS 'x' /* not opaque; may hold xattr whiteouts */

/* The values of the format record. */
#define OVL_FORMAT_WH_FILE "whiteout=file"
#define OVL_FORMAT_WH_CHARDEV "whiteout=chardev"

/* OCI image layers (and fuse-overlayfs without mknod): whiteouts as files. */
#define OVL_WH_PREFIX ".wh."
#define OVL_WH_META_PREFIX ".wh..wh." /* aufs bookkeeping and the opaque mark */
#define OVL_WH_OPAQUE ".wh..wh..opq"

/* The kernel's whiteout: a character device with this st_rdev, makedev(0, 0). */
#define OVL_WHITEOUT_DEV ((dev_t)0)

/* overlay.origin (and, in hex, the name of an index entry): a file handle of the lower
 * object as the kernel lays it out. Byte offsets: 0 version, 1 magic, 2 length of the
 * whole record, 3 flags, 4 the handle's type, 5..20 the UUID of the handle's filesystem,
 * then the handle's bytes (name_to_handle_at's f_handle). */
#define OVL_FH_VERSION 0
#define OVL_FH_MAGIC 0xfb
#define OVL_FH_FLAG_BIG_ENDIAN 0x1
#define OVL_FH_FLAG_ANY_ENDIAN 0x2
#define OVL_FH_FLAG_PATH_UPPER 0x4
#define OVL_FH_FLAGS_KNOWN                                                                         \
	(OVL_FH_FLAG_BIG_ENDIAN | OVL_FH_FLAG_ANY_ENDIAN | OVL_FH_FLAG_PATH_UPPER)
#define OVL_FH_HEADER 21 /* version, magic, len, flags, type, uuid[16] */
#define OVL_FH_UUID 5	 /* offset of the UUID */
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define OVL_FH_FLAG_CPU_ENDIAN OVL_FH_FLAG_BIG_ENDIAN
#else
#define OVL_FH_FLAG_CPU_ENDIAN 0
#endif
/* The UUID a filesystem puts in its records (FS_IOC_GETFSUUID, Linux 6.5; named apart so
 * as not to clash with headers that have it): ioctl(fd, OVL_IOC_GETFSUUID, &struct), with
 * <sys/ioctl.h>. */
struct ovl_fsuuid {
	unsigned char len;
	unsigned char uuid[16];
};
#define OVL_IOC_GETFSUUID _IOR(0x15, 0, struct ovl_fsuuid)

/* 0 if an origin record of len bytes is one this host reads, -ENODATA for "origin unknown"
 * (empty, a newer version, unknown flags, the other byte order), -EINVAL if malformed. */
int ovl_origin_check(const unsigned char *buf, size_t len);

/* A character device 0/0: the kernel's whiteout. */
bool ovl_is_whiteout_stat(const struct stat *st);
/* What an xattr whiteout is made of: a zero-size regular file (its xattr decides). */
bool ovl_may_be_xwhiteout(const struct stat *st);

/* Any `.wh.` name: the engine reserves them all, and never shows one. */
bool ovl_is_wh_name(const char *name);
/* A `.wh..wh.*` name: marks a directory (the opaque mark) or nothing, never hides a name. */
bool ovl_is_wh_meta_name(const char *name);

enum ovl_wh_kind {
	OVL_WH_NONE,	   /* no OCI marker (`.wh.` alone names nothing either) */
	OVL_WH_HIDES,	   /* `.wh.<name>`: hides name in the layers below */
	OVL_WH_OPAQUE_DIR, /* `.wh..wh..opq`: its directory is opaque */
	OVL_WH_META,	   /* another `.wh..wh.*` name: marks nothing we read */
};
/* Which OCI marker name is; with OVL_WH_HIDES and hidden non-NULL, *hidden points at the
 * hidden name inside name. */
enum ovl_wh_kind ovl_wh_kind(const char *name, const char **hidden);
/* Writes `.wh.<name>` into buf. 0, or -ENAMETOOLONG when it does not fit in buf or is
 * longer than a name can be (then no such file can exist). */
int ovl_wh_name(const char *name, char *buf, size_t size);

/* An overlay.opaque value read with size bytes: OVL_OPAQUE_YES, OVL_OPAQUE_XWHITEOUTS or 0
 * (anything else, "yes" included, is no mark, as the kernel reads it). */
int ovl_opaque_value(const char *value, long size);

/* The overlay prefix name starts with, as a mount reads it: trusted.overlay. always,
 * user.overlay. only with userxattr; else NULL. */
const char *ovl_xattr_own_prefix(const char *name, bool userxattr);
/* A caller's name stored escaped: an own prefix followed by overlay. */
bool ovl_xattr_is_escaped(const char *name, bool userxattr);
/* A marker of the overlay (under an own prefix, not escaped) or a name of fuse-overlayfs:
 * never shown, never copied up. */
bool ovl_is_private_xattr(const char *name, bool userxattr);
/* Any name under an overlay's namespace, whichever mode wrote the layer: what a tool
 * reading layers of unknown origin leaves out. */
bool ovl_xattr_in_overlay_ns(const char *name);
/* The name a caller's xattr name has in a layer (PREFIX.X as PREFIX.overlay.X). 0,
 * -EOPNOTSUPP for fuse-overlayfs's names (which a caller cannot reach), or -ERANGE if buf
 * is too small. */
int ovl_xattr_escape(const char *name, bool userxattr, char *buf, size_t size);
/* Writes the name a caller sees for the stored name (PREFIX.overlay.X as PREFIX.X; any
 * other name as it is) to out, which may be name itself or lie before it in the same
 * buffer. Returns the length written, the terminating NUL included. */
size_t ovl_xattr_unescape(const char *name, bool userxattr, char *out);

#endif
