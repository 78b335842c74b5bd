/* Mount configuration: what the command line asked for, after parsing and validation. */
#ifndef OVLFS_CONFIG_H
#define OVLFS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/engine.h" /* struct ovl_owner_opts */

#define OVL_MAX_LOWER 500

struct ovl_config {
	char **lowerdirs; /* absolute, canonical paths, top layer first */
	int nlower;
	char *upperdir; /* NULL for a read-only overlay */
	char *workdir;	/* NULL exactly when upperdir is NULL */
	char *mountpoint;
	bool foreground;    /* -f */
	bool debug;	    /* -d or -o debug: trace every request (implies foreground) */
	bool single_thread; /* -s */
	bool readonly;	    /* -o ro, or no upperdir */
	bool no_fsync;	    /* -o fsync=0 or volatile: fsync is a no-op */
	bool writeback;	    /* -o writeback=1: the kernel's writeback cache */
	bool passthrough;   /* -o passthrough=1: FUSE passthrough of open upper files */
	bool uring;	    /* -o uring=1: requests over io_uring where the kernel allows */
	bool noacl;	    /* -o noacl: the kernel checks mode bits only, no POSIX ACLs */
	bool threaded;	    /* -o threaded=1: libfuse's multi-threaded loop */
	bool kernel_cache;  /* -o kernel_cache (libfuse's low level rejects it) */
	struct ovl_owner_opts owner; /* uidmapping=, squash_to_*=, xattr_permissions= */
	bool userxattr;		     /* -o userxattr: markers under user.overlay.* */
	int whiteout;		     /* -o whiteout=: 0 auto, 1 chardev, 2 file (OVL_WHITEOUT_*) */
	/* Comma-separated options for libfuse (allow_other, fsname=...), or NULL. */
	char *fuse_opts;
};

/* Return codes of ovl_parse_args. */
enum { OVL_ARGS_OK = 0, OVL_ARGS_EXIT = 1, OVL_ARGS_ERROR = -1 };

/* Parses argv. On OVL_ARGS_EXIT (--help/--version) the text was printed to stdout.
 * On OVL_ARGS_ERROR, err holds one line naming the problem. Paths are not checked here. */
int ovl_parse_args(int argc, char **argv, struct ovl_config *cfg, char *err, size_t errlen);

/* Checks the layers and the mount point, canonicalizing every path in cfg.
 * Returns 0, or -1 with one line in err naming the problem. Touches nothing on disk. */
int ovl_validate_config(struct ovl_config *cfg, char *err, size_t errlen);

void ovl_config_free(struct ovl_config *cfg);

#endif
