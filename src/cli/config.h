/* Mount configuration: what the command line asked for, after parsing and validation. */
#ifndef OVLFS_CONFIG_H
#define OVLFS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/engine.h" /* struct ovl_fs_params, struct ovl_owner_opts */

#define OVL_MAX_LOWER 500

struct ovl_config {
	/*
	 * The engine's settings, set by the options directly (readonly, no_fsync, userxattr,
	 * whiteout); ovl_fs_new gets &params. Its path and owner pointers borrow what this
	 * struct owns below and are filled by main once validation made the paths canonical.
	 */
	struct ovl_fs_params params;
	char **lowerdirs; /* absolute, canonical paths, top layer first */
	int nlower;
	char *upperdir; /* NULL for a read-only overlay */
	char *workdir;	/* NULL exactly when upperdir is NULL */
	char *mountpoint;
	/* What the front end and the command line do (option_table.c says which option
	 * sets which field). */
	bool foreground;	     /* stay attached to the terminal */
	bool debug;		     /* trace every request (implies foreground) */
	bool single_thread;	     /* one thread serves /dev/fuse */
	bool writeback;		     /* the kernel's writeback cache */
	bool passthrough;	     /* FUSE passthrough of open upper files */
	bool uring;		     /* requests over io_uring where the kernel allows */
	bool noacl;		     /* the kernel checks mode bits only, no POSIX ACLs */
	bool threaded;		     /* libfuse's multi-threaded loop */
	bool kernel_cache;	     /* recorded only: libfuse's low level rejects the option */
	struct ovl_owner_opts owner; /* what params.owner points to */
	/* Comma-separated options for libfuse (allow_other, fsname=...), or NULL. */
	char *fuse_opts;
	/* -o remount (mount(8) runs us so through mount.fuse3): change the flags of the mount at
	 * mountpoint, params.readonly and remount_flags (MS_NOSUID, ...), and exit. */
	bool remount;
	unsigned long remount_flags;
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

/* The names in the option table, in its order; NULL past the last (for tests). */
const char *ovl_option_name(size_t i);

#endif
