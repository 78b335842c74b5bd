/* Unit tests of the start-up checks (validate.c) over a scratch tree of layers. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "test_options.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

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

void test_validate(struct tally *t)
{
	struct scratch s;

	if (!setup(t, &s))
		return;
	test_validate_ok(t, &s);
	test_validate_errors(t, &s);
	rm_tree(s.base);
	rm_tree(s.shm);
}
