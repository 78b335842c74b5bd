/* The command line: parse and validate, open the layers, mount, serve, unmount. */
#include "config.h"
#include "engine/engine.h"
#include "fuse/fuse_ops.h"
#include "fuse/workers.h"
#include "fuse/passthrough.h"
#include "fuse/uring.h"
#include "log.h"
#include "stats.h"
#include "tools/subcommands.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* Open files each hold a layer fd: allow as many as the hard limit lets us. */
static void raise_fd_limit(bool verbose)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0 && verbose)
		ovl_log(LOG_INFO, "open file limit raised to %llu",
			(unsigned long long)rl.rlim_cur);
}

/* Mount options for libfuse: ours first, so that the user's can override them. */
static char *mount_options(const struct ovl_config *cfg)
{
	/* As root, behave like the kernel overlayfs: devices and setuid work, every user
	 * sees the mount, and the kernel checks permissions against our attributes. */
	const char *base = geteuid() == 0 ? "default_permissions,noatime,allow_other,suid,dev"
					  : "default_permissions,noatime";
	bool has_fsname = cfg->fuse_opts && strstr(cfg->fuse_opts, "fsname=");
	bool has_subtype = cfg->fuse_opts && strstr(cfg->fuse_opts, "subtype=");
	bool user_allow = cfg->fuse_opts && strstr(cfg->fuse_opts, "allow_");
	char *opts;

	if (user_allow)
		base = geteuid() == 0 ? "default_permissions,noatime,suid,dev"
				      : "default_permissions,noatime";
	if (asprintf(&opts, "%s%s%s%s%s%s", base, has_fsname ? "" : ",fsname=ovlfs",
		     has_subtype ? "" : ",subtype=ovlfs", cfg->params.readonly ? ",ro" : "",
		     cfg->fuse_opts ? "," : "", cfg->fuse_opts ? cfg->fuse_opts : "") < 0)
		return NULL;
	return opts;
}

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

static int serve(struct ovl_config *cfg, struct ovl_fs *fs)
{
	char *opts = mount_options(cfg);
	char *argv[] = {"ovlfs", "-o", opts, cfg->debug ? "-d" : NULL, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(cfg->debug ? 4 : 3, argv);
	struct fuse_session *se;
	int ret = 1, err;

	if (!opts) {
		ovl_log(LOG_ERR, "out of memory");
		return 1;
	}
	se = fuse_session_new(&args, &ovl_fuse_ops, sizeof(ovl_fuse_ops), fs);
	if (!se) {
		ovl_log(LOG_ERR, "could not start the FUSE session (options: %s)", opts);
		goto out;
	}
	ovl_fuse_set_session(se);
	ovl_fuse_set_writeback(cfg->writeback);
	ovl_fuse_set_acl(!cfg->noacl);
	if (fuse_set_signal_handlers(se) != 0) {
		ovl_log(LOG_ERR, "could not set signal handlers");
		goto destroy;
	}
	if (fuse_session_mount(se, cfg->mountpoint) != 0) {
		ovl_log(LOG_ERR, "could not mount on '%s'", cfg->mountpoint);
		goto signals;
	}
	/* Passthrough needs the writeback cache off (the kernel refuses both at once), and
	 * registering backing files takes CAP_SYS_ADMIN: unprivileged, it is never offered (the
	 * offer alone would raise the mount's stacking depth). */
	bool pt = cfg->passthrough && !cfg->writeback && geteuid() == 0;
	bool uring = cfg->uring && !cfg->single_thread;
	if (cfg->uring && cfg->single_thread)
		ovl_log(LOG_WARNING, "no io_uring with -s: one thread serves /dev/fuse");
	if (uring && !ovl_uring_kernel_allows()) {
		ovl_log(LOG_WARNING, "no io_uring: the kernel does not allow it (it needs Linux "
				     "6.14+ and Y in /sys/module/fuse/parameters/enable_uring)");
		uring = false;
	}
	if ((pt || uring) && (err = ovl_dev_hooks_install(se, pt)) != 0) {
		ovl_log(LOG_WARNING, "no passthrough, no io_uring: %s", strerror(-err));
		pt = uring = false;
	}
	ovl_fuse_set_passthrough(pt);
	if (fuse_daemonize(cfg->foreground || cfg->debug) != 0) {
		ovl_log(LOG_ERR, "could not daemonize");
		goto unmount;
	}
	/* Daemonized, stderr is /dev/null: from now on messages go to syslog. */
	if (!cfg->foreground)
		ovl_log_init(true, cfg->debug);
	ovl_log(LOG_INFO, "mounted on %s", cfg->mountpoint);
	if (ovl_stats_start(fs) != 0)
		ovl_log(LOG_WARNING, "no node count on SIGUSR1");
	/* After fuse_daemonize, whose fork threads do not survive. */
	if (uring) {
		int uerr = ovl_uring_start(se, fuse_session_fd(se));
		if (uerr)
			ovl_log(LOG_WARNING, "no io_uring: %s", strerror(-uerr));
	}
	if (cfg->threaded && !cfg->single_thread) {
		ret = serve_threaded(se);
	} else {
		/* One request loop; what may block for long runs on workers (see
		 * fuse_ops.c). With -s, everything runs in the loop. */
		struct ovl_pool *pool = cfg->single_thread ? NULL : ovl_pool_start(4);
		if (!cfg->single_thread && !pool)
			ovl_log(LOG_WARNING, "no worker threads: long requests run in the loop");
		ovl_fuse_set_pool(pool);
		ret = fuse_session_loop(se);
		/* The io_uring queue threads hand requests to the pool too and commit the
		 * workers' replies: the pool drains first (later hand-offs run in the queue
		 * thread), then the queues stop, and only then does the pool go. */
		ovl_pool_drain(pool);
		ovl_uring_stop();
		ovl_fuse_set_pool(NULL);
		ovl_pool_stop(pool);
	}
	ovl_uring_stop(); /* the threaded loop's (a second call does nothing) */
	ovl_stats_stop();
	/* A loop ended by a signal or by fusermount3 -u is a clean stop. */
	if (ret < 0 && ret != -EINTR)
		ovl_log(LOG_ERR, "serving %s failed: %s", cfg->mountpoint, strerror(-ret));
	else if (ret > 0)
		ovl_log(LOG_INFO, "signal %d: unmounting %s", ret, cfg->mountpoint);
	else
		ovl_log(LOG_INFO, "%s was unmounted", cfg->mountpoint);
	ret = ret < 0 && ret != -EINTR ? 1 : 0;
unmount:
	fuse_session_unmount(se);
      signals:
	fuse_remove_signal_handlers(se);
destroy:
	fuse_session_destroy(se);
out:
	fuse_opt_free_args(&args);
	free(opts);
	return ret;
}

int main(int argc, char **argv)
{
	struct ovl_config cfg = {0};
	struct ovl_fs *fs = NULL;
	char err[1024];
	int ret;

	ovl_log_init(false, false);
	/* `ovlfs export|diff ...` read a layer and never mount (export.c, diff.c). */
	if (argc > 1 && !strcmp(argv[1], "export"))
		return ovl_export_main(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "diff"))
		return ovl_diff_main(argc - 1, argv + 1);
	ret = ovl_parse_args(argc, argv, &cfg, err, sizeof(err));
	if (ret == OVL_ARGS_EXIT)
		return 0;
	if (ret != OVL_ARGS_OK || ovl_validate_config(&cfg, err, sizeof(err)) != 0) {
		ovl_log(LOG_ERR, "%s", err);
		ovl_config_free(&cfg);
		return 1;
	}
	ovl_log_init(false, cfg.debug);
	/* The kernel applied the caller's umask already; ours must not apply twice. */
	umask(0);
	raise_fd_limit(cfg.debug);

	/* The options set the engine's settings in cfg.params; it borrows cfg's paths (canonical
	 * since validation) and ownership options, and calls the front end back. */
	cfg.params.lowerdirs = (const char *const *)cfg.lowerdirs;
	cfg.params.nlower = cfg.nlower;
	cfg.params.upperdir = cfg.upperdir;
	cfg.params.workdir = cfg.workdir;
	cfg.params.owner = &cfg.owner;
	cfg.params.attr_changed = ovl_fuse_attr_changed;
	int e = ovl_fs_new(&cfg.params, &fs);
	if (e) {
		ovl_log(LOG_ERR, "cannot open the layers: %s", strerror(-e));
		ovl_config_free(&cfg);
		return 1;
	}
	if (cfg.upperdir && !cfg.params.readonly) {
		bool ux, fw;
		ovl_fs_format(fs, &ux, &fw);
		ovl_log(ux || fw ? LOG_NOTICE : LOG_INFO, "layer format: %s markers, %s whiteouts",
			ux ? "user.overlay.*" : "trusted.overlay.*",
			fw ? ".wh. file" : "character device 0/0");
	}
	ret = serve(&cfg, fs);
	ovl_fs_destroy(fs);
	ovl_config_free(&cfg);
	return ret;
}
