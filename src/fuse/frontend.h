/*
 * The FUSE front end as one object: everything the request handlers, the /dev/fuse hooks,
 * the io_uring queues and the serve loop share. main.c fills in the engine and the
 * options and calls ovl_serve; the session's userdata is this struct, so a handler gets it
 * with fuse_req_userdata and the /dev/fuse hooks as their userdata argument.
 */
#ifndef OVLFS_FRONTEND_H
#define OVLFS_FRONTEND_H

#include "fuse_version.h"

#include <fuse_lowlevel.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "uring.h"

struct ovl_fs;
struct ovl_node;
struct ovl_pool;

/* What the command line asked for; read-only once ovl_serve runs. */
struct ovl_frontend_options {
	const char *mountpoint;
	const char *mount_opts; /* libfuse's -o string */
	bool debug;		/* libfuse's -d: trace every request */
	bool single_thread;	/* -s: one thread, no worker pool, no io_uring */
	bool threaded;		/* libfuse's multi-threaded loop */
	bool writeback;		/* ask for the kernel's writeback cache */
	bool acl;		/* let the kernel enforce POSIX ACLs */
	bool passthrough;	/* FUSE passthrough of open upper files, where allowed */
	bool uring;		/* requests over io_uring, where the kernel allows it */
	/* Once mounted, before any request is served: the caller's daemonizing, logging and
	 * statistics (nonzero: unmount and fail). After serving, before unmounting:
	 * stopping what mounted started. */
	int (*mounted)(void *arg);
	void (*stopping)(void *arg);
	void *hook_arg;
};

/* What the /dev/fuse hooks (dev_hooks.c) learn from INIT. Written by the thread that reads
 * INIT and the one that answers it; the kernel sends no other request before that answer,
 * so the threads that read these later see them set. */
struct ovl_dev_state {
	bool offer_passthrough; /* set by ovl_dev_hooks_install, before the loop */
	bool hooked;		/* the same: the read hook must see every request */
	bool init_seen;		/* INIT read: init_unique is its request */
	uint64_t init_unique;
	bool kernel_offers;	 /* the kernel offered FUSE_PASSTHROUGH */
	bool kernel_allows_mmap; /* it offered FUSE_DIRECT_IO_ALLOW_MMAP */
	bool kernel_no_export;	 /* it offered FUSE_NO_EXPORT_SUPPORT */
	bool kernel_killpriv_v2; /* it offered FUSE_HANDLE_KILLPRIV_V2 */
	bool init_answered;
	bool passthrough_offered; /* our INIT reply offered it: opens may use it */
};

struct ovl_frontend {
	struct ovl_fs *fs; /* set by main before ovl_serve; the engine locks its own state */
	struct ovl_frontend_options opts;
	/* Set by ovl_serve (the session before mounting, its /dev/fuse fd once mounted),
	 * unchanged while requests are served. */
	struct fuse_session *session;
	int dev_fd; /* backing-file ioctls, io_uring commands */
	/* Set by ovl_serve before the loop (the io_uring queues serve nothing before INIT,
	 * which the loop answers), cleared once the queues have stopped; NULL: no pool. */
	struct ovl_pool *pool;
	/* Negotiated by op_init, which the kernel sends before any other request. */
	bool writeback;		   /* the writeback cache is on */
	bool zero_message_opendir; /* the kernel opens directories without OPENDIR */
	bool dont_mask;		   /* the umask comes in create requests, unapplied */
	/* Set by ovl_serve once the /dev/fuse hooks are in, before the loop. passthrough.c's
	 * table of open nodes keeps its own static storage and lock. */
	bool passthrough;
	/* Set with the hooks; cleared, by whichever handler thread sees it first, when the
	 * kernel refuses backing files for good. */
	atomic_bool pt_enabled;
	struct ovl_dev_state dev;
	struct ovl_uring uring; /* uring.c's queues (their own locks; see struct ovl_uring) */
};

/*
 * Creates the session, mounts, calls opts.mounted, serves until unmounted or signalled,
 * calls opts.stopping, unmounts. Returns the exit status (0: a clean stop, by a signal or
 * an unmount; 1: a failure, already logged).
 */
int ovl_serve(struct ovl_frontend *fe);

/* The engine's attr_changed hook (ctx: the frontend): drops the kernel's cached
 * attributes of a node. */
void ovl_frontend_attr_changed(void *ctx, struct ovl_node *node);

#endif
