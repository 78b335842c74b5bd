/* Unit tests of the command-line parser (options.c) and the start-up checks (validate.c). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cli/config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#ifndef OVLFS_VERSION
#define OVLFS_VERSION "0.1.0"
#endif

struct tally {
	int passed;
	int failed;
};

static bool check(struct tally *t, bool ok, const char *what, int line)
{
	if (ok) {
		t->passed++;
	} else {
		t->failed++;
		fprintf(stderr, "FAIL line %d: %s\n", line, what);
	}
	return ok;
}

#define CHECK(t, cond) check((t), (cond), #cond, __LINE__)

static bool check_str(struct tally *t, const char *got, const char *want, const char *what,
		      int line)
{
	bool ok = (!got && !want) || (got && want && !strcmp(got, want));

	if (!check(t, ok, what, line))
		fprintf(stderr, "    got:  %s%s%s\n    want: %s%s%s\n", got ? "'" : "",
			got ? got : "NULL", got ? "'" : "", want ? "'" : "", want ? want : "NULL",
			want ? "'" : "");
	return ok;
}

#define CHECK_STR(t, got, want) check_str((t), (got), (want), #got " == " #want, __LINE__)

/* argv[0] is supplied; args is NULL-terminated. */
static int parse_list(struct ovl_config *cfg, char *err, size_t errlen, const char *const *args)
{
	char *argv[64];
	int argc = 0;

	argv[argc++] = "ovlfs";
	while (*args && argc < 63)
		argv[argc++] = (char *)*args++;
	argv[argc] = NULL;
	return ovl_parse_args(argc, argv, cfg, err, errlen);
}

#define PARSE(cfg, err, ...)                                                                       \
	parse_list((cfg), (err), sizeof(err), (const char *const[]){__VA_ARGS__, NULL})

static bool cfg_is_empty(const struct ovl_config *c)
{
	return !c->lowerdirs && !c->nlower && !c->upperdir && !c->workdir && !c->mountpoint &&
	       !c->fuse_opts && !c->foreground && !c->debug && !c->single_thread &&
	       !c->params.readonly && !c->params.no_fsync && !c->kernel_cache;
}

/* Parses args and expects exactly the error want, with cfg left empty. */
static void expect_err_list(struct tally *t, const char *want, const char *const *args, int line)
{
	struct ovl_config cfg;
	char err[512];
	int rc = parse_list(&cfg, err, sizeof(err), args);

	check(t, rc == OVL_ARGS_ERROR, "parse fails", line);
	check_str(t, err, want, "error message", line);
	check(t, cfg_is_empty(&cfg), "cfg is empty after an error", line);
	ovl_config_free(&cfg);
}

#define EXPECT_ERR(t, want, ...)                                                                   \
	expect_err_list((t), (want), (const char *const[]){__VA_ARGS__, NULL}, __LINE__)

/* Parses -o opts mnt and expects success with no libfuse options and no flags set. */
static void expect_ignored(struct tally *t, const char *opt, int line)
{
	struct ovl_config cfg;
	char err[512], o[256];
	int rc;

	snprintf(o, sizeof(o), "lowerdir=/l,%s", opt);
	rc = PARSE(&cfg, err, "-o", o, "/m");
	if (!check(t, rc == OVL_ARGS_OK, opt, line))
		fprintf(stderr, "    error: %s\n", err);
	check(t, cfg.fuse_opts == NULL, "ignored option not passed to libfuse", line);
	check(t, !cfg.params.no_fsync && !cfg.debug && !cfg.foreground && !cfg.kernel_cache,
	      "ignored option sets nothing", line);
	ovl_config_free(&cfg);
}

/* Runs the parser with stdout sent to a temporary file whose contents land in out. */
static int parse_captured(struct tally *t, const char *const *args, char *out, size_t outlen)
{
	struct ovl_config cfg;
	char err[512];
	FILE *tmp = tmpfile();
	int saved, rc;
	size_t n;

	out[0] = '\0';
	if (!CHECK(t, tmp != NULL))
		return -100;
	if (fflush(stdout) == EOF)
		perror("fflush");
	saved = dup(STDOUT_FILENO);
	if (!CHECK(t, saved >= 0) || !CHECK(t, dup2(fileno(tmp), STDOUT_FILENO) >= 0)) {
		fclose(tmp);
		return -100;
	}
	rc = parse_list(&cfg, err, sizeof(err), args);
	if (fflush(stdout) == EOF)
		perror("fflush");
	CHECK(t, dup2(saved, STDOUT_FILENO) >= 0);
	close(saved);
	rewind(tmp);
	n = fread(out, 1, outlen - 1, tmp);
	out[n] = '\0';
	fclose(tmp);
	CHECK(t, cfg_is_empty(&cfg));
	ovl_config_free(&cfg);
	return rc;
}

static void test_basic(struct tally *t)
{
	struct ovl_config cfg;
	char err[512];
	int rc;

	rc = PARSE(&cfg, err, "-o", "lowerdir=/l1:/l2,upperdir=/u,workdir=/w", "/m");
	CHECK(t, rc == OVL_ARGS_OK);
	CHECK(t, cfg.nlower == 2);
	if (cfg.nlower == 2) {
		CHECK_STR(t, cfg.lowerdirs[0], "/l1");
		CHECK_STR(t, cfg.lowerdirs[1], "/l2");
		CHECK(t, cfg.lowerdirs[2] == NULL);
	}
	CHECK_STR(t, cfg.upperdir, "/u");
	CHECK_STR(t, cfg.workdir, "/w");
	CHECK_STR(t, cfg.mountpoint, "/m");
	CHECK(t, !cfg.params.readonly && !cfg.foreground && !cfg.debug && !cfg.single_thread);
	CHECK(t, !cfg.params.no_fsync && !cfg.kernel_cache && cfg.fuse_opts == NULL);
	ovl_config_free(&cfg);
	/* Freeing twice is harmless: the first call zeroes the struct. */
	ovl_config_free(&cfg);
	CHECK(t, cfg_is_empty(&cfg));

	/* mount.fuse3 style: source, mount point, then -o; no upper means read-only. */
	rc = PARSE(&cfg, err, "ovlfs", "/m", "-o", "rw,lowerdir=/l,dev,suid");
	CHECK(t, rc == OVL_ARGS_OK);
	CHECK_STR(t, cfg.mountpoint, "/m");
	CHECK(t, cfg.nlower == 1 && cfg.upperdir == NULL && cfg.workdir == NULL);
	CHECK(t, cfg.params.readonly);
	CHECK_STR(t, cfg.fuse_opts, "dev,suid");
	ovl_config_free(&cfg);

	/* Glued -o, several -o, options after the mount point. */
	rc = PARSE(&cfg, err, "-olowerdir=/l", "/m", "-oupperdir=/u", "-o", "workdir=/w");
	CHECK(t, rc == OVL_ARGS_OK);
	CHECK(t, cfg.nlower == 1);
	CHECK_STR(t, cfg.upperdir, "/u");
	CHECK_STR(t, cfg.workdir, "/w");
	CHECK(t, !cfg.params.readonly);
	ovl_config_free(&cfg);

	/* A later lowerdir/upperdir replaces an earlier one. */
	rc = PARSE(&cfg, err, "-o", "lowerdir=/a:/b,upperdir=/x", "-o",
		   "lowerdir=/c,upperdir=/u,workdir=/w", "/m");
	CHECK(t, rc == OVL_ARGS_OK);
	CHECK(t, cfg.nlower == 1 && cfg.lowerdirs && !strcmp(cfg.lowerdirs[0], "/c"));
	CHECK_STR(t, cfg.upperdir, "/u");
	ovl_config_free(&cfg);

	/* Empty list items are skipped; "--" ends the options. */
	rc = PARSE(&cfg, err, "-o", ",lowerdir=/l,,", "-o", "", "--", "-weird");
	CHECK(t, rc == OVL_ARGS_OK);
	CHECK_STR(t, cfg.mountpoint, "-weird");
	ovl_config_free(&cfg);

	/* Relative paths are kept for validate to canonicalize. */
	rc = PARSE(&cfg, err, "-o", "lowerdir=l,upperdir=./u,workdir=w/", "m");
	CHECK(t, rc == OVL_ARGS_OK);
	CHECK_STR(t, cfg.lowerdirs ? cfg.lowerdirs[0] : NULL, "l");
	CHECK_STR(t, cfg.upperdir, "./u");
	CHECK_STR(t, cfg.workdir, "w/");
	CHECK_STR(t, cfg.mountpoint, "m");
	ovl_config_free(&cfg);
}

static void test_flags(struct tally *t)
{
	struct ovl_config cfg;
	char err[512];
	int rc;

	rc = PARSE(&cfg, err, "-f", "-o", "lowerdir=/l", "/m");
	CHECK(t, rc == OVL_ARGS_OK && cfg.foreground && !cfg.debug && !cfg.single_thread);
	ovl_config_free(&cfg);

	rc = PARSE(&cfg, err, "-d", "-o", "lowerdir=/l", "/m");
	CHECK(t, rc == OVL_ARGS_OK && cfg.foreground && cfg.debug);
	ovl_config_free(&cfg);

	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,debug", "/m");
	CHECK(t, rc == OVL_ARGS_OK && cfg.foreground && cfg.debug && cfg.fuse_opts == NULL);
	ovl_config_free(&cfg);

	rc = PARSE(&cfg, err, "-s", "-o", "lowerdir=/l", "/m");
	CHECK(t, rc == OVL_ARGS_OK && cfg.single_thread && !cfg.foreground);
	ovl_config_free(&cfg);

	/* Clustered short options, with -o last taking the rest. */
	rc = PARSE(&cfg, err, "-fso", "lowerdir=/l", "/m");
	CHECK(t, rc == OVL_ARGS_OK && cfg.foreground && cfg.single_thread && cfg.nlower == 1);
	ovl_config_free(&cfg);
	rc = PARSE(&cfg, err, "-dolowerdir=/l", "/m");
	CHECK(t, rc == OVL_ARGS_OK && cfg.debug && cfg.nlower == 1);
	ovl_config_free(&cfg);

	/* ro, and ro overridden by a later rw. */
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,upperdir=/u,workdir=/w,ro", "/m");
	CHECK(t, rc == OVL_ARGS_OK && cfg.params.readonly && cfg.fuse_opts == NULL);
	ovl_config_free(&cfg);
	rc = PARSE(&cfg, err, "-o", "ro,lowerdir=/l,upperdir=/u,workdir=/w,rw", "/m");
	CHECK(t, rc == OVL_ARGS_OK && !cfg.params.readonly && cfg.fuse_opts == NULL);
	ovl_config_free(&cfg);

	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,fsync=0", "/m");
	CHECK(t, rc == OVL_ARGS_OK && cfg.params.no_fsync);
	ovl_config_free(&cfg);
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,fsync=1", "/m");
	CHECK(t, rc == OVL_ARGS_OK && !cfg.params.no_fsync);
	ovl_config_free(&cfg);
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,volatile", "/m");
	CHECK(t, rc == OVL_ARGS_OK && cfg.params.no_fsync);
	ovl_config_free(&cfg);
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,noacl", "/m");
	CHECK(t, rc == OVL_ARGS_OK && cfg.noacl && cfg.fuse_opts == NULL);
	ovl_config_free(&cfg);
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l", "/m");
	CHECK(t, rc == OVL_ARGS_OK && !cfg.noacl && !cfg.uring);
	ovl_config_free(&cfg);
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,uring=1", "/m");
	CHECK(t, rc == OVL_ARGS_OK && cfg.uring && cfg.fuse_opts == NULL);
	ovl_config_free(&cfg);
	rc = PARSE(&cfg, err, "-o", "uring=1,lowerdir=/l,uring=0", "/m");
	CHECK(t, rc == OVL_ARGS_OK && !cfg.uring);
	ovl_config_free(&cfg);
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,uring=on", "/m");
	CHECK(t, rc == OVL_ARGS_ERROR && strstr(err, "uring"));
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,kernel_cache", "/m");
	CHECK(t, rc == OVL_ARGS_OK && cfg.kernel_cache && cfg.fuse_opts == NULL);
	ovl_config_free(&cfg);
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,userxattr,whiteout=file", "/m");
	CHECK(t, rc == OVL_ARGS_OK && cfg.params.userxattr && cfg.params.whiteout == 2 &&
		     !cfg.fuse_opts);
	ovl_config_free(&cfg);
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,whiteout=chardev", "/m");
	CHECK(t, rc == OVL_ARGS_OK && !cfg.params.userxattr && cfg.params.whiteout == 1);
	ovl_config_free(&cfg);
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,whiteout=file,whiteout=auto", "/m");
	CHECK(t, rc == OVL_ARGS_OK && cfg.params.whiteout == 0);
	ovl_config_free(&cfg);
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,whiteout=opaque", "/m");
	CHECK(t, rc == OVL_ARGS_ERROR && strstr(err, "whiteout"));
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,userxattr=1", "/m");
	CHECK(t, rc == OVL_ARGS_ERROR);
}

static void test_ignored(struct tally *t)
{
	static const char *const opts[] = {
	    "timeout=1000000000",
	    "threaded=1",
	    "fast_ino=1",
	    "writeback=0",
	    "noacl",
	    "static_nlink",
	    "redirect_dir=off",
	    "context=system_u:object_r:x:s0",
	    "sync=0",
	    "fast_ino_check=1",
	    "xino=off",
	    "xino=auto",
	    "xino=on",
	    "noxattrs=0",
	    "xattr_permissions=0",
	    "defaults",
	    "diratime",
	    "nodiratime",
	    "relatime",
	    "norelatime",
	    "strictatime",
	    "max_write=131072",
	    "splice_read",
	    "splice_write",
	    "splice_move",
	    "no_splice_read",
	    "no_splice_write",
	    "no_splice_move",
	    "clone_fd",
	    "max_idle_threads=10",
	    "rw",
	    /* What mount(8) and mount.fuse3 forward from a command line or an fstab line. */
	    "lazytime",
	    "nolazytime",
	    "iversion",
	    "noiversion",
	    "nostrictatime",
	    "mand",
	    "nomand",
	    "comment=fstab note",
	    "x-systemd.automount",
	    "x-systemd.requires=/srv",
	    "x-foo=a\\,b",
	};
	size_t i;

	for (i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		expect_ignored(t, opts[i], __LINE__);
}

/* uidmapping=, gidmapping=, squash_to_*, xattr_permissions= (idmap.c). */
static void test_owner_opts(struct tally *t)
{
	struct ovl_config cfg;
	char err[512];
	uint32_t id;
	int rc;

	rc = PARSE(&cfg, err, "-o",
		   "lowerdir=/l,uidmapping=0:1000:1:1:100000:65536,gidmapping=0:2000:10", "-o",
		   "squash_to_gid=7,xattr_permissions=2", "/m");
	CHECK(t, rc == OVL_ARGS_OK);
	CHECK(t, cfg.owner.uids.n == 2 && cfg.owner.gids.n == 1);
	CHECK(t, cfg.owner.uids.r[1].disk == 1 && cfg.owner.uids.r[1].shown == 100000 &&
		     cfg.owner.uids.r[1].len == 65536);
	CHECK(t, cfg.owner.has_squash_gid && cfg.owner.squash_gid == 7);
	CHECK(t, !cfg.owner.has_squash_uid && !cfg.owner.squash_root);
	CHECK(t, cfg.owner.xattr_permissions == 2);
	CHECK(t, cfg.fuse_opts == NULL);
	/* disk -> shown, and back; outside every range: the overflow ID / no mapping. */
	CHECK(t, ovl_id_shown(&cfg.owner.uids, 0) == 1000);
	CHECK(t, ovl_id_shown(&cfg.owner.uids, 1) == 100000);
	CHECK(t, ovl_id_shown(&cfg.owner.uids, 65536) == 165535);
	CHECK(t, ovl_id_shown(&cfg.owner.uids, 65537) == 65534);
	CHECK(t, ovl_id_shown(&cfg.owner.uids, 4294967295u) == 65534);
	CHECK(t, ovl_id_disk(&cfg.owner.uids, 1000, &id) && id == 0);
	CHECK(t, ovl_id_disk(&cfg.owner.uids, 100005, &id) && id == 6);
	CHECK(t, !ovl_id_disk(&cfg.owner.uids, 0, &id));
	CHECK(t, !ovl_id_disk(&cfg.owner.uids, 165536, &id));
	CHECK(t, ovl_id_disk(&cfg.owner.gids, 2009, &id) && id == 9);
	CHECK(t, !ovl_id_disk(&cfg.owner.gids, 2010, &id));
	ovl_config_free(&cfg);

	/* No mapping: IDs as they are; ',' (escaped) separates triples too; last one wins. */
	struct ovl_idmap none = {0};
	CHECK(t, ovl_id_shown(&none, 12345) == 12345);
	CHECK(t, ovl_id_disk(&none, 12345, &id) && id == 12345);
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,uidmapping=5:6:7,uidmapping=0:0:1\\,10:20:5", "-o",
		   "squash_to_root,squash_to_uid=4294967294", "/m");
	CHECK(t, rc == OVL_ARGS_OK);
	CHECK(t, cfg.owner.uids.n == 2 && cfg.owner.uids.r[1].shown == 20);
	CHECK(t, cfg.owner.squash_root && cfg.owner.squash_uid == 4294967294u);
	ovl_config_free(&cfg);
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,xattr_permissions=0,uidmapping=0:0:4294967295",
		   "/m");
	CHECK(t, rc == OVL_ARGS_OK && cfg.owner.xattr_permissions == 0);
	ovl_config_free(&cfg);

	static const char expect_triples[] =
	    "(expected DISK:SHOWN:LEN[:DISK:SHOWN:LEN...] with decimal IDs)";
	char want[256];
	static const char *const bad[] = {"",	     "0:1000",	       "0:1000:1:", "a:1:1",
					  "0:-1:1",  "0:1:1:2:3",      " 0:1:1",    "0::1000:1",
					  "0:1:0x1", "0:99999999999:1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char opt[128];
		snprintf(want, sizeof(want), "invalid value '%s' for option 'gidmapping' %s",
			 bad[i], expect_triples);
		snprintf(opt, sizeof(opt), "lowerdir=/l,gidmapping=%s", bad[i]);
		expect_err_list(t, want, (const char *const[]){"-o", opt, "/m", NULL}, __LINE__);
	}
	EXPECT_ERR(t, "option 'uidmapping': range 0:1000:0 is empty", "-o",
		   "lowerdir=/l,uidmapping=0:1000:0", "/m");
	EXPECT_ERR(t,
		   "option 'uidmapping': range 4294967290:0:10 goes past the largest ID "
		   "4294967294",
		   "-o", "lowerdir=/l,uidmapping=4294967290:0:10", "/m");
	EXPECT_ERR(t,
		   "option 'uidmapping': range 0:4294967295:1 goes past the largest ID "
		   "4294967294",
		   "-o", "lowerdir=/l,uidmapping=0:4294967295:1", "/m");
	EXPECT_ERR(t, "option 'uidmapping': range 5:100:1 overlaps 0:0:10", "-o",
		   "lowerdir=/l,uidmapping=0:0:10:5:100:1", "/m");
	EXPECT_ERR(t, "option 'gidmapping': range 100:5:3 overlaps 0:0:10", "-o",
		   "lowerdir=/l,gidmapping=0:0:10:100:5:3", "/m");
	/* The maximum number of ranges, and one more. */
	char *many = malloc(341 * 24 + 64);
	if (CHECK(t, many != NULL)) {
		size_t pos = (size_t)sprintf(many, "lowerdir=/l,uidmapping=");
		for (int i = 0; i < 341; i++)
			pos += (size_t)sprintf(many + pos, "%s%d:%d:1", i ? ":" : "", i, i);
		EXPECT_ERR(t, "option 'uidmapping' has more than 340 ranges", "-o", many, "/m");
		many[strlen(many) - strlen(":340:340:1")] = '\0';
		rc = PARSE(&cfg, err, "-o", many, "/m");
		CHECK(t, rc == OVL_ARGS_OK && cfg.owner.uids.n == 340);
		ovl_config_free(&cfg);
		free(many);
	}
	EXPECT_ERR(t, "invalid value '-1' for option 'squash_to_uid' (expected a decimal ID)", "-o",
		   "lowerdir=/l,squash_to_uid=-1", "/m");
	EXPECT_ERR(t, "invalid value 'root' for option 'squash_to_gid' (expected a decimal ID)",
		   "-o", "lowerdir=/l,squash_to_gid=root", "/m");
	EXPECT_ERR(t,
		   "invalid value '4294967295' for option 'squash_to_gid' (expected a decimal "
		   "ID)",
		   "-o", "lowerdir=/l,squash_to_gid=4294967295", "/m");
	EXPECT_ERR(t, "option 'squash_to_root' does not take a value", "-o",
		   "lowerdir=/l,squash_to_root=1", "/m");
	EXPECT_ERR(t, "option 'uidmapping' requires a value (uidmapping=...)", "-o",
		   "lowerdir=/l,uidmapping", "/m");
	EXPECT_ERR(t, "invalid value '3' for option 'xattr_permissions' (expected 0, 1 or 2)", "-o",
		   "lowerdir=/l,xattr_permissions=3", "/m");
}

static void test_unsupported(struct tally *t)
{
	EXPECT_ERR(t, "option 'plugins' is not supported by ovlfs yet", "-o",
		   "lowerdir=/l,plugins=/a.so:/b.so", "/m");
	EXPECT_ERR(t, "option 'ino32_t' is not supported by ovlfs yet", "-o", "lowerdir=/l,ino32_t",
		   "/m");
	EXPECT_ERR(t, "option 'noxattrs' is not supported by ovlfs yet", "-o",
		   "lowerdir=/l,noxattrs=1", "/m");
	EXPECT_ERR(t, "option 'noxattrs' is not supported by ovlfs yet", "-o",
		   "lowerdir=/l,noxattrs", "/m");
	EXPECT_ERR(t, "option 'redirect_dir=on' is not supported by ovlfs (only redirect_dir=off)",
		   "-o", "lowerdir=/l,redirect_dir=on", "/m");
	EXPECT_ERR(t, "lowerdir '/a::/b': data-only lower layers ('::') are not supported by ovlfs",
		   "-o", "lowerdir=/a::/b", "/m");
	EXPECT_ERR(t,
		   "lowerdir '//plug/data/path': plugin layers ('//plugin/...') are not supported "
		   "by ovlfs yet",
		   "-o", "lowerdir=//plug/data/path", "/m");
}

static void test_fuse_opts(struct tally *t)
{
	struct ovl_config cfg;
	char err[512];
	int rc;

	rc = PARSE(&cfg, err, "-o",
		   "allow_other,default_permissions,fsname=myfs,subtype=ovlfs,suid,nosuid,dev,"
		   "nodev,exec,noexec,atime,noatime,auto_unmount,max_read=131072",
		   "-o", "lowerdir=/l", "/m");
	CHECK(t, rc == OVL_ARGS_OK);
	CHECK_STR(t, cfg.fuse_opts,
		  "allow_other,default_permissions,fsname=myfs,subtype=ovlfs,suid,nosuid,dev,"
		  "nodev,exec,noexec,atime,noatime,auto_unmount,max_read=131072");
	ovl_config_free(&cfg);

	rc = PARSE(&cfg, err, "-o", "allow_root,lowerdir=/l", "/m");
	CHECK(t, rc == OVL_ARGS_OK);
	CHECK_STR(t, cfg.fuse_opts, "allow_root");
	ovl_config_free(&cfg);

	/* The mount flags libfuse knows; a bare sync is one (sync=N is fuse-overlayfs's). */
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,sync,async,dirsync,sync=0", "/m");
	CHECK(t, rc == OVL_ARGS_OK);
	CHECK_STR(t, cfg.fuse_opts, "sync,async,dirsync");
	ovl_config_free(&cfg);

	/* What mount -t fuse.ovlfs / an fstab line gets through mount.fuse3. */
	rc = PARSE(&cfg, err, "ovlfs", "/m", "-o",
		   "rw,sync,relatime,nodiratime,lazytime,lowerdir=/l,upperdir=/u,workdir=/w,"
		   "x-systemd.automount,comment=c,defaults,dev,suid");
	CHECK(t, rc == OVL_ARGS_OK && !cfg.params.readonly);
	CHECK_STR(t, cfg.mountpoint, "/m");
	CHECK_STR(t, cfg.fuse_opts, "sync,dev,suid");
	ovl_config_free(&cfg);

	/* Options that are ours, or ignored, never reach libfuse. */
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,ro,rw,debug,volatile,kernel_cache,max_write=1",
		   "/m");
	CHECK(t, rc == OVL_ARGS_OK && cfg.fuse_opts == NULL);
	ovl_config_free(&cfg);
}

static void test_escapes(struct tally *t)
{
	struct ovl_config cfg;
	char err[512];
	int rc;

	/* '\:' keeps a colon inside a layer; '\,' a comma; '\\' a backslash. */
	rc = PARSE(&cfg, err, "-o", "lowerdir=/a\\:b:/c\\,d:/e\\\\:/f", "/m");
	CHECK(t, rc == OVL_ARGS_OK);
	CHECK(t, cfg.nlower == 4);
	if (cfg.nlower == 4) {
		CHECK_STR(t, cfg.lowerdirs[0], "/a:b");
		CHECK_STR(t, cfg.lowerdirs[1], "/c,d");
		CHECK_STR(t, cfg.lowerdirs[2], "/e\\");
		CHECK_STR(t, cfg.lowerdirs[3], "/f");
	}
	ovl_config_free(&cfg);

	/* '\,' in any value; libfuse gets it escaped again, and '\' as '\\'. */
	rc = PARSE(&cfg, err, "-o",
		   "lowerdir=/l,upperdir=/u\\,1,workdir=/w\\\\2,fsname=a\\,b,subtype=x\\\\y", "/m");
	CHECK(t, rc == OVL_ARGS_OK);
	CHECK_STR(t, cfg.upperdir, "/u,1");
	CHECK_STR(t, cfg.workdir, "/w\\2");
	CHECK_STR(t, cfg.fuse_opts, "fsname=a\\,b,subtype=x\\\\y");
	ovl_config_free(&cfg);

	/* A colon outside lowerdir needs no escape; a trailing lone '\' is kept. */
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,upperdir=/u:1,workdir=/w\\", "/m");
	CHECK(t, rc == OVL_ARGS_OK);
	CHECK_STR(t, cfg.upperdir, "/u:1");
	CHECK_STR(t, cfg.workdir, "/w\\");
	ovl_config_free(&cfg);
}

static void test_help_version(struct tally *t)
{
	static const char *const names[] = {
	    "-o",
	    "-f",
	    "-d",
	    "-s",
	    "--help",
	    "--version",
	    "lowerdir=",
	    "upperdir=",
	    "workdir=",
	    "ro",
	    "rw",
	    "fsync=",
	    "volatile",
	    "uring=",
	    "debug",
	    "kernel_cache",
	    "allow_other",
	    "allow_root",
	    "default_permissions",
	    "fsname=",
	    "subtype=",
	    "nosuid",
	    "nodev",
	    "noexec",
	    "noatime",
	    "auto_unmount",
	    "max_read=",
	    "timeout=",
	    "threaded=",
	    "fast_ino=",
	    "writeback=",
	    "noacl",
	    "static_nlink",
	    "redirect_dir=off",
	    "context=",
	    "sync=",
	    "fast_ino_check=",
	    "xino=",
	    "noxattrs=",
	    "max_write=",
	    "splice_read",
	    "clone_fd",
	    "max_idle_threads=",
	    "uidmapping=",
	    "gidmapping=",
	    "squash_to_root",
	    "squash_to_uid=",
	    "squash_to_gid=",
	    "xattr_permissions=",
	    "plugins=",
	    "ino32_t",
	    "relatime",
	    "defaults",
	    "dirsync",
	    "lazytime",
	    "x-*",
	};
	char out[8192];
	size_t i;
	int rc;

	rc = parse_captured(t, (const char *const[]){"--help", NULL}, out, sizeof(out));
	CHECK(t, rc == OVL_ARGS_EXIT);
	CHECK(t, !strncmp(out, "usage: ovlfs [OPTIONS] [SOURCE] MOUNTPOINT\n", 43));
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!check(t, strstr(out, names[i]) != NULL, names[i], __LINE__))
			fprintf(stderr, "    missing from --help\n");

	/* -h wins even before a mount point or lowerdir is seen. */
	rc = parse_captured(t, (const char *const[]){"-o", "allow_other", "-h", NULL}, out,
			    sizeof(out));
	CHECK(t, rc == OVL_ARGS_EXIT && !strncmp(out, "usage: ovlfs", 12));

	rc = parse_captured(t, (const char *const[]){"--version", NULL}, out, sizeof(out));
	CHECK(t, rc == OVL_ARGS_EXIT);
	CHECK_STR(t, out, "ovlfs " OVLFS_VERSION "\n");
	rc = parse_captured(t, (const char *const[]){"/m", "-V", NULL}, out, sizeof(out));
	CHECK(t, rc == OVL_ARGS_EXIT);
	CHECK_STR(t, out, "ovlfs " OVLFS_VERSION "\n");
}

/*
 * The mount options --help names: the leading name of each comma-separated item on the
 * lines that name options (two spaces in; descriptions start further in), from the
 * "Overlay options:" heading on. Returns how many, at most max.
 */
static size_t help_option_names(const char *help, char names[][48], size_t max)
{
	const char *line = strstr(help, "\nOverlay options:\n");
	size_t n = 0;

	for (; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		size_t len = strcspn(line, "\n"), end, off;

		if (len < 3 || line[0] != ' ' || line[1] != ' ' || line[2] == ' ')
			continue;
		/* The names end where two spaces start the description. */
		for (end = 2; end < len && !(line[end] == ' ' && line[end + 1] == ' '); end++)
			;
		for (off = 2; off < end && n < max;) {
			size_t nl = strspn(line + off, "abcdefghijklmnopqrstuvwxyz0123456789_-*");
			size_t item = off;

			snprintf(names[n++], sizeof(names[0]), "%.*s", (int)nl, line + off);
			/* On to the next item, after ", ". */
			while (item + 1 < end && !(line[item] == ',' && line[item + 1] == ' '))
				item++;
			off = item + 2;
		}
	}
	return n;
}

/* --help is made from the option table: every row is in it, and each name it lists parses. */
/* -o remount as mount.fuse3 passes it: the mount's flags, every other option ignored (even
 * unknown or bad ones), no layers needed; the last of each flag and its opposite wins. */
static void test_remount(struct tally *t)
{
	struct ovl_config cfg;
	char err[512];
	int rc;

	rc = PARSE(&cfg, err, "ovlfs", "/m", "-o",
		   "ro,noatime,remount,nosuid,user_id=0,group_id=0,default_permissions,"
		   "allow_other,dev,frobnicate,lowerdir=::,upperdir=/u");
	CHECK(t, rc == OVL_ARGS_OK && cfg.remount && cfg.params.readonly);
	CHECK(t, rc == OVL_ARGS_OK && cfg.remount_flags == (MS_NOATIME | MS_NOSUID));
	CHECK(t, rc == OVL_ARGS_OK && !strcmp(cfg.mountpoint, "/m"));
	ovl_config_free(&cfg);

	rc = PARSE(&cfg, err, "-fo", "nodev,ro,rw,relatime,noexec,exec,remount", "/m");
	CHECK(t, rc == OVL_ARGS_OK && cfg.remount && !cfg.params.readonly);
	CHECK(t, rc == OVL_ARGS_OK && cfg.remount_flags == (MS_NODEV | MS_RELATIME));
	ovl_config_free(&cfg);

	/* Not an option list: no remount, and the usual checks. */
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l", "/m", "remount");
	CHECK(t, rc == OVL_ARGS_OK && !cfg.remount && !strcmp(cfg.mountpoint, "remount"));
	ovl_config_free(&cfg);
	rc = PARSE(&cfg, err, "-o", "remount");
	CHECK(t, rc == OVL_ARGS_ERROR && strstr(err, "no mount point"));
}

static void test_help_matches_table(struct tally *t)
{
	static char names[256][48];
	char out[8192], opt[128], err[512];
	size_t n, i, j;
	int rc;

	rc = parse_captured(t, (const char *const[]){"--help", NULL}, out, sizeof(out));
	CHECK(t, rc == OVL_ARGS_EXIT);
	n = help_option_names(out, names, sizeof(names) / sizeof(names[0]));
	for (i = 0; ovl_option_name(i); i++) {
		for (j = 0; j < n && strcmp(names[j], ovl_option_name(i)); j++)
			;
		if (!check(t, j < n, ovl_option_name(i), __LINE__))
			fprintf(stderr, "    in the option table, missing from --help\n");
	}
	CHECK(t, n >= i);
	for (j = 0; j < n; j++) {
		struct ovl_config cfg;
		char *star;

		/* x-* stands for any x-something (fstab's userspace options). */
		snprintf(opt, sizeof(opt), "lowerdir=/l,%s", names[j]);
		star = strchr(opt, '*');
		if (star)
			*star = 'y';
		rc = PARSE(&cfg, err, "-o", opt, "/m");
		if (!check(t, rc == OVL_ARGS_OK || strncmp(err, "unknown option", 14), names[j],
			   __LINE__))
			fprintf(stderr, "    named in --help, refused: %s\n", err);
		ovl_config_free(&cfg);
	}
}

static void test_parse_errors(struct tally *t)
{
	char many[501 * 8];
	size_t off = 0;
	int i;
	struct ovl_config cfg;
	char err[512];

	EXPECT_ERR(t, "unknown option 'bogus'", "-o", "lowerdir=/l,bogus", "/m");
	EXPECT_ERR(t, "unknown option 'bogus=1'", "-o", "bogus=1,lowerdir=/l", "/m");
	EXPECT_ERR(t, "unknown option 'x-'", "-o", "lowerdir=/l,x-", "/m");
	EXPECT_ERR(t, "option 'comment' requires a value (comment=...)", "-o",
		   "lowerdir=/l,comment", "/m");
	EXPECT_ERR(t, "unknown option '-x'", "-x", "-o", "lowerdir=/l", "/m");
	EXPECT_ERR(t, "unknown option '-q'", "-fq", "-o", "lowerdir=/l", "/m");
	EXPECT_ERR(t, "unknown option '--bogus'", "--bogus", "-o", "lowerdir=/l", "/m");
	EXPECT_ERR(t, "option '-o' requires an argument", "/m", "-o");
	EXPECT_ERR(t, "option 'ro' does not take a value", "-o", "lowerdir=/l,ro=1", "/m");
	EXPECT_ERR(t, "option 'fsname' requires a value (fsname=...)", "-o", "lowerdir=/l,fsname",
		   "/m");
	EXPECT_ERR(t, "option 'lowerdir' requires a value (lowerdir=...)", "-o", "lowerdir", "/m");
	EXPECT_ERR(t, "invalid value '2' for option 'fsync' (expected 0 or 1)", "-o",
		   "lowerdir=/l,fsync=2", "/m");
	EXPECT_ERR(t, "invalid value 'yes' for option 'xino' (expected one of: off|auto|on)", "-o",
		   "lowerdir=/l,xino=yes", "/m");
	EXPECT_ERR(t, "invalid value '2' for option 'noxattrs' (expected 0 or 1)", "-o",
		   "lowerdir=/l,noxattrs=2", "/m");
	EXPECT_ERR(t, "options 'allow_other' and 'allow_root' are mutually exclusive", "-o",
		   "lowerdir=/l,allow_other,allow_root", "/m");

	EXPECT_ERR(t, "option 'lowerdir' has an empty value", "-o", "lowerdir=", "/m");
	EXPECT_ERR(t, "lowerdir ':/a' has an empty layer (leading ':')", "-o", "lowerdir=:/a",
		   "/m");
	EXPECT_ERR(t, "lowerdir '/a:' has an empty layer (trailing ':')", "-o",
		   "lowerdir=/a:", "/m");
	EXPECT_ERR(t, "lowerdir ':' has an empty layer (leading ':')", "-o", "lowerdir=:", "/m");
	EXPECT_ERR(t, "lowerdir '/a::' has an empty layer (trailing ':')", "-o",
		   "lowerdir=/a::", "/m");
	EXPECT_ERR(t, "lowerdir '::' has an empty layer (leading ':')", "-o", "lowerdir=::", "/m");
	EXPECT_ERR(t, "lowerdir '/a:::/b' has an empty layer", "-o", "lowerdir=/a:::/b", "/m");
	EXPECT_ERR(t, "option 'upperdir' has an empty value", "-o",
		   "lowerdir=/l,upperdir=,workdir=/w", "/m");
	EXPECT_ERR(t, "option 'workdir' has an empty value", "-o",
		   "lowerdir=/l,upperdir=/u,workdir=", "/m");

	EXPECT_ERR(t, "missing required option 'lowerdir'", "-o", "upperdir=/u,workdir=/w", "/m");
	EXPECT_ERR(t, "option 'upperdir' given without 'workdir'", "-o", "lowerdir=/l,upperdir=/u",
		   "/m");
	EXPECT_ERR(t, "option 'workdir' given without 'upperdir'", "-o", "lowerdir=/l,workdir=/w",
		   "/m");
	EXPECT_ERR(t, "no mount point given", "-o", "lowerdir=/l");
	EXPECT_ERR(t, "unexpected extra argument '/extra'", "src", "/m", "/extra", "-o",
		   "lowerdir=/l");

	/* 500 layers are fine, 501 are not. */
	for (i = 0; i < 501; i++)
		off += (size_t)snprintf(many + off, sizeof(many) - off, "%s/l%d",
					i ? ":" : "lowerdir=", i);
	EXPECT_ERR(t, "lowerdir has 501 layers, more than the maximum of 500", "-o", many, "/m");
	*strrchr(many, ':') = '\0';
	CHECK(t, PARSE(&cfg, err, "-o", many, "/m") == OVL_ARGS_OK);
	CHECK(t, cfg.nlower == 500);
	if (cfg.nlower == 500) {
		CHECK_STR(t, cfg.lowerdirs[0], "/l0");
		CHECK_STR(t, cfg.lowerdirs[499], "/l499");
	}
	ovl_config_free(&cfg);
}

/* Validation tests run in a scratch tree; paths below are built from it. */
struct scratch {
	char base[PATH_MAX]; /* canonical */
	char shm[PATH_MAX];  /* on another filesystem, or "" */
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	if (remove(path) < 0)
		perror(path);
	return 0;
}

static void rm_tree(const char *path)
{
	if (path[0] && nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0)
		perror(path);
}

static bool mk(struct tally *t, const struct scratch *s, const char *rel, bool dir)
{
	char p[PATH_MAX * 2];
	int fd;

	snprintf(p, sizeof(p), "%s/%s", s->base, rel);
	if (dir)
		return CHECK(t, mkdir(p, 0755) == 0);
	fd = open(p, O_CREAT | O_WRONLY | O_EXCL, 0644);
	if (!CHECK(t, fd >= 0))
		return false;
	return CHECK(t, close(fd) == 0);
}

/* Replaces each '@' in fmt by the scratch base. */
static void expand(const struct scratch *s, char *out, size_t len, const char *fmt)
{
	size_t o = 0, bl = strlen(s->base);

	for (; *fmt && o + bl + 1 < len; fmt++) {
		if (*fmt == '@') {
			memcpy(out + o, s->base, bl);
			o += bl;
		} else {
			out[o++] = *fmt;
		}
	}
	out[o] = '\0';
}

/* Parses "-o opts mnt" ('@' = scratch base), validates, and expects the error want ('@' too). */
static void expect_verr(struct tally *t, const struct scratch *s, const char *want,
			const char *opts, const char *mnt, int line)
{
	struct ovl_config cfg;
	char o[PATH_MAX * 4], m[PATH_MAX * 2], w[PATH_MAX * 4], err[PATH_MAX * 4];
	int rc;

	expand(s, o, sizeof(o), opts);
	expand(s, m, sizeof(m), mnt);
	expand(s, w, sizeof(w), want);
	rc = PARSE(&cfg, err, "-o", o, m);
	if (!check(t, rc == OVL_ARGS_OK, "parse before validate", line)) {
		fprintf(stderr, "    error: %s\n", err);
		return;
	}
	rc = ovl_validate_config(&cfg, err, sizeof(err));
	check(t, rc == -1, "validation fails", line);
	check_str(t, err, w, "validation message", line);
	/* A failed validation leaves the paths as given. */
	check_str(t, cfg.mountpoint, m, "mount point unchanged", line);
	ovl_config_free(&cfg);
}

#define EXPECT_VERR(t, s, want, opts, mnt) expect_verr((t), (s), (want), (opts), (mnt), __LINE__)

static void test_validate_ok(struct tally *t, const struct scratch *s)
{
	struct ovl_config cfg;
	char o[PATH_MAX * 4], want[PATH_MAX * 2], err[PATH_MAX * 4];
	int cwd, rc;

	/* Absolute, with redundant slashes, dots, a symlink, and an escaped ':' and ','. */
	expand(s, o, sizeof(o),
	       "lowerdir=@//l1/:@/./l2:@/link:@/a\\:b\\,c,upperdir=@/u/../u,workdir=@/w//");
	expand(s, want, sizeof(want), "@/m");
	rc = PARSE(&cfg, err, "-o", o, want);
	CHECK(t, rc == OVL_ARGS_OK);
	rc = ovl_validate_config(&cfg, err, sizeof(err));
	if (!CHECK(t, rc == 0))
		fprintf(stderr, "    error: %s\n", err);
	if (rc == 0 && CHECK(t, cfg.nlower == 4)) {
		expand(s, want, sizeof(want), "@/l1");
		CHECK_STR(t, cfg.lowerdirs[0], want);
		expand(s, want, sizeof(want), "@/l2");
		CHECK_STR(t, cfg.lowerdirs[1], want);
		expand(s, want, sizeof(want), "@/l1");
		CHECK_STR(t, cfg.lowerdirs[2], want);
		expand(s, want, sizeof(want), "@/a:b,c");
		CHECK_STR(t, cfg.lowerdirs[3], want);
		expand(s, want, sizeof(want), "@/u");
		CHECK_STR(t, cfg.upperdir, want);
		expand(s, want, sizeof(want), "@/w");
		CHECK_STR(t, cfg.workdir, want);
		expand(s, want, sizeof(want), "@/m");
		CHECK_STR(t, cfg.mountpoint, want);
	}
	ovl_config_free(&cfg);

	/* Relative paths are resolved against the working directory. */
	cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (CHECK(t, cwd >= 0) && CHECK(t, chdir(s->base) == 0)) {
		rc = PARSE(&cfg, err, "-o", "lowerdir=l1:./l2,upperdir=u,workdir=w/", "m");
		CHECK(t, rc == OVL_ARGS_OK);
		rc = ovl_validate_config(&cfg, err, sizeof(err));
		if (!CHECK(t, rc == 0))
			fprintf(stderr, "    error: %s\n", err);
		if (rc == 0) {
			expand(s, want, sizeof(want), "@/l2");
			CHECK_STR(t, cfg.lowerdirs[1], want);
			expand(s, want, sizeof(want), "@/w");
			CHECK_STR(t, cfg.workdir, want);
			expand(s, want, sizeof(want), "@/m");
			CHECK_STR(t, cfg.mountpoint, want);
		}
		ovl_config_free(&cfg);
		CHECK(t, fchdir(cwd) == 0);
	}
	if (cwd >= 0)
		close(cwd);

	/* Read-only overlay: lower layers only. */
	expand(s, o, sizeof(o), "lowerdir=@/l1");
	expand(s, want, sizeof(want), "@/m");
	rc = PARSE(&cfg, err, "-o", o, want);
	CHECK(t, rc == OVL_ARGS_OK && cfg.params.readonly);
	rc = ovl_validate_config(&cfg, err, sizeof(err));
	if (!CHECK(t, rc == 0))
		fprintf(stderr, "    error: %s\n", err);
	CHECK(t, cfg.upperdir == NULL && cfg.workdir == NULL);
	ovl_config_free(&cfg);

	/* Nesting is by component: /x/l1x is not inside /x/l1. */
	expand(s, o, sizeof(o), "lowerdir=@/l1,upperdir=@/l1x,workdir=@/l1xw");
	expand(s, want, sizeof(want), "@/l1y");
	rc = PARSE(&cfg, err, "-o", o, want);
	CHECK(t, rc == OVL_ARGS_OK);
	rc = ovl_validate_config(&cfg, err, sizeof(err));
	if (!CHECK(t, rc == 0))
		fprintf(stderr, "    error: %s\n", err);
	ovl_config_free(&cfg);
}

/* Finds a read-only system directory (containers often mount /sys read-only), if any. */
static bool find_ro_dir(char *out, size_t len)
{
	static const char *const candidates[] = {"/sys", "/proc/sys", "/sys/fs/cgroup", "/usr",
						 "/boot"};
	size_t i;

	for (i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
		struct statvfs v;
		struct stat st;

		if (statvfs(candidates[i], &v) == 0 && (v.f_flag & ST_RDONLY) &&
		    stat(candidates[i], &st) == 0 && S_ISDIR(st.st_mode)) {
			snprintf(out, len, "%s", candidates[i]);
			return true;
		}
	}
	return false;
}

static void test_validate_errors(struct tally *t, const struct scratch *s)
{
	const char *uw = "upperdir=@/u,workdir=@/w";
	char o[PATH_MAX * 2], want[PATH_MAX * 4], ro[PATH_MAX];

	/* Lower layers. */
	EXPECT_VERR(t, s, "lower layer '@/nope': No such file or directory",
		    "lowerdir=@/l1:@/nope,upperdir=@/u,workdir=@/w", "@/m");
	EXPECT_VERR(t, s, "lower layer '@/file' is not a directory", "lowerdir=@/file", "@/m");
	EXPECT_VERR(t, s, "lower layer '@/file/x': Not a directory", "lowerdir=@/file/x", "@/m");

	/* upperdir and workdir. */
	EXPECT_VERR(t, s, "upperdir '@/nope': No such file or directory",
		    "lowerdir=@/l1,upperdir=@/nope,workdir=@/w", "@/m");
	EXPECT_VERR(t, s, "upperdir '@/file' is not a directory",
		    "lowerdir=@/l1,upperdir=@/file,workdir=@/w", "@/m");
	EXPECT_VERR(t, s, "workdir '@/nope': No such file or directory",
		    "lowerdir=@/l1,upperdir=@/u,workdir=@/nope", "@/m");
	EXPECT_VERR(t, s, "workdir '@/file' is not a directory",
		    "lowerdir=@/l1,upperdir=@/u,workdir=@/file", "@/m");
	EXPECT_VERR(t, s, "workdir '@/u' is the same directory as upperdir '@/u'",
		    "lowerdir=@/l1,upperdir=@/u,workdir=@/u", "@/m");
	EXPECT_VERR(t, s, "workdir '@/u/w' is inside upperdir '@/u'",
		    "lowerdir=@/l1,upperdir=@/u,workdir=@/u/w", "@/m");
	EXPECT_VERR(t, s, "workdir '@/w' contains upperdir '@/w/u'",
		    "lowerdir=@/l1,upperdir=@/w/u,workdir=@/w", "@/m");
	if (s->shm[0]) {
		snprintf(o, sizeof(o), "lowerdir=@/l1,upperdir=@/u,workdir=%s", s->shm);
		snprintf(want, sizeof(want),
			 "workdir '%s' is not on the same filesystem as upperdir '@/u'", s->shm);
		EXPECT_VERR(t, s, want, o, "@/m");
	} else {
		fprintf(stderr, "SKIP workdir on another filesystem: no /dev/shm tmpfs\n");
	}
	if (find_ro_dir(ro, sizeof(ro))) {
		snprintf(o, sizeof(o), "lowerdir=@/l1,upperdir=%s,workdir=@/w", ro);
		snprintf(want, sizeof(want), "upperdir '%s' is on a read-only filesystem", ro);
		EXPECT_VERR(t, s, want, o, "@/m");
	} else {
		fprintf(stderr, "SKIP read-only upperdir: no read-only system directory here\n");
	}
	if (geteuid() != 0) {
		EXPECT_VERR(t, s, "upperdir '@/ro_u' is not writable: Permission denied",
			    "lowerdir=@/l1,upperdir=@/ro_u,workdir=@/w", "@/m");
	} else {
		fprintf(stderr, "SKIP unwritable upperdir: running as root\n");
	}

	/* upperdir/workdir against the lower layers. */
	EXPECT_VERR(t, s, "upperdir '@/l1/u' is inside lower layer '@/l1'",
		    "lowerdir=@/l2:@/l1,upperdir=@/l1/u,workdir=@/l1/w", "@/m");
	EXPECT_VERR(t, s, "workdir '@/l1/w' is inside lower layer '@/l1'",
		    "lowerdir=@/l1,upperdir=@/l1w,workdir=@/l1/w", "@/m");
	EXPECT_VERR(t, s, "upperdir '@/l1' is the same directory as lower layer '@/l1'",
		    "lowerdir=@/l1,upperdir=@/l1,workdir=@/l1x", "@/m");
	EXPECT_VERR(t, s, "upperdir '@/u' contains lower layer '@/u/low'",
		    "lowerdir=@/u/low,upperdir=@/u,workdir=@/w", "@/m");
	EXPECT_VERR(t, s,
		    "upperdir '@/link' (resolved to '@/l1') is the same directory as lower layer "
		    "'@/l1'",
		    "lowerdir=@/l1,upperdir=@/link,workdir=@/l1x", "@/m");

	/* The mount point. */
	snprintf(o, sizeof(o), "lowerdir=@/l1,%s", uw);
	EXPECT_VERR(t, s, "mount point '@/nope': No such file or directory", o, "@/nope");
	EXPECT_VERR(t, s, "mount point '@/file' is not a directory", o, "@/file");
	EXPECT_VERR(t, s, "mount point '/proc' is busy (already a mount point)", o, "/proc");
	EXPECT_VERR(t, s, "mount point '/' is busy (already a mount point)", o, "/");
	EXPECT_VERR(t, s, "mount point '@/l1' is the same directory as lower layer '@/l1'", o,
		    "@/l1");
	EXPECT_VERR(t, s, "mount point '@/l1/sub' is inside lower layer '@/l1'", o, "@/l1/sub");
	EXPECT_VERR(t, s, "mount point '@' contains lower layer '@/l1'", o, "@");
	EXPECT_VERR(t, s, "mount point '@/u' is the same directory as upperdir '@/u'", o, "@/u");
	EXPECT_VERR(t, s, "mount point '@/u/m' is inside upperdir '@/u'", o, "@/u/m");
	EXPECT_VERR(t, s, "mount point '@/w/m' is inside workdir '@/w'", o, "@/w/m");
	EXPECT_VERR(t, s, "mount point '@/m' contains workdir '@/m/w'",
		    "lowerdir=@/l1,upperdir=@/u,workdir=@/m/w", "@/m");
}

static bool setup(struct tally *t, struct scratch *s)
{
	static const char *const dirs[] = {
	    "l1",  "l1/sub", "l1/u",  "l1/w", "l2",  "l1x", "l1xw", "l1y", "l1w",  "u",
	    "u/w", "u/m",    "u/low", "w",    "w/u", "w/m", "m",    "m/w", "ro_u", "a:b,c",
	};
	char tmpl[] = "/tmp/ovlfs-test-XXXXXX", shm[] = "/dev/shm/ovlfs-test-XXXXXX";
	char *real;
	struct stat a, b;
	size_t i;

	s->shm[0] = '\0';
	if (!CHECK(t, mkdtemp(tmpl) != NULL))
		return false;
	real = realpath(tmpl, NULL);
	if (!CHECK(t, real != NULL)) {
		rm_tree(tmpl);
		return false;
	}
	snprintf(s->base, sizeof(s->base), "%s", real);
	free(real);
	for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		mk(t, s, dirs[i], true);
	mk(t, s, "file", false);
	{
		char p[PATH_MAX * 2];

		snprintf(p, sizeof(p), "%s/link", s->base);
		CHECK(t, symlink("l1", p) == 0);
		snprintf(p, sizeof(p), "%s/ro_u", s->base);
		CHECK(t, chmod(p, 0555) == 0);
	}

	/* /dev/shm is a tmpfs: a cheap second filesystem, if present. */
	if (mkdtemp(shm)) {
		real = realpath(shm, NULL);
		if (real && stat(real, &a) == 0 && stat(s->base, &b) == 0 && a.st_dev != b.st_dev)
			snprintf(s->shm, sizeof(s->shm), "%s", real);
		else if (rmdir(shm) < 0)
			perror(shm);
		free(real);
	}
	return true;
}

int main(void)
{
	struct tally t = {0, 0};
	struct scratch s;

	test_basic(&t);
	test_flags(&t);
	test_ignored(&t);
	test_unsupported(&t);
	test_owner_opts(&t);
	test_fuse_opts(&t);
	test_escapes(&t);
	test_help_version(&t);
	test_help_matches_table(&t);
	test_remount(&t);
	test_parse_errors(&t);
	if (setup(&t, &s)) {
		test_validate_ok(&t, &s);
		test_validate_errors(&t, &s);
		rm_tree(s.base);
		rm_tree(s.shm);
	}
	printf("options: %d passed, %d failed\n", t.passed, t.failed);
	return t.failed ? 1 : 0;
}
