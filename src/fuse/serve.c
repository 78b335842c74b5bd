/* The life of a mount: create the session, mount, serve until unmounted or signalled, and
 * take it all down again in the order the threads need. */
#include "frontend.h"
#include "dev_hooks.h"
#include "fuse_ops.h"
#include "workers.h"
#include "cli/log.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

/* libfuse's multi-threaded loop (-o threaded=1): every request may run on another thread. */
static int serve_threaded(struct fuse_session *se)
{
	struct fuse_loop_config *lc = fuse_loop_cfg_create();
	int ret;

	if (!lc)
		return -ENOMEM;
	/* Idle workers stay: creating threads per burst costs more than a request. */
	fuse_loop_cfg_set_idle_threads(lc, 10);
	ret = fuse_session_loop_mt(se, lc);
	fuse_loop_cfg_destroy(lc);
	return ret;
}

int ovl_serve(struct ovl_frontend *fe)
{
	const struct ovl_frontend_options *opts = &fe->opts;
	char *argv[] = {"ovlfs", "-o", (char *)opts->mount_opts, opts->debug ? "-d" : NULL, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(opts->debug ? 4 : 3, argv);
	struct fuse_session *se;
	int ret = 1, err;

	fe->dev_fd = -1;
	ovl_uring_init(&fe->uring);
	se = fuse_session_new(&args, &ovl_fuse_ops, sizeof(ovl_fuse_ops), fe);
	if (!se) {
		ovl_log(LOG_ERR, "could not start the FUSE session (options: %s)",
			opts->mount_opts);
		goto out;
	}
	fe->session = se;
	if (fuse_set_signal_handlers(se) != 0) {
		ovl_log(LOG_ERR, "could not set signal handlers");
		goto destroy;
	}
	if (fuse_session_mount(se, opts->mountpoint) != 0) {
		ovl_log(LOG_ERR, "could not mount on '%s'", opts->mountpoint);
		goto signals;
	}
	fe->dev_fd = fuse_session_fd(se);
	/* Passthrough needs the writeback cache off (the kernel refuses both at once), and
	 * registering backing files takes CAP_SYS_ADMIN: unprivileged, it is never offered (the
	 * offer alone would raise the mount's stacking depth). */
	bool pt = opts->passthrough && !opts->writeback && geteuid() == 0;
	bool uring = opts->uring && !opts->single_thread;
	if (opts->uring && opts->single_thread)
		ovl_log(LOG_WARNING, "no io_uring with -s: one thread serves /dev/fuse");
	if (uring && !ovl_uring_kernel_allows()) {
		ovl_log(LOG_WARNING, "no io_uring: the kernel does not allow it (it needs Linux "
				     "6.14+ and Y in /sys/module/fuse/parameters/enable_uring)");
		uring = false;
	}
	/* Always: the INIT reply accepts shared mmap of direct_io files, and the hooks answer
	 * what libfuse does not know (STATX). */
	if ((err = ovl_dev_hooks_install(fe, pt)) != 0) {
		ovl_log(
		    LOG_WARNING,
		    "no passthrough, no io_uring, no shared mmap of O_DIRECT files, no statx: %s",
		    strerror(-err));
		pt = uring = false;
	}
	fe->passthrough = pt;
	if (opts->mounted && opts->mounted(opts->hook_arg) != 0)
		goto unmount;
	/* After the mounted hook, which daemonizes: fork's threads do not survive. */
	if (uring) {
		int uerr = ovl_uring_start(&fe->uring, se, fe->dev_fd);
		if (uerr)
			ovl_log(LOG_WARNING, "no io_uring: %s", strerror(-uerr));
	}
	if (opts->threaded && !opts->single_thread) {
		ret = serve_threaded(se);
	} else {
		/* One request loop; what may block for long runs on workers (see
		 * fuse_ops.c). With -s, everything runs in the loop. */
		struct ovl_pool *pool = opts->single_thread ? NULL : ovl_pool_start(4);
		if (!opts->single_thread && !pool)
			ovl_log(LOG_WARNING, "no worker threads: long requests run in the loop");
		fe->pool = pool;
		ret = fuse_session_loop(se);
		/* The io_uring queue threads hand requests to the pool too and commit the
		 * workers' replies: the pool drains first (later hand-offs run in the queue
		 * thread), then the queues stop, and only then does the pool go. */
		ovl_pool_drain(pool);
		ovl_uring_stop(&fe->uring);
		fe->pool = NULL;
		ovl_pool_stop(pool);
	}
	ovl_uring_stop(&fe->uring); /* the threaded loop's (a second call does nothing) */
	if (opts->stopping)
		opts->stopping(opts->hook_arg);
	/* Nothing serves requests any more: let go of the layers before unmounting, which
	 * (lazily, after a signal) makes the mount point vanish at once but may take long to
	 * drop the kernel's inodes, while whoever waited for it unmounts the layers. */
	if (fe->fs)
		ovl_fs_close_layers(fe->fs);
	/* A loop ended by a signal or by fusermount3 -u is a clean stop. */
	if (ret < 0 && ret != -EINTR)
		ovl_log(LOG_ERR, "serving %s failed: %s", opts->mountpoint, strerror(-ret));
	else if (ret > 0)
		ovl_log(LOG_INFO, "signal %d: unmounting %s", ret, opts->mountpoint);
	else
		ovl_log(LOG_INFO, "%s was unmounted", opts->mountpoint);
	ret = ret < 0 && ret != -EINTR ? 1 : 0;
unmount:
	fuse_session_unmount(se);
      signals:
	fuse_remove_signal_handlers(se);
destroy:
	fuse_session_destroy(se);
	fe->session = NULL;
out:
	fuse_opt_free_args(&args);
	return ret;
}
