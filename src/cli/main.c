/* The command line: parse and validate, open the layers, mount, serve, unmount. */
#include "config.h"
#include "engine/engine.h"
#include "fuse/frontend.h"
#include "log.h"
#include "stats.h"
#include "tools/subcommands.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#define FUSE_SUPER_MAGIC 0x65735546

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

/*
 * `mount -o remount,ro MNT` (or rw): util-linux runs the type's helper for a remount too, and
 * mount.fuse3 runs us with the mount's options and "remount". Nothing to start: change the
 * flags with mount(2) as mount(8) does without a helper. The kernel's FUSE client takes
 * that by itself (fs/fuse/inode.c, fuse_reconfigure: syncs, then the VFS sets the flags),
 * and a read-only superblock refuses writes with EROFS before they reach the daemon.
 * Returns the exit status.
 */
static int remount(const struct ovl_config *cfg)
{
	unsigned long flags =
	    MS_REMOUNT | cfg->remount_flags | (cfg->params.readonly ? MS_RDONLY : 0);
	struct statfs sfs;

	/* Only a FUSE mount: "ovlfs -o remount,ro /" must not remount the root. */
	if (statfs(cfg->mountpoint, &sfs) < 0) {
		ovl_log(LOG_ERR, "cannot remount %s: %s", cfg->mountpoint, strerror(errno));
		return 1;
	}
	if (sfs.f_type != FUSE_SUPER_MAGIC) {
		ovl_log(LOG_ERR, "cannot remount %s: not a FUSE mount", cfg->mountpoint);
		return 1;
	}
	if (mount(NULL, cfg->mountpoint, NULL, flags, NULL) < 0) {
		ovl_log(LOG_ERR, "cannot remount %s: %s", cfg->mountpoint, strerror(errno));
		return 1;
	}
	return 0;
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

struct mount_hooks {
	const struct ovl_config *cfg;
	struct ovl_fs *fs;
};

/* Once mounted (ovl_serve's mounted hook): daemonize unless asked not to, then log to
 * syslog and start the node count. Nonzero: unmount. */
static int mounted(void *arg)
{
	const struct mount_hooks *hooks = arg;
	const struct ovl_config *cfg = hooks->cfg;

	if (fuse_daemonize(cfg->foreground || cfg->debug) != 0) {
		ovl_log(LOG_ERR, "could not daemonize");
		return -1;
	}
	/* Daemonized, stderr is /dev/null: from now on messages go to syslog. */
	if (!cfg->foreground)
		ovl_log_init(true, cfg->debug);
	ovl_log(LOG_INFO, "mounted on %s", cfg->mountpoint);
	if (ovl_stats_start(hooks->fs) != 0)
		ovl_log(LOG_WARNING, "no node count on SIGUSR1");
	return 0;
}

static void stopping(void *arg)
{
	(void)arg;
	ovl_stats_stop();
}

static int serve(struct ovl_config *cfg, struct ovl_frontend *fe)
{
	char *opts = mount_options(cfg);
	struct mount_hooks hooks = {.cfg = cfg, .fs = fe->fs};
	int ret;

	if (!opts) {
		ovl_log(LOG_ERR, "out of memory");
		return 1;
	}
	fe->opts = (struct ovl_frontend_options){
	    .mountpoint = cfg->mountpoint,
	    .mount_opts = opts,
	    .debug = cfg->debug,
	    .single_thread = cfg->single_thread,
	    .threaded = cfg->threaded,
	    .writeback = cfg->writeback,
	    .acl = !cfg->noacl,
	    /* Under -o noatime, no passthrough: the kernel reads through a backing file of its
	     * own (fs/fuse/passthrough.c), which would move the upper file's atime. */
	    .passthrough = cfg->passthrough && !cfg->params.noatime,
	    .uring = cfg->uring,
	    .mounted = mounted,
	    .stopping = stopping,
	    .hook_arg = &hooks,
	};
	ret = ovl_serve(fe);
	free(opts);
	return ret;
}

/* What the engine could not serve in a layer (an invalid redirect, say). */
static void log_layer_warning(const char *msg)
{
	ovl_log(LOG_WARNING, "%s", msg);
}

int main(int argc, char **argv)
{
	struct ovl_config cfg = {0};
	struct ovl_fs *fs = NULL;
	struct ovl_frontend frontend = {0};
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
	if (ret == OVL_ARGS_OK && cfg.remount) {
		ret = remount(&cfg);
		ovl_config_free(&cfg);
		return ret;
	}
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
	cfg.params.attr_changed = ovl_frontend_attr_changed;
	cfg.params.ctx = &frontend;
	cfg.params.warn = log_layer_warning;
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
	frontend.fs = fs;
	ret = serve(&cfg, &frontend);
	ovl_fs_destroy(fs);
	ovl_config_free(&cfg);
	return ret;
}
