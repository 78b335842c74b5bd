/* Unit tests of the command-line parser: each kind of option, escapes, remount, errors. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "test_options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

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

void test_basic(struct tally *t)
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
	CHECK(t, cfg.params.ndata == 0);
	ovl_config_free(&cfg);
	/* Freeing twice is harmless: the first call zeroes the struct. */
	ovl_config_free(&cfg);

	/* "::" starts the data-only layers, the last ones (the kernel's syntax). */
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l1:/l2::/d1::/d\\:2", "/m");
	CHECK(t, rc == OVL_ARGS_OK);
	CHECK(t, cfg.nlower == 4 && cfg.params.ndata == 2);
	if (cfg.nlower == 4) {
		CHECK_STR(t, cfg.lowerdirs[1], "/l2");
		CHECK_STR(t, cfg.lowerdirs[2], "/d1");
		CHECK_STR(t, cfg.lowerdirs[3], "/d:2");
	}
	ovl_config_free(&cfg);
	/* The same as separate options (the kernel's 6.8+ lowerdir+= and datadir+=). */
	rc = PARSE(&cfg, err, "-o", "lowerdir+=/l1,lowerdir+=/l:2,datadir+=/d1,datadir+=/d2", "/m");
	CHECK(t, rc == OVL_ARGS_OK);
	CHECK(t, cfg.nlower == 4 && cfg.params.ndata == 2);
	if (cfg.nlower == 4) {
		CHECK_STR(t, cfg.lowerdirs[1], "/l:2");
		CHECK_STR(t, cfg.lowerdirs[3], "/d2");
		CHECK(t, cfg.lowerdirs[4] == NULL);
	}
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

void test_flags(struct tally *t)
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

void test_ignored(struct tally *t)
{
	static const char *const opts[] = {
	    "timeout=1000000000",
	    "threaded=1",
	    "fast_ino=1",
	    "writeback=0",
	    "noacl",
	    "static_nlink",
	    "redirect_dir=off",
	    "redirect_dir=nofollow",
	    "index=off",
	    "nfs_export=off",
	    "metacopy=off",
	    "uuid=on",
	    "uuid=null",
	    "uuid=auto",
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
void test_owner_opts(struct tally *t)
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

void test_unsupported(struct tally *t)
{
	EXPECT_ERR(t, "option 'plugins' is not supported by ovlfs yet", "-o",
		   "lowerdir=/l,plugins=/a.so:/b.so", "/m");
	EXPECT_ERR(t, "option 'ino32_t' is not supported by ovlfs yet", "-o", "lowerdir=/l,ino32_t",
		   "/m");
	EXPECT_ERR(t, "option 'noxattrs' is not supported by ovlfs yet", "-o",
		   "lowerdir=/l,noxattrs=1", "/m");
	EXPECT_ERR(t, "option 'noxattrs' is not supported by ovlfs yet", "-o",
		   "lowerdir=/l,noxattrs", "/m");
	EXPECT_ERR(t,
		   "lowerdir '/a::/b:/c': an ordinary layer cannot follow the data-only layers "
		   "(separate each of them with '::')",
		   "-o", "lowerdir=/a::/b:/c", "/m");
	EXPECT_ERR(t, "option 'lowerdir+' cannot follow the data-only layers", "-o",
		   "lowerdir+=/a,datadir+=/d,lowerdir+=/b", "/m");
	EXPECT_ERR(t, "data-only layers need an ordinary lower layer above them", "-o",
		   "datadir+=/d", "/m");
	EXPECT_ERR(t, "lowerdir '/a::/b:::/c' has an empty layer", "-o", "lowerdir=/a::/b:::/c",
		   "/m");
	EXPECT_ERR(t,
		   "lowerdir '//plug/data/path': plugin layers ('//plugin/...') are not supported "
		   "by ovlfs yet",
		   "-o", "lowerdir=//plug/data/path", "/m");
}

void test_fuse_opts(struct tally *t)
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

void test_escapes(struct tally *t)
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

/* -o remount as mount.fuse3 passes it: the mount's flags, every other option ignored (even
 * unknown or bad ones), no layers needed; the last of each flag and its opposite wins. */
void test_remount(struct tally *t)
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

void test_parse_errors(struct tally *t)
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

/* The kernel overlayfs's feature options: each value the kernel knows, accepted where ovlfs
 * has its meaning, refused with what ovlfs does instead where not. */
void test_kernel_features(struct tally *t)
{
	static const char *const accepted[] = {
	    "index=off",
	    "nfs_export=off",
	    "metacopy=off",
	    "redirect_dir=on",
	    "metacopy=on",
	    "redirect_dir=off",
	    "redirect_dir=follow",
	    "redirect_dir=nofollow",
	    "xino=off",
	    "xino=auto",
	    "xino=on",
	    "uuid=on",
	    "uuid=null",
	    "uuid=auto",
	};
	static const struct {
		const char *opt, *want;
	} refused[] = {
	    {"nfs_export=on", "option 'nfs_export=on' is not supported by ovlfs yet (it works as "
			      "nfs_export=off: no file handle of the mount can be opened)"},
	    {"index=yes", "invalid value 'yes' for option 'index' (expected one of: on|off)"},
	    {"nfs_export=1", "invalid value '1' for option 'nfs_export' (expected one of: on|off)"},
	    {"metacopy=", "invalid value '' for option 'metacopy' (expected one of: on|off)"},
	    {"redirect_dir=no", "invalid value 'no' for option 'redirect_dir' (expected one of: "
				"on|follow|nofollow|off)"},
	    {"uuid=yes",
	     "invalid value 'yes' for option 'uuid' (expected one of: on|off|null|auto)"},
	    {"uuid", "option 'uuid' requires a value (uuid=...)"},
	};
	struct ovl_config cfg;
	char err[512], o[256];
	size_t i;
	int rc;

	for (i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
		expect_ignored(t, accepted[i], __LINE__);
		snprintf(o, sizeof(o), "lowerdir=/l,%s", accepted[i]);
		rc = PARSE(&cfg, err, "-o", o, "/m");
		check(t, rc == OVL_ARGS_OK && !cfg.params.origin_uuid_off, accepted[i], __LINE__);
		ovl_config_free(&cfg);
	}
	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		snprintf(o, sizeof(o), "lowerdir=/l,%s", refused[i].opt);
		EXPECT_ERR(t, refused[i].want, "-o", o, "/m");
	}

	/* redirect_dir=on, the default, writes redirects; off, follow and nofollow do not. */
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l", "/m");
	CHECK(t, rc == OVL_ARGS_OK && cfg.params.redirect_write && !cfg.params.redirect_nofollow);
	ovl_config_free(&cfg);
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,redirect_dir=off", "/m");
	CHECK(t, rc == OVL_ARGS_OK && !cfg.params.redirect_write && !cfg.params.redirect_nofollow);
	ovl_config_free(&cfg);
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,redirect_dir=nofollow", "/m");
	CHECK(t, rc == OVL_ARGS_OK && !cfg.params.redirect_write && cfg.params.redirect_nofollow);
	ovl_config_free(&cfg);
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,redirect_dir=follow,redirect_dir=on", "/m");
	CHECK(t, rc == OVL_ARGS_OK && cfg.params.redirect_write);
	ovl_config_free(&cfg);

	/* uuid=off: null UUIDs in origin records; the last uuid= wins, as with mount(8). */
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,uuid=off", "/m");
	CHECK(t, rc == OVL_ARGS_OK && cfg.params.origin_uuid_off);
	ovl_config_free(&cfg);
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,uuid=off,uuid=auto", "/m");
	CHECK(t, rc == OVL_ARGS_OK && !cfg.params.origin_uuid_off);
	ovl_config_free(&cfg);
	rc = PARSE(&cfg, err, "-o", "lowerdir=/l,uuid=null,uuid=off", "/m");
	CHECK(t, rc == OVL_ARGS_OK && cfg.params.origin_uuid_off);
	ovl_config_free(&cfg);
}
